"""What runs inside the cluster for one trial: the Tune trial function, which builds a TorchTrainer
and waits on fit(), and the Train worker loop it runs (local mode for one worker, DDP for more).

Ray 2.60 runs Train V2, where a Tune trial is a plain function that builds a TorchTrainer and
waits on fit(). The Train run's name is stable per trial ("train-<trial>"), so a worker restart, a
trial retry or a re-run of the whole sweep continues from the trial's latest checkpoint. The driver
side (which trials, on which cluster, what runs after a trial) is vaecore/distributed.py.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import ray
import ray.train
import ray.train.torch
import torch
from ray import tune
from ray.train.torch import TorchConfig, TorchTrainer
from ray.tune import PlacementGroupFactory
from ray.tune.integration.ray_train import TuneReportCallback

from vaecore import data, layout, model, runs, train
from vaecore.config import digest, from_dict
from vaecore.epoch import gather
from vaecore.model import torch_load, torch_save

CHECKPOINT = "checkpoint.pt"  # the file inside each of Ray's checkpoint folders (ray/train-<trial>/)
FAULT_ENV = "VAE_FAULT_ONCE"  # tests: a marker path; the first worker to see it missing crashes once


# --- inside each Ray Train worker ---------------------------------------------------------------


def train_loop_per_worker(loop_cfg: dict) -> None:
    """Run on every worker: vaecore.train's one loop, with a Ray reporter around it.

    A single-worker trial runs in Train's local mode (loop_cfg["local"]): in the trial's own process.
    There Ray 2.60 refuses the ray.train.* calls inside a Tune trial, and a reported checkpoint would
    stay in memory, so its reporter writes checkpoints to the Train run's folder itself, resumes
    from there and reports epochs to Tune directly. More workers: DDP, Ray's checkpoints.
    """
    cfg, trial = from_dict(loop_cfg["config"]), layout.Trial(loop_cfg["trial_dir"])
    run_dir, local = Path(loop_cfg["run_dir"]), loop_cfg.get("local", False)
    if local:
        rank, world, wrap = 0, 1, None
        device = model.pick_device(cfg.resources.gpus_per_worker)  # Ray set CUDA_VISIBLE_DEVICES
    else:
        ctx = ray.train.get_context()
        rank, world, wrap = ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.prepare_model
        device = ray.train.torch.get_device()
    reporter = (LocalMode if local else Workers)(cfg, trial, run_dir, rank)
    reporter.clock["ranks"] = places(device)
    ds = data.cached(cfg.data)  # once per process, shared with its post-processing
    out = train.train_loop(cfg, ds, trial, reporter, device, rank, world, wrap)
    if out.diverged:
        reporter.send({"diverged": 1.0, "epoch": out.epochs})
    elif rank == 0:
        ranks = [{**where, **r} for where, r in zip(reporter.clock.pop("ranks"), out.ranks, strict=True)]
        clock = {**reporter.clock, "done": time.time(), "precision": out.precision, "ranks": ranks}
        runs.write_json(trial.file("worker_clock"), clock)


def here() -> dict:
    """This Ray worker's host name and its node's address (the one Ray advertises)."""
    node = ray.get_runtime_context().get_node_id()
    address = next((n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node), "")
    return {"host": socket.gethostname(), "address": address}


def places(device) -> list[dict]:
    """Where each rank trains, in rank order: its host name and its Ray node's address."""
    return gather(here(), device)


class RayReporter(train.Reporter):
    """Resumes from the newest checkpoint on disk; records when the worker was ready; the tests'
    fault switch. Subclasses store checkpoints and send results."""

    def __init__(self, cfg, trial: layout.Trial, run_dir: Path, rank: int):
        self.epochs, self.trial, self.run_dir, self.rank = cfg.train.epochs, trial, run_dir, rank
        self.clock = {"entered": time.time()}  # where a trial's time goes, beside its epochs

    def resume(self, device) -> dict | None:
        # The newest readable checkpoint on disk, not only the one Ray registered: a worker (or its
        # node) that dies right after writing a checkpoint, before Ray's controller registers it, or
        # a driver killed at that moment, would otherwise cost the trial that epoch or all of them.
        found = latest_checkpoint(self.run_dir)
        checkpoint = None if found else self.registered()
        if not (found or checkpoint):
            return None
        with contextlib.nullcontext(found) if found else checkpoint.as_directory() as d:
            return torch_load(Path(d) / CHECKPOINT, device)

    def registered(self):
        return None

    def started(self, epoch: int) -> None:
        self.clock["ready"] = time.time()
        if epoch and self.rank == 0:
            self.trial.log_event("resumed", epoch)

    def report(self, row: dict) -> None:
        self.progress(row)
        _maybe_fail_once(self.rank, row["epoch"] < self.epochs)

    def progress(self, row: dict) -> None:
        """The epoch's result, once its files are written."""
        self.send(row)

    def send(self, row: dict) -> None:
        """A result to Tune (through Train, for workers)."""
        raise NotImplementedError


class LocalMode(RayReporter):
    """Local mode: Train keeps a reported checkpoint in memory only, so write it where Ray would
    (<run_dir>/checkpoint_<time>/, the two newest kept); epochs go to Tune directly."""

    def save(self, state: dict | None, row: dict) -> None:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S.%f")  # sorts like Ray's names
        torch_save(state, self.run_dir / f"checkpoint_{stamp}" / CHECKPOINT)
        for old in sorted(self.run_dir.glob("checkpoint_*"))[:-2]:
            shutil.rmtree(old, ignore_errors=True)

    def send(self, row: dict) -> None:
        tune.report(row)


