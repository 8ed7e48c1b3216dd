"""Seconds a Ray Train run costs around an empty training function: python -m benchmarks.trial_overhead.

Each run is what one sweep trial does: a Ray task (like Tune's trial actor) calls TorchTrainer.fit()
on a function that only reports once. Compared: a normal single-worker run (controller actor plus
one worker actor, process group, health checks) and Train V2's local mode (num_workers=0: the
function runs in the calling process). Local mode is measured here, not used by the sweep: its
report() keeps the checkpoint in memory only, calls no callbacks (no Tune progress) and ignores
FailureConfig (no retries), so resume, progress and fault recovery would all be lost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import ray
import ray.train
from ray.train.torch import TorchTrainer


def _empty(_config: dict) -> None:
    ray.train.report({"done": 1})


@ray.remote(num_cpus=0)
def _one_trial(workers: int, storage: str, name: str) -> float:
    start = time.perf_counter()
    TorchTrainer(
        _empty,
        train_loop_config={},
        scaling_config=ray.train.ScalingConfig(num_workers=workers),
        run_config=ray.train.RunConfig(name=name, storage_path=storage),
    ).fit()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")  # as the sweep sets it
    ray.init(include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    storage = tempfile.mkdtemp(prefix="overhead-")
    print("| mode | fit() seconds, median (min-max) over runs |\n|---|---|")
    for workers, label in ((1, "one worker (what the sweep uses)"), (0, "local mode (num_workers=0)")):
        times = [ray.get(_one_trial.remote(workers, storage, f"w{workers}-{i}")) for i in range(args.repeats)]
        print(f"| {label} | {statistics.median(times):.2f} ({min(times):.2f}-{max(times):.2f}) |", flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
