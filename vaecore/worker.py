"""What runs inside the cluster for one trial: the Tune trial function, which builds a TorchTrainer
and waits on fit(), and the Train worker loop it runs (local mode for one worker, DDP for more).

Ray 2.60 runs Train V2, where a Tune trial is a plain function that builds a TorchTrainer and
waits on fit(). The Train run's name is stable per trial ("train-<trial>"), so a worker restart, a
trial retry or a re-run of the whole sweep continues from the trial's latest checkpoint. The driver
side (which trials, on which cluster) is vaecore/distributed.py.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import ray
import ray.train
import ray.train.torch
import torch
from ray import tune
from ray.train.torch import TorchConfig, TorchTrainer
from ray.tune import PlacementGroupFactory
from ray.tune.integration.ray_train import TuneReportCallback

from vaecore import data, runs, train
from vaecore.config import digest, from_dict

FAULT_ENV = "VAE_FAULT_ONCE"  # tests: a marker path; the first worker to see it missing crashes once


# --- inside each Ray Train worker ---------------------------------------------------------------


def train_loop_per_worker(loop_cfg: dict) -> None:
    """Run on every worker: DDP-wrap the model, resume from Ray's checkpoint, train, report.

    A single-worker trial runs in Train's local mode (loop_cfg["local"]): in the trial's own process.
    There Ray 2.60 refuses the ray.train.* calls inside a Tune trial, and a reported checkpoint would
    stay in memory, so this loop writes its checkpoints to the Train run's folder itself, resumes
    from there and reports epochs to Tune directly.
    """
    clock = {"entered": time.time()}  # where a trial's time goes, beside the epochs themselves
    cfg, trial_dir = from_dict(loop_cfg["config"]), Path(loop_cfg["trial_dir"])
    local = loop_cfg.get("local", False)
    if local:
        rank, world, checkpoint, wrap = 0, 1, None, None
        gpu = cfg.resources.gpus_per_worker > 0 and torch.cuda.is_available()
        device = torch.device("cuda", 0) if gpu else torch.device("cpu")  # Ray set CUDA_VISIBLE_DEVICES
    else:
        ctx = ray.train.get_context()
        rank, world = ctx.get_world_rank(), ctx.get_world_size()
        checkpoint, wrap = ray.train.get_checkpoint(), ray.train.torch.prepare_model
        device = ray.train.torch.get_device()
    train.set_threads(cfg)
    ds = _dataset(cfg.data, str(device))  # the driver verified the files before starting
    s = train.new_session(cfg, device, rank, wrap=wrap)
    # The newest readable checkpoint on disk, not only the one Ray registered: a worker (or its
    # node) that dies right after writing a checkpoint, before Ray's controller registers it, or a
    # driver killed at that moment, would otherwise cost the trial that epoch or all of them.
    resume_dir = latest_checkpoint(Path(loop_cfg["run_dir"]))
    if checkpoint or resume_dir:
        with contextlib.nullcontext(resume_dir) if resume_dir else checkpoint.as_directory() as d:
            train.load_state(s, runs.torch_load(Path(d) / "checkpoint.pt", device), cfg, device, rank)
        if rank == 0:
            _log_event(trial_dir, "resumed", s.epoch)
    clock["ready"] = time.time()
    try:
        while s.epoch < cfg.train.epochs:
            row = train.run_epoch(s, ds, cfg, device, rank, world)
            if local:
                _report_local(s, cfg, row, trial_dir, Path(loop_cfg["run_dir"]), device)
            else:
                _report(s, cfg, row, trial_dir, rank, device)
            _maybe_fail_once(rank, s.epoch < cfg.train.epochs)
    except train.Diverged as e:
        # Every rank sees the same non-finite gradients, so all stop here together. Retrying from
        # the checkpoint would diverge again, so this is a result, not a crash.
        if rank == 0:
            runs.write_json(trial_dir / "diverged.json", {"reason": str(e), "epoch": s.epoch + 1})
        (tune.report if local else ray.train.report)({"diverged": 1.0, "epoch": s.epoch})
        return
    if rank == 0:
        train.save_model(s, cfg, trial_dir)
        runs.write_json(trial_dir / "worker_clock.json", {**clock, "done": time.time()})


@functools.lru_cache(maxsize=2)
def _dataset(cfg_data, device: str) -> data.FashionMNIST:
    """Once per process, on the training device (uint8, 55 MB at most): Tune reuses a trial's
    process for the next trial with the same resources."""
    return data.to_device(data.load_for(cfg_data, verify=False), device)


def _report(s: train.Session, cfg, row: dict, trial_dir: Path, rank: int, device) -> None:
    """Rank 0 writes our files and a Ray checkpoint; every rank reports (Ray expects all to)."""
    rng = train.gather_rng(device)  # every rank's random state: the resume is exact for each
    if rank != 0:
        ray.train.report(row)
        return
    with tempfile.TemporaryDirectory() as d:
        torch.save(train.state_dict(s, cfg, rng), Path(d) / "checkpoint.pt")
        ray.train.report(row, checkpoint=ray.train.Checkpoint.from_directory(d))
    # After the checkpoint is stored: an epoch in metrics.jsonl is never lost by a crash.
    train.write_epoch_files(s, trial_dir, device)


def _report_local(s: train.Session, cfg, row: dict, trial_dir: Path, run_dir: Path, device) -> None:
    """Local mode: Train keeps a reported checkpoint in memory only, so write it where Ray would
    (<run_dir>/checkpoint_<time>/, the two newest kept), then our files, then tell Tune."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S.%f")  # sorts like Ray's names
    runs.torch_save(
        train.state_dict(s, cfg, train.gather_rng(device)), run_dir / f"checkpoint_{stamp}" / "checkpoint.pt"
    )
    for old in sorted(run_dir.glob("checkpoint_*"))[:-2]:
        shutil.rmtree(old, ignore_errors=True)
    train.write_epoch_files(s, trial_dir, device)
    tune.report(row)