class Workers(RayReporter):
    """DDP workers: rank 0 hands Ray a checkpoint with its epoch's result; every rank reports
    (Ray expects all to), so the report happens when the checkpoint is saved."""

    def registered(self):
        return ray.train.get_checkpoint()

    def save(self, state: dict | None, row: dict) -> None:
        if state is None:
            ray.train.report(row)
            return
        with tempfile.TemporaryDirectory() as d:
            torch.save(state, Path(d) / CHECKPOINT)
            ray.train.report(row, checkpoint=ray.train.Checkpoint.from_directory(d))

    def progress(self, row: dict) -> None:
        pass  # reported with its checkpoint, in save()

    def send(self, row: dict) -> None:
        ray.train.report(row)


def _maybe_fail_once(rank: int, more_to_do: bool) -> None:
    """Fault injection for the tests: crash one worker once, after a checkpointed epoch."""
    marker = os.environ.get(FAULT_ENV)
    if marker and rank == 0 and more_to_do and not Path(marker).exists():
        Path(marker).write_text("crashed once\n")
        raise RuntimeError("injected worker fault (VAE_FAULT_ONCE)")


# --- one Tune trial -----------------------------------------------------------------------------


def run_trial(tune_cfg: dict, after: Callable[[str, bool], None] | None = None) -> None:
    """A Tune function trainable: one TorchTrainer for one grid point; writes status.json.

    A single-worker trial uses Train's local mode (num_workers=0): it trains in this process,
    which Tune gave the worker's CPUs (and GPU), and skips a controller and a worker process per
    trial (seconds each: benchmarks/trial_overhead.py). Local mode has no FailureConfig, so a crash
    is retried here (up to max_failures times, each resuming from the newest checkpoint), and a
    lost process by Tune's own retries. More workers: Train's worker group with DDP, as before.
    `after(trial_dir, local)`, the driver's, runs once the trial has completed, in its slot.
    """
    spec = tune_cfg["trial"]
    cfg, trial = from_dict(spec["config"]), layout.Trial(spec["trial_dir"])
    trial.mark_running()
    local = is_local(cfg)
    trainer = _trainer(spec, cfg, Path(spec["ray_dir"]) / f"train-{spec['name']}", local)
    start, error = time.time(), ""
    for _ in range(spec["max_failures"] + 1 if local else 1):
        try:
            trainer.fit()
            error = ""
            break
        except Exception as e:  # a crash after all retries: record it, let the other trials go on
            error = first_line(e)
    clock = runs.read_dict(trial.file("worker_clock"))
    extra = {**overheads(clock, start), "ranks": clock.get("ranks", [])}
    extra["precision"] = clock.get("precision", "")
    status = trial.outcome(error, time.time() - start, config_digest=digest(spec["config"]), **extra)
    trial.write_status(status)
    if after and status.status is layout.Status.COMPLETED:
        after(str(trial.path), local)


def is_local(cfg) -> bool:
    """Single-worker trials train in Train's local mode, inside their Tune trial's process."""
    return cfg.resources.workers == 1


def trial_resources(tune_cfg: dict) -> PlacementGroupFactory:
    """What Tune reserves for a trial's own process: a local-mode trial's worker resources, else
    nothing (the Train worker group reserves its own)."""
    cfg = from_dict(tune_cfg["trial"]["config"])
    if not is_local(cfg):
        return PlacementGroupFactory([{"CPU": 0, "memory": 1}])
    r = cfg.resources
    gpu = {"GPU": r.gpus_per_worker} if r.gpus_per_worker > 0 else {}
    return PlacementGroupFactory([{"CPU": r.cpus_per_worker, **gpu}])


def _trainer(spec: dict, cfg, run_dir: Path, local: bool) -> TorchTrainer:
    r = cfg.resources
    use_gpu = r.gpus_per_worker > 0
    per_worker = {"CPU": r.cpus_per_worker, **({"GPU": r.gpus_per_worker} if use_gpu else {})}
    loop_cfg = {
        "config": spec["config"],
        "trial_dir": spec["trial_dir"],
        "run_dir": str(run_dir),
        "local": local,
    }
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_cfg,
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=0 if local else r.workers,
            use_gpu=use_gpu,
            resources_per_worker=None if local else per_worker,
        ),
        run_config=ray.train.RunConfig(
            name=run_dir.name,
            storage_path=spec["ray_dir"],
            failure_config=ray.train.FailureConfig(max_failures=spec["max_failures"]),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            # Workers' results reach Tune through this callback, which starts a queue actor (a new
            # Ray worker process, ~1 s of CPU) per trial; local mode reports to Tune directly.
            callbacks=[] if local else [TuneReportCallback()],
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
        ),
    )


def overheads(clock: dict, start: float) -> dict:
    """Seconds spent around training: Ray starting the workers, our set-up, and Ray's teardown."""
    if not {"entered", "ready", "done"} <= set(clock):
        return {}
    return {
        "worker_start_s": round(clock["entered"] - start, 2),
        "setup_s": round(clock["ready"] - clock["entered"], 2),
        "teardown_s": round(time.time() - clock["done"], 2),
    }


def latest_checkpoint(run_dir: Path) -> str | None:
    """The newest readable checkpoint of this trial's Train run (<ray>/train-<trial>/), if any.

    Ray hands a restarted worker only the checkpoints its controller registered; one written just
    before a worker, a node or the driver died may not be. Every worker start resumes from here.
    """
    for d in sorted(run_dir.glob("checkpoint_*"), reverse=True):  # names sort by time
        try:
            torch_load(d / CHECKPOINT)
        except Exception:  # half-copied or missing: try the one before
            continue
        return str(d)
    return None


def first_line(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}"
    cause = e.__cause__ or e.__context__
    if cause is not None:
        text += f" (caused by {type(cause).__name__}: {cause})"
    return " ".join(text.split())[:500]
