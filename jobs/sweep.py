"""Run a hyperparameter sweep on Ray (embedded or a cluster), post-processing each trial as soon
as it has trained and keeping the gallery current while the sweep runs.

    python -m jobs.sweep --config jobs/configs/demo.toml [--out runs] [--set train.epochs=2]

Re-running the same command continues: completed trials are kept, interrupted ones resume from
their last checkpoint, trials that crashed are trained again, diverged ones stay failed unless
--retry-failed. One driver per sweep folder: a second one is refused.

Exit status: 0 done; 1 no trial completed; 2 bad input or the folder is in use; 3 post-processing
failed for a completed trial; 130 stopped by Ctrl+C or SIGTERM (re-run to continue).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

from jobs import _cli
from jobs.gallery import publish
from vaecore import cluster, datafiles, layout
from vaecore import sweep as sweeps
from vaecore.config import ConfigError

# torch, Ray and post-processing are imported in the functions that use them: --help and bad input
# answer at once, and Ray reads RAY_AUTH_MODE when it is first imported (run()).

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "demo.toml"
EXIT_NONE_COMPLETED = 1  # no trial completed (others: 2 bad input or a busy folder, 3 below, 130 stopped)
EXIT_POSTPROCESS_FAILED = 3  # training completed, but post-processing failed for a completed trial


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = _cli.parser(
        "vae-sweep",
        __doc__,
        overrides="override a config value in every trial, e.g. train.epochs=1 (repeatable)",
        address="Ray cluster to join (auto or HOST:PORT; default: $RAY_ADDRESS, "
        "else start a local Ray in this process)",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help="sweep TOML (default: jobs/configs/demo.toml; also seed.toml, tiny.toml)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs"),
        help="output root; the sweep goes to OUT/<sweep name>/ (default: runs)",
    )
    p.add_argument(
        "--max-trials",
        type=int,
        default=sweeps.MAX_TRIALS,
        help=f"refuse grids with more trials than this (default {sweeps.MAX_TRIALS:,})",
    )
    p.add_argument(
        "--max-failures",
        type=int,
        default=2,
        help="worker crashes a trial survives by restarting from its checkpoint",
    )
    for flag, text in (
        ("--fresh", "start over: move an existing sweep folder aside (never deleted) first"),
        ("--retry-failed", "train diverged (NaN/inf) trials again; crashed ones are always retried"),
        ("--no-postprocess", "only train; skip post-processing and the gallery"),
    ):
        p.add_argument(flag, action="store_true", help=text)
    return p.parse_args(argv)


# --- progress ------------------------------------------------------------------


class Printer:
    """One compact line per trial event, instead of Ray's verbose tables. With a sweep folder it
    also says how each trial's post-processing went and keeps the gallery current while the sweep
    runs: rebuilt when a trial starts or ends, and at most every GALLERY_EVERY_S on epochs.

    A rebuild runs in Tune's event loop and grows with the sweep (~0.5 s at 4 runs, ~2 s at 256),
    so after one that took b seconds the next waits at least GALLERY_SHARE_INV * b: the live
    gallery costs the driver at most ~1/GALLERY_SHARE_INV of its time, whatever the grid's size."""

    GALLERY_EVERY_S = 30.0
    GALLERY_SHARE_INV = 10

    def __init__(self, trials: list[sweeps.Trial], sweep_dir: Path | None = None):
        self.start = time.time()
        self.epochs = {t.name: t.config.train.epochs for t in trials}
        self.width = max(len(t.name) for t in trials)
        self.sweep_dir, self.built, self.cost = sweep_dir, 0.0, 0.0

    def __call__(self, kind: str, name: str, result: dict) -> None:
        head = f"[{time.time() - self.start:7.1f}s] {name:<{self.width}}"
        if kind == "start":
            print(f"{head}  started", flush=True)
        elif kind == "epoch" and "test_elbo" in result:
            print(
                f"{head}  epoch {result['epoch']:>3}/{self.epochs[name]}  "
                f"loss {result['loss']:9.2f}  test ELBO {result['test_elbo']:9.2f}  "
                f"{result['images_per_s']:6.0f} img/s",
                flush=True,
            )
        elif kind == "epoch" and result.get("diverged"):
            print(f"{head}  diverged (NaN/inf); marking it failed", flush=True)
        elif kind == "end":
            print(f"{head}  finished{self.postprocessed(name)}", flush=True)
        if self.sweep_dir and self.gallery_due(kind):
            self.rebuild_gallery()

    def gallery_due(self, kind: str) -> bool:
        since = time.time() - self.built
        if since < self.GALLERY_SHARE_INV * self.cost:
            return False
        return kind != "epoch" or since > self.GALLERY_EVERY_S

    def postprocessed(self, name: str) -> str:
        """', post-processed in 18.2 s' when the trial's summary.json is newer than its training."""
        if not self.sweep_dir:
            return ""
        trial = layout.SweepDir(self.sweep_dir).trial(name)
        summary, status = trial.file("summary"), trial.file("status")
        if not (summary.is_file() and status.is_file()) or summary.stat().st_mtime < status.stat().st_mtime:
            return ""
        total = trial.summary().get("timings", {}).get("total")
        return f", post-processed in {total:.1f} s" if isinstance(total, (int, float)) else ""

    def rebuild_gallery(self) -> None:
        """A failed rebuild costs a line, never the sweep: the final build reports for real."""
        from vaecore.gallery import site

        start = time.time()
        try:
            index = site.build(self.sweep_dir)
            if not self.built:
                print(f"gallery: {index} (rebuilt as trials start and end)", flush=True)
        except Exception as e:  # noqa: BLE001
            print(f"gallery: not rebuilt ({type(e).__name__}: {e})", file=sys.stderr, flush=True)
        self.built = time.time()
        self.cost = self.built - start


