"""All Ray code: the Train worker loop (DDP), the per-trial Tune function, the sweep driver, and the
Ray session (joining a cluster or starting a local one).

Ray 2.60 runs Train V2, where a Tune trial is a plain function that builds a TorchTrainer and
waits on fit(). The Train run's name is stable per trial ("train-<trial>"), so a worker restart, a
trial retry or a re-run of the whole sweep continues from the trial's latest checkpoint.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
import secrets
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import ray
import ray.train
import ray.train.torch
import torch
from ray import tune
from ray.train.torch import TorchConfig, TorchTrainer
from ray.tune import PlacementGroupFactory
from ray.tune.integration.ray_train import TuneReportCallback
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from vaecore import data, runs, train
from vaecore.config import ConfigError, digest, from_dict
from vaecore.sweep import Trial

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
            status = {"status": "failed", "reason": _first_line(e)}
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


def _first_line(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}"
    cause = e.__cause__ or e.__context__
    if cause is not None:
        text += f" (caused by {type(cause).__name__}: {cause})"
    return " ".join(text.split())[:500]


# --- the driver ---------------------------------------------------------------------------------


def check_fits(resources: dict[str, float], cfg) -> None:
    """Refuse a trial that asks for more than the whole cluster has: Ray would wait forever."""
    r = cfg.resources
    need = {"CPU": r.workers * r.cpus_per_worker, "GPU": r.workers * r.gpus_per_worker}
    for kind, amount in need.items():
        if amount > resources.get(kind, 0):
            raise ConfigError(
                f"a trial needs {amount:g} {kind}s (resources.workers x {kind.lower()}s_per_worker) "
                f"but the Ray cluster has {resources.get(kind, 0):g}; lower them with --set, e.g. "
                f"--set resources.{kind.lower()}s_per_worker=0, or run on a bigger cluster"
            )


def max_concurrent(resources: dict[str, float], cfg) -> int:
    """How many trials fit at once, so no trial's workers wait forever for CPUs or GPUs."""
    r = cfg.resources
    by_cpu = resources.get("CPU", 1) // max(1, r.workers * r.cpus_per_worker)
    fits = [by_cpu]
    if r.gpus_per_worker > 0:
        fits.append(resources.get("GPU", 0) // (r.workers * r.gpus_per_worker))
    return max(1, int(min(fits)))


def check_nodes(sweep_dir: Path, data_cfgs: set) -> None:
    """On every node of the cluster, once per sweep start: the sweep folder is the same shared
    folder the driver writes (a marker file must be visible), and the dataset there is verified
    (each node's copy; a node remembers a verified copy until its files change)."""
    marker = sweep_dir.resolve() / f".shared-check-{secrets.token_hex(4)}"
    marker.write_text(socket.gethostname())
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        tasks = [
            _check_node.options(
                num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
            ).remote(str(marker), [asdict(c) for c in data_cfgs])
            for n in nodes
        ]
        problems = [p for p in ray.get(tasks, timeout=600) if p]
    finally:
        marker.unlink(missing_ok=True)
    if problems:
        raise ConfigError(problems[0])


@ray.remote
def _check_node(marker: str, data_cfgs: list[dict]) -> str:
    """'' if this node sees the marker and its dataset verifies, else the problem in one line."""
    host = socket.gethostname()
    if not Path(marker).is_file():
        return (
            f"node {host} cannot see {Path(marker).parent}: --out must be on storage shared by "
            f"every node of the Ray cluster"
        )
    try:
        for d in data_cfgs:
            data.load(d["dir"], d["download"])
    except data.DataError as e:
        return f"node {host}: {e}"
    return ""


def run_trials(
    todo: list[Trial],
    sweep_dir: Path,
    on_event: Callable[[str, str, dict], None],
    max_failures: int = 2,
    postprocess: bool = True,
) -> None:
    """Run the given trials as one Tune experiment on the connected Ray cluster; each completed
    trial is post-processed as soon as it has trained (unless postprocess is False)."""
    if not todo:
        return
    ray_dir = (sweep_dir / "ray").resolve()
    specs = [
        {
            "name": t.name,
            "config": asdict(t.config),
            "ray_dir": str(ray_dir),
            "trial_dir": str(sweep_dir.resolve() / "trials" / t.name),
            "max_failures": max_failures,
            "postprocess": postprocess,
        }
        for t in todo
    ]
    cluster = ray.cluster_resources()
    for t in todo:
        check_fits(cluster, t.config)
    limit = min(max_concurrent(cluster, t.config) for t in todo)
    tuner = tune.Tuner(
        tune.with_resources(run_trial, trial_resources),
        param_space={"trial": tune.grid_search(specs)},
        # reuse_actors: the next trial with the same resources runs in the same process, so
        # imports, the dataset and (on a GPU) the CUDA context are paid once per slot.
        tune_config=tune.TuneConfig(max_concurrent_trials=limit, reuse_actors=True),
        run_config=tune.RunConfig(
            name="tune",
            storage_path=str(ray_dir),
            verbose=0,
            callbacks=[Progress(on_event)],
            # A trial whose process died (its node was lost) starts again from its checkpoint.
            failure_config=tune.FailureConfig(max_failures=max_failures),
        ),
    )
    for result in tuner.fit():
        if result.error is not None:  # the trial function itself crashed: record why
            spec = result.config["trial"]
            runs.write_json(
                Path(spec["trial_dir"]) / "status.json",
                {
                    "status": "failed",
                    "reason": _first_line(result.error),
                    "epochs": len(runs.read_jsonl(Path(spec["trial_dir"]) / "metrics.jsonl")),
                },
            )


class Progress(tune.Callback):
    """Turns Tune's events on the driver into calls of on_event(kind, trial_name, result)."""

    def __init__(self, on_event: Callable[[str, str, dict], None]):
        self.on_event = on_event

    def on_trial_start(self, iteration, trials, trial, **info):
        self.on_event("start", trial.config["trial"]["name"], {})

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.on_event("epoch", trial.config["trial"]["name"], result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.on_event("end", trial.config["trial"]["name"], {})

    def on_trial_error(self, iteration, trials, trial, **info):
        self.on_event("end", trial.config["trial"]["name"], {})


# --- the Ray session ----------------------------------------------------------------------------


def hardware() -> dict:
    """The connected cluster: nodes, CPUs, GPUs (and their names, seen from the driver)."""
    res = ray.cluster_resources()
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    nodes = len([n for n in ray.nodes() if n.get("Alive")])
    return {
        "nodes": nodes,
        "cpus": int(res.get("CPU", 0)),
        "gpus": int(res.get("GPU", 0)),
        "gpu_names": names,
        "driver_host": socket.gethostname(),
    }


@contextlib.contextmanager
def ray_session(address: str | None):
    """Join the cluster at `address`, or start a local Ray for the duration; yields run facts."""
    # Faster worker-group start and teardown on short trials (passed on to the workers).
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no Tune tables: we print our own lines
    with contextlib.ExitStack() as stack:
        start = time.time()
        # The tests' fault switch reaches the workers of a cluster that was already running too.
        fault = {"env_vars": {FAULT_ENV: os.environ[FAULT_ENV]}} if FAULT_ENV in os.environ else None
        if address:
            ray.init(address=address, log_to_driver=False, logging_level="WARNING", runtime_env=fault)
        else:
            # Advertise loopback only. Ray 2.60 has no setting to bind its ports to one address
            # (they listen on all interfaces): the job's private token (jobs/sweep.py) keeps
            # others out.
            ray.init(
                log_to_driver=False,
                logging_level="WARNING",
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                runtime_env=fault,
            )
        stack.callback(ray.shutdown)
        # After ray.init, which installs its own SIGTERM handler. Ctrl+C and SIGTERM (Slurm
        # preemption) both raise KeyboardInterrupt: the driver stops at once, the trials keep
        # their checkpoints, nothing more is post-processed, and a re-run resumes. Tune's own SIGINT
        # handler would instead end fit() quietly, as if the sweep had finished.
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)
        extra = {"hardware": hardware(), "timings": {"ray_init_s": round(time.time() - start, 2)}}
        hw = extra["hardware"]
        print(
            f"ray: {hw['cpus']} CPUs, {hw['gpus']} GPUs on {hw['nodes']} node(s) "
            f"({extra['timings']['ray_init_s']} s to {'join' if address else 'start'})"
        )
        yield extra


def _interrupt(signum, frame):
    raise KeyboardInterrupt