def _log_event(trial_dir: Path, event: str, epoch: int) -> None:
    """events.jsonl: what happened to a trial besides its epochs (resumes after a failure)."""
    rows = runs.read_jsonl(trial_dir / "events.jsonl")
    rows.append({"event": event, "epoch": epoch, "time": round(time.time(), 1)})
    runs.write_jsonl(trial_dir / "events.jsonl", rows)


def _maybe_fail_once(rank: int, more_to_do: bool) -> None:
    """Fault injection for the tests: crash one worker once, after a checkpointed epoch."""
    marker = os.environ.get(FAULT_ENV)
    if marker and rank == 0 and more_to_do and not Path(marker).exists():
        Path(marker).write_text("crashed once\n")
        raise RuntimeError("injected worker fault (VAE_FAULT_ONCE)")


# --- one Tune trial -----------------------------------------------------------------------------


def run_trial(tune_cfg: dict) -> None:
    """A Tune function trainable: one TorchTrainer for one grid point; writes status.json.

    A single-worker trial uses Train's local mode (num_workers=0): it trains in this process,
    which Tune gave the worker's CPUs (and GPU), and skips a controller and a worker process per
    trial (seconds each: benchmarks/trial_overhead.py). Local mode has no FailureConfig, so a crash
    is retried here (up to max_failures times, each resuming from the newest checkpoint), and a
    lost process by Tune's own retries. More workers: Train's worker group with DDP, as before.
    """
    spec = tune_cfg["trial"]
    cfg, trial_dir = from_dict(spec["config"]), Path(spec["trial_dir"])
    runs.write_json(trial_dir / "status.json", {"status": "running", "reason": ""})
    (trial_dir / "diverged.json").unlink(missing_ok=True)
    (trial_dir / "worker_clock.json").unlink(missing_ok=True)
    run_dir = Path(spec["ray_dir"]) / f"train-{spec['name']}"
    local = is_local(cfg)
    trainer = _trainer(spec, cfg, run_dir, local)
    start = time.time()
    for _ in range(spec["max_failures"] + 1 if local else 1):
        try:
            trainer.fit()
            status = {"status": "completed", "reason": ""}
            break
        except Exception as e:  # a crash after all retries: record it, let the other trials go on
            status = {"status": "failed", "reason": first_line(e)}
    diverged = runs.read_dict(trial_dir / "diverged.json")
    if diverged:  # final: training again would diverge again (--retry-failed overrides)
        status = {"status": "failed", "reason": diverged.get("reason", "diverged"), "final": True}
    elif status["status"] == "completed" and not (trial_dir / "model.pt").is_file():
        status = {"status": "failed", "reason": "training ended without writing model.pt"}
    status["epochs"] = len(runs.read_jsonl(trial_dir / "metrics.jsonl"))
    status["seconds"] = round(time.time() - start, 2)
    status.update(overheads(runs.read_dict(trial_dir / "worker_clock.json"), start))
    status.update(provenance(spec["config"]))
    runs.write_json(trial_dir / "status.json", status)
    if status["status"] == "completed" and spec.get("postprocess", True):
        if local:  # this process holds the trial's CPUs (and GPU): post-process right here
            with contextlib.suppress(Exception):  # the final pass retries the trial and says why
                _postprocess_task(str(trial_dir))
        else:
            postprocess(trial_dir)


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
            callbacks=[TuneReportCallback()],
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
        ),
    )


def postprocess(trial_dir: Path) -> None:
    """Post-process a trial as soon as it has trained, while other trials still train.

    A Ray task holding the CPUs (and GPU) this trial's training just released; the trial keeps its
    slot until it ends, so it never takes CPUs from another trial. A failure here is left to the
    sweep's final post-processing pass, which retries the trial and reports why.
    """
    from vaecore.post import sweep as post

    # Outside the trial's placement group (which holds no CPUs): the cluster's free CPUs.
    options = {**post.ray_options(trial_dir), "scheduling_strategy": "DEFAULT"}
    with contextlib.suppress(Exception):  # the final pass retries the trial and reports why
        ray.get(ray.remote(_postprocess_task).options(**options).remote(str(trial_dir)))


def _postprocess_task(trial_dir: str) -> dict:
    from vaecore.post import sweep as post

    quiet = lambda line: None  # noqa: E731 (the driver prints each trial's result line)
    sweep_dir = Path(trial_dir).parent.parent
    clf = post.reference_classifier(quiet)
    return post.process_trial(Path(trial_dir), post.load_options(sweep_dir), clf, progress=quiet)


def provenance(cfg_dict: dict) -> dict:
    """What trained a trial: its config's digest, the code revision, versions, the host."""
    return {
        "config_digest": digest(cfg_dict),
        "git": runs.git_revision(),
        "versions": runs.versions(),
        "host": socket.gethostname(),
    }


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
            runs.torch_load(d / "checkpoint.pt")
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
