"""Post-process a finished sweep: python -m jobs.postprocess <out>/<sweep> [--force] [--address A]."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobs import _cli
from jobs.gallery import publish
from vaecore.post import sweep as post_sweep


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vae-postprocess", description=__doc__)
    p.add_argument("sweep_dir", type=Path, help="the sweep folder, <out>/<sweep>, holding trials/")
    p.add_argument(
        "--force",
        action="store_true",
        help="redo trials that are already post-processed with the same inputs",
    )
    p.add_argument(
        "--address",
        default=None,
        help="connect to this Ray cluster (e.g. auto) and run one Ray task per trial",
    )
    p.add_argument("--no-gallery", action="store_true", help="do not rebuild the gallery afterwards")
    return p.parse_args(argv)


def print_table(results: dict[str, dict]) -> None:
    width = max([len(n) for n in results] + [5])
    print(f"\n{'trial':<{width}}  {'status':<8} {'seconds':>8}  reason")
    for name, row in results.items():
        print(f"{name:<{width}}  {row['status']:<8} {row['seconds']:8.1f}  {row['reason']}")


def run(
    sweep_dir: Path, force: bool = False, use_ray: bool | None = None, build_gallery: bool = True
) -> dict[str, dict]:
    """Post-process every trial, print the table, then (re)build the gallery."""
    results = post_sweep.process_sweep(
        sweep_dir, force=force, progress=lambda s: print(s, flush=True), use_ray=use_ray
    )
    print_table(results)
    if build_gallery:
        publish(sweep_dir)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if not args.sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep folder not found: {args.sweep_dir}")
    use_ray = None
    if args.address:
        import ray

        ray.init(address=args.address, log_to_driver=False)
        use_ray = True
    results = run(args.sweep_dir, args.force, use_ray, not args.no_gallery)
    failed = sum(r["status"] == "failed" for r in results.values())
    if failed:
        print(f"{failed} of {len(results)} trials failed", file=sys.stderr)
    return 1 if results and failed == len(results) else 0


if __name__ == "__main__":
    _cli.run(main)
