"""Per-trial cost outside training at scale: python -m benchmarks.trial_scale [--trials 16 64 256].

Each grid is N trivial trials of one model (seeds 0..N-1; one training step each: 10 images,
batch 10, one epoch, a test set of 10), run by the real sweep job on a local Ray (`jobs.sweep
--no-postprocess`, two one-CPU trials at a time on 2 cores), so what is left is the cost of a
trial itself: Tune's bookkeeping, the Train run, the dataset and model set-up, the trial's files.

Reported per grid: the sweep's wall time (manifest timings.sweep_s); each slot's seconds per
trial (wall x slots / N); the training inside it (the epochs' own train_seconds + eval_seconds);
what is left per trial; what each trial beyond the previous grid's added outside training (the
slope, where the sweep's fixed start, first imports and Tune's set-up, cancels out); and the
median of status.json's worker_start_s, setup_s and teardown_s. Flat means the per-trial
columns do not grow with N. Prints a markdown table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vaecore import layout

REPO = Path(__file__).resolve().parent.parent
SLOTS = 2  # trials at a time: 2 CPUs, one each


def write_grid(path: Path, n: int) -> Path:
    from vaecore.config import dump_toml

    table = {
        "name": f"scale{n}",
        "base": "default",
        "description": f"{n} trivial trials (one step each)",
        "set": {
            "train.epochs": 1,
            "train.batch_size": 10,
            "data.train_per_class": 1,
            "data.test_per_class": 1,
            "resources.cpus_per_worker": 1,
        },
        # seeds, not latent sizes: every trial is the same model, so only their number changes
        "grid": {"train.seed": list(range(n))},
        "postprocess": {},
    }
    path.write_text(dump_toml(table))
    return path


def run(n: int, root: Path) -> dict:
    cfg = write_grid(root / f"scale{n}.toml", n)
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "jobs.sweep", "--config", str(cfg), "--out", str(root), "--no-postprocess"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=7200)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"the {n}-trial sweep failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    folder = layout.SweepDir(root / f"scale{n}")
    trials = folder.trials()
    train = sum(r["train_seconds"] + r["eval_seconds"] for t in trials for r in t.history())
    sweep_s = folder.manifest()["timings"]["sweep_s"]
    statuses = [t.status() for t in trials]
    med = lambda key: statistics.median(getattr(s, key) or 0.0 for s in statuses)  # noqa: E731
    return {
        "trials": len(trials),
        "job_s": round(wall, 1),
        "sweep_s": sweep_s,
        "slot_s_per_trial": round(sweep_s * SLOTS / n, 3),
        "train_s_per_trial": round(train / n, 3),
        "slot_s": sweep_s * SLOTS,
        "train_s": train,
        "outside_s_per_trial": round((sweep_s * SLOTS - train) / n, 3),
        "worker_start_s": med("worker_start_s"),
        "setup_s": med("setup_s"),
        "teardown_s": med("teardown_s"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, nargs="+", default=[16, 64, 256])
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="trial-scale-"))
    print(
        "| trials | job s | sweep s | slot s/trial | training s/trial | outside training s/trial |"
        " added s/trial | worker start s | set-up s | teardown s |"
    )
    print("|---" * 10 + "|")
    last = None
    for n in args.trials:
        r = run(n, root)
        added = "-"
        if last:  # outside training, per trial beyond the previous grid
            extra = (r["slot_s"] - last["slot_s"]) - (r["train_s"] - last["train_s"])
            added = round(extra / (r["trials"] - last["trials"]), 3)
        print(
            f"| {r['trials']} | {r['job_s']} | {r['sweep_s']} | {r['slot_s_per_trial']} | "
            f"{r['train_s_per_trial']} | {r['outside_s_per_trial']} | {added} | {r['worker_start_s']} | "
            f"{r['setup_s']} | {r['teardown_s']} |",
            flush=True,
        )
        (root / f"scale{n}.json").write_text(json.dumps(r, indent=1))
        last = r


if __name__ == "__main__":
    main()
