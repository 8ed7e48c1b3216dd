"""Post-process a finished sweep: python -m jobs.postprocess <out>/<sweep> [--force] [--address A].

Exit status: 0 done (trials not yet trained are skipped, not failures); 2 bad input or the sweep
folder is in use by its driver; 3 post-processing failed for at least one trial.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from jobs import _cli
from jobs.gallery import publish
from vaecore import sweep as sweeps

if TYPE_CHECKING:  # imported where used: torch loads after parsing, so --help answers at once
    from vaecore.post import sweep as post_sweep

EXIT_FAILED = 3


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = _cli.parser(
        "vae-postprocess",
        __doc__,
        address="connect to this Ray cluster (e.g. auto) and run one Ray task per trial "
        "(default: $RAY_ADDRESS, as for vae-sweep; without one, trials run in this process)",
    )
    p.add_argument("sweep_dir", type=Path, help="the sweep folder, <out>/<sweep>, holding trials/")
    p.add_argument(
        "--force",
        action="store_true",
        help="redo trials that are already post-processed with the same inputs",
    )
    p.add_argument("--no-gallery", action="store_true", help="do not rebuild the gallery afterwards")
    return p.parse_args(argv)


def print_table(results: dict[str, dict]) -> None:
    width = max([len(n) for n in results] + [5])
    print(f"\n{'trial':<{width}}  {'status':<8} {'seconds':>8}  reason")
    for name, row in results.items():
        print(f"{name:<{width}}  {row['status']:<8} {row['seconds']:8.1f}  {row['reason']}")


def run(
    sweep_dir: Path,
    force: bool = False,
    fan_out: post_sweep.FanOut | None = None,
    build_gallery: bool = True,
    table: bool = True,
) -> dict[str, dict]:
    """Post-process every trial that needs it, print the table, then (re)build the gallery.

    fan_out runs the trials elsewhere (vaecore.distributed.postprocess_tasks: as Ray tasks)."""
    from vaecore.post import sweep as post_sweep

    results = post_sweep.process_sweep(
        sweep_dir, force=force, progress=lambda s: print(s, flush=True), fan_out=fan_out
    )
    if table:
        print_table(results)
    if build_gallery:
        publish(sweep_dir)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if not args.sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep folder not found: {args.sweep_dir}")
    with sweeps.lock(args.sweep_dir, "jobs.postprocess"), contextlib.ExitStack() as stack:
        fan_out = None
        if args.address:  # the same way into a cluster as jobs.sweep; then one Ray task per trial
            from vaecore import distributed

            stack.enter_context(distributed.ray_session(args.address))
            fan_out = distributed.postprocess_tasks
        results = run(args.sweep_dir, args.force, fan_out, not args.no_gallery)
    failed = sum(r["status"] == "failed" for r in results.values())
    if failed:
        print(f"{failed} of {len(results)} trials failed post-processing", file=sys.stderr)
        return EXIT_FAILED
    return 0


def cli() -> None:
    """vae-postprocess and `python -m jobs.postprocess`: an expected error is one line on stderr, exit 2."""
    _cli.run(main)


if __name__ == "__main__":
    cli()