def print_summary(manifest: dict, post: dict[str, dict], sweep_dir: Path) -> None:
    """The sweep's one closing table: each trial's training, then its post-processing."""
    rows = manifest["trials"]
    width = max([len(n) for n in rows] + [5])
    print(f"\n{'trial':<{width}}  {'training':<11}  epochs  seconds  {'post-processing':<16}  reason")
    for name, t in rows.items():
        row = post.get(name)
        done, reason = post_cell(row, layout.SweepDir(sweep_dir).trial(name)), t["reason"]
        if not reason and row and row["status"] == "failed":
            reason = row["reason"]
        cells = f"{t['status']:<11}  {t['epochs']:>6}  {t['seconds']:>7.1f}  {done:<16}"
        print(f"{name:<{width}}  {cells}  {reason[:80]}")


def post_cell(row: dict | None, trial: layout.Trial) -> str:
    """'done (18.2 s)' (this pass or while the sweep ran), 'failed', or '-' (not trained, or
    --no-postprocess)."""
    from vaecore.post.sweep import UP_TO_DATE

    if row is None or (row["status"] == "skipped" and row["reason"] != UP_TO_DATE):
        return "-"
    if row["status"] == "failed":
        return "failed"
    seconds = row["seconds"] or trial.summary().get("timings", {}).get("total")
    return f"done ({seconds:.1f} s)" if isinstance(seconds, int | float) else "done"


# --- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.max_failures < 0:
        raise ConfigError(f"--max-failures must be >= 0, got {args.max_failures}")
    sweep = sweeps.load(args.config, args.overrides, args.max_trials)
    sweep_dir = args.out / sweep.name
    cluster.check_reachable(args.address)
    for cfg_data in {t.config.data for t in sweep.trials}:  # verify once here, not in every worker
        print(f"data: verified {datafiles.verify(cfg_data.dir, cfg_data.download)}")
    with sweeps.lock(sweep_dir, "jobs.sweep"), contextlib.ExitStack() as stack:
        if not args.address:
            stack.enter_context(cluster.private_token())
        return run(sweep, sweep_dir, args)


def run(sweep: sweeps.Sweep, sweep_dir: Path, args: argparse.Namespace) -> int:
    """Train what is pending, then post-process; the caller holds the sweep folder's lock."""
    # Tune warns when a callback takes over 0.5 s; ours rebuilds the gallery (~0.5 s) on purpose.
    os.environ.setdefault("TUNE_WARN_THRESHOLD_S", "5")
    from vaecore import distributed  # only now: Ray reads RAY_AUTH_MODE (and the above) when imported

    sweeps.prepare(sweep, sweep_dir, args.fresh)
    todo = sweeps.pending(sweep, sweep_dir, args.retry_failed)
    n = len(sweep.trials)
    print(
        f"sweep '{sweep.name}': {n} trials, {n - len(todo)} already done, {len(todo)} to train -> {sweep_dir}"
    )
    extra: dict = {}
    try:
        with distributed.ray_session(args.address) as extra:
            sweeps.write_manifest(sweep, sweep_dir, extra, new_run=True)
            train(todo, sweep, sweep_dir, args, extra)
            return finish(sweep, sweep_dir, args, extra)
    except KeyboardInterrupt:  # Ctrl+C or SIGTERM (Slurm preemption): nothing more is post-processed
        # After Ray has shut down, so no trial process writes its status behind this.
        sweeps.mark_interrupted(todo, sweep_dir)
        sweeps.write_manifest(sweep, sweep_dir, extra)
        raise


def train(todo: list[sweeps.Trial], sweep: sweeps.Sweep, sweep_dir: Path, args, extra: dict) -> None:
    """The pending trials on the cluster, each post-processed as it ends (unless --no-postprocess)."""
    from vaecore import distributed

    if not todo:
        return
    if args.address:  # a local Ray's one node is this machine: its folder and data are checked already
        distributed.check_nodes(sweep_dir, {t.config.data for t in todo})
    start = time.time()
    live = None if args.no_postprocess else sweep_dir
    printer = Printer(sweep.trials, live)
    distributed.run_trials(todo, sweep_dir, printer, args.max_failures, live is not None)
    extra["timings"]["sweep_s"] = round(time.time() - start, 2)


def finish(sweep: sweeps.Sweep, sweep_dir: Path, args, extra: dict) -> int:
    """Post-process what the sweep left (quietly skipping what is done), print the one closing
    table, rebuild the gallery; the exit status."""
    import jobs.postprocess
    from vaecore import distributed

    manifest = sweeps.write_manifest(sweep, sweep_dir, extra)
    completed = [n for n, t in manifest["trials"].items() if t["status"] == "completed"]
    post = {}
    if completed and not args.no_postprocess:
        fan_out = distributed.postprocess_tasks
        post = jobs.postprocess.run(sweep_dir, fan_out=fan_out, build_gallery=False, table=False)
    print_summary(manifest, post, sweep_dir)
    if post:
        publish(sweep_dir)
    if not completed:
        return EXIT_NONE_COMPLETED
    if any(post.get(n, {}).get("status") == "failed" for n in completed):
        print("post-processing failed for a completed trial (see above)", file=sys.stderr)
        return EXIT_POSTPROCESS_FAILED
    return 0


def cli() -> None:
    """vae-sweep and `python -m jobs.sweep`: an expected error is one line on stderr, exit 2."""
    _cli.run(main)


if __name__ == "__main__":
    cli()
