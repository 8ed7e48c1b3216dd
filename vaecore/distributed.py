"""The driver side of Ray: the sweep's trials as one Tune run, the cluster checks before it, and
the Ray session (joining a cluster or starting a local one). What each trial runs inside the
cluster is vaecore/worker.py.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import ray
import torch
from ray import tune
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from vaecore import cluster, layout
from vaecore.config import ConfigError
from vaecore.post import sweep as post
from vaecore.sweep import Trial
from vaecore.worker import FAULT_ENV, first_line, run_trial, trial_resources

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


def check_fits_a_node(nodes: list[dict[str, float]], cfg) -> None:
    """Refuse a worker bigger than every node (`nodes`: each alive node's resources): a worker's
    CPUs and GPUs must be on one node, so Ray would wait forever though the cluster's sum fits."""
    r = cfg.resources
    need = {"CPU": r.cpus_per_worker, "GPU": r.gpus_per_worker}
    if not nodes or any(all(n.get(k, 0) >= v for k, v in need.items() if v > 0) for n in nodes):
        return
    biggest = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)))
    raise ConfigError(
        f"a trial's worker needs {r.cpus_per_worker:g} CPUs and {r.gpus_per_worker:g} GPUs on one node "
        f"but the largest of the cluster's {len(nodes)} nodes has {biggest.get('CPU', 0):g} CPUs and "
        f"{biggest.get('GPU', 0):g} GPUs; lower resources.cpus_per_worker / gpus_per_worker with --set"
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
    (each node's copy; a node remembers a verified copy until its files change). A torch-free Ray
    task per node (vaecore.cluster.node_problem), which starts in about a second."""
    marker = sweep_dir.resolve() / f".shared-check-{secrets.token_hex(4)}"
    marker.write_text(socket.gethostname())
    check = ray.remote(cluster.node_problem)
    dirs = sorted({(c.dir, c.download) for c in data_cfgs})
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        tasks = [
            check.options(
                num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
            ).remote(n["NodeManagerAddress"], str(marker), dirs)
            for n in nodes
        ]
        problems = [p for p in ray.get(tasks, timeout=600) if p]
    finally:
        marker.unlink(missing_ok=True)
    if problems:
        raise ConfigError(problems[0])


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
    folder = layout.SweepDir(sweep_dir.resolve())
    specs = [_spec(t, folder, max_failures) for t in todo]
    cluster = ray.cluster_resources()
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    for t in todo:
        check_fits(cluster, t.config)
        check_fits_a_node(nodes, t.config)
    limit = min(max_concurrent(cluster, t.config) for t in todo)
    trainable = tune.with_parameters(run_trial, after=postprocess_trial if postprocess else None)
    tuner = tune.Tuner(
        tune.with_resources(trainable, trial_resources),
        param_space={"trial": tune.grid_search(specs)},
        # reuse_actors: the next trial with the same resources runs in the same process, so
        # imports, the dataset and (on a GPU) the CUDA context are paid once per slot.
        tune_config=tune.TuneConfig(max_concurrent_trials=limit, reuse_actors=True),
        run_config=tune.RunConfig(
            name="tune",
            storage_path=str(folder.file("ray")),
            verbose=0,
            callbacks=[Progress(on_event)],
            # A trial whose process died (its node was lost) starts again from its checkpoint.
            failure_config=tune.FailureConfig(max_failures=max_failures),
        ),
    )
    for result in tuner.fit():
        if result.error is not None:  # the trial function itself crashed: record why
            layout.Trial(result.config["trial"]["trial_dir"]).mark_failed(first_line(result.error))


def _spec(t: Trial, folder: layout.SweepDir, max_failures: int) -> dict:
    """What a Tune trial gets: plain data (its config as a dict) and where its files go."""
    return {
        "name": t.name,
        "config": asdict(t.config),
        "ray_dir": str(folder.file("ray")),
        "trial_dir": str(folder.trial(t.name).path),
        "max_failures": max_failures,
    }


# --- post-processing, scheduled by the driver -----------------------------------------------------


def postprocess_trial(trial_dir: str, local: bool) -> None:
    """What the driver has each trial run once it has trained, while other trials still train.

    It runs in the trial's slot, which keeps its CPUs (and GPU) until it ends, so post-processing
    never takes CPUs from another trial. A one-worker trial's process holds them itself: it
    post-processes in-process (its imports and dataset are warm); a DDP trial's holds none, so it
    starts a Ray task with a worker's resources. A failure is left to the sweep's final pass,
    which retries the trial and reports why.
    """
    with contextlib.suppress(Exception):
        if local:
            _postprocess_task(trial_dir)
        else:
            options = {**post.ray_options(Path(trial_dir)), "scheduling_strategy": "DEFAULT"}
            ray.get(ray.remote(_postprocess_task).options(**options).remote(trial_dir))


def _postprocess_task(trial_dir: str) -> dict:
    """One trial, quietly (the driver prints its result line), with its sweep's options."""
    clf = post.reference_classifier(lambda line: None)
    opts = post.load_options(Path(trial_dir).parent.parent)
    return _process_with_cpus(Path(trial_dir), opts, clf, False, progress=lambda line: None)


def postprocess_tasks(
    dirs: list[Path], opts, clf_state: dict, force: bool, progress: Callable[[str], None]
) -> dict[str, dict]:
    """Post-process trials as Ray tasks, each with a training worker's resources; a row per trial
    as each finishes (not in submission order). A crashed task fails its trial, not the sweep."""
    task = ray.remote(_process_with_cpus)
    clf_ref = ray.put(clf_state)
    pending = {task.options(**post.ray_options(d)).remote(d, opts, clf_ref, force): d for d in dirs}
    out = {}
    while pending:
        (ref,), _ = ray.wait(list(pending), num_returns=1)
        d = pending.pop(ref)
        try:
            out[d.name] = ray.get(ref)
        except Exception as e:
            out[d.name] = {"status": "failed", "reason": f"ray task: {first_line(e)}", "seconds": 0.0}
        progress(post.done_line(d, out[d.name]))
    return {d.name: out[d.name] for d in dirs}


def _process_with_cpus(trial_dir: Path, opts, clf_state: dict, force: bool, progress=print) -> dict:
    """post.process_trial with torch's threads set to the CPUs Ray gave this task or trial."""
    return post.process_trial(trial_dir, opts, clf_state, force, progress=progress, threads=_assigned_cpus())


def _assigned_cpus() -> int | None:
    """The CPUs Ray gave the task or actor this runs in (its torch threads), or None on the driver."""
    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except AssertionError:  # Ray's way of saying "this is the driver, not a worker"
        return None
    return max(1, round(cpus)) if cpus else None


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

    def on_trial_recover(self, iteration, trials, trial, **info):
        # Its process died (its node was lost, or it was killed): Tune starts it again.
        name, tries = trial.config["trial"]["name"], trial.config["trial"]["max_failures"]
        print(
            f"{name}: its trial process was lost (a lost node, or killed); restarting it from its last "
            f"checkpoint (retry {trial.num_failures} of {tries})",
            flush=True,
        )


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
