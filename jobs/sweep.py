"""Run a hyperparameter sweep on Ray (embedded or a cluster), then post-process and build the gallery.

    python -m jobs.sweep --config jobs/configs/demo.toml [--out runs] [--set train.epochs=2]

Re-running the same command continues: completed trials are kept, interrupted ones resume from
their last checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import ray

import jobs.postprocess
from jobs import _cli
from vaecore import data, distributed, runs
from vaecore import sweep as sweeps
from vaecore.config import ConfigError

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "demo.toml"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vae-sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help="sweep TOML (default: jobs/configs/demo.toml; also seed.toml, tiny.toml)")
    p.add_argument("--out", type=Path, default=Path("runs"),
                   help="output root; the sweep goes to OUT/<sweep name>/ (default: runs)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value in every trial, e.g. train.epochs=1 (repeatable)")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                   help="Ray cluster to join (auto, HOST:PORT, ray://...; default: $RAY_ADDRESS, "
                        "else start a local Ray in this process)")
    p.add_argument("--fresh", action="store_true",
                   help="start over: move an existing sweep folder aside (never deleted) first")
    p.add_argument("--retry-failed", action="store_true",
                   help="train failed trials again (by default they are reported and kept)")
    p.add_argument("--max-failures", type=int, default=2,
                   help="worker crashes a trial survives by restarting from its checkpoint")
    p.add_argument("--no-postprocess", action="store_true",
                   help="only train; skip post-processing and the gallery")
    return p.parse_args(argv)


# --- preparing the sweep folder -----------------------------------------------------------------


def prepare(sweep: sweeps.Sweep, sweep_dir: Path, fresh: bool) -> None:
    """Create the folder, or refuse to mix a different sweep into an existing one."""
    text = sweeps.to_toml(sweep)
    old = sweep_dir / "sweep.toml"
    if old.is_file() and fresh:
        aside = sweep_dir.with_name(f"{sweep_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(sweep_dir, aside)
        print(f"--fresh: moved the previous sweep to {aside}")
    elif old.is_file() and old.read_text() != text:
        raise ConfigError(f"{sweep_dir} holds a different sweep (its sweep.toml differs); "
                          f"re-run with the same settings to continue, pass --fresh to start over, "
                          f"or choose another --out")
    runs.atomic_write_text(sweep_dir / "sweep.toml", text)


def pending(trials: list[sweeps.Trial], sweep_dir: Path, retry_failed: bool) -> list[sweeps.Trial]:
    """Trials still to train; writes config.json/params.json for every trial."""
    todo = []
    for t in trials:
        d = sweep_dir / "trials" / t.name
        runs.write_json(d / "config.json", asdict(t.config))
        runs.write_json(d / "params.json", t.params)
        state = (runs.read_json(d / "status.json") or {}).get("status")
        if state == "completed" or (state == "failed" and not retry_failed):
            continue
        todo.append(t)
    return todo


# --- progress and the manifest ------------------------------------------------------------------


class Printer:
    """One compact line per trial event, instead of Ray's verbose tables."""

    def __init__(self, trials: list[sweeps.Trial]):
        self.start = time.time()
        self.epochs = {t.name: t.config.train.epochs for t in trials}
        self.width = max(len(t.name) for t in trials)

    def __call__(self, kind: str, name: str, result: dict) -> None:
        head = f"[{time.time() - self.start:7.1f}s] {name:<{self.width}}"
        if kind == "start":
            print(f"{head}  started", flush=True)
        elif kind == "epoch" and "test_elbo" in result:
            print(f"{head}  epoch {result['epoch']:>3}/{self.epochs[name]}  "
                  f"loss {result['loss']:9.2f}  test ELBO {result['test_elbo']:9.2f}  "
                  f"{result['images_per_s']:6.0f} img/s", flush=True)
        elif kind == "epoch" and result.get("diverged"):
            print(f"{head}  diverged (NaN/inf); marking it failed", flush=True)
        elif kind == "end":
            print(f"{head}  finished", flush=True)


def hardware() -> dict:
    res = ray.cluster_resources()
    names = []
    try:
        import torch

        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:
        pass
    nodes = len([n for n in ray.nodes() if n.get("Alive")])
    return {"nodes": nodes, "cpus": int(res.get("CPU", 0)),
            "gpus": int(res.get("GPU", 0)), "gpu_names": names, "driver_host": socket.gethostname()}


def write_manifest(sweep: sweeps.Sweep, trials: list[sweeps.Trial], sweep_dir: Path,
                   extra: dict) -> dict:
    path = sweep_dir / "manifest.json"
    manifest = runs.read_json(path) or {"created": _now()}
    manifest.update({"sweep": sweep.name, "base": sweep.base, "grid": sweep.grid,
                     "set": sweep.overrides, "description": sweep.description, "updated": _now(),
                     "git": runs.git_revision(), "versions": runs.versions(), **extra})
    manifest["trials"] = {}
    for t in trials:
        status = runs.read_json(sweep_dir / "trials" / t.name / "status.json") or {}
        manifest["trials"][t.name] = {"params": t.params, "status": status.get("status", "pending"),
                                      "reason": status.get("reason", ""),
                                      "epochs": status.get("epochs", 0),
                                      "seconds": status.get("seconds", 0.0)}
    runs.write_json(path, manifest)
    return manifest


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def print_summary(manifest: dict) -> None:
    rows = manifest["trials"]
    width = max([len(n) for n in rows] + [5])
    print(f"\n{'trial':<{width}}  {'status':<9}  epochs  seconds  reason")
    for name, t in rows.items():
        print(f"{name:<{width}}  {t['status']:<9}  {t['epochs']:>6}  {t['seconds']:>7.1f}  "
              f"{t['reason'][:80]}")


# --- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    sweep = sweeps.load(args.config, args.overrides)
    trials = sweeps.trials(sweep)
    sweep_dir = args.out / sweep.name
    if args.max_failures < 0:
        raise ConfigError("--max-failures must be >= 0")
    check_reachable(args.address)
    for cfg_data in {t.config.data for t in trials}:  # verify once here, not in every worker
        ds = data.load(cfg_data.dir, cfg_data.download)
        print(f"data: verified {ds.source}")
    prepare(sweep, sweep_dir, args.fresh)
    todo = pending(trials, sweep_dir, args.retry_failed)
    print(f"sweep '{sweep.name}': {len(trials)} trials, {len(trials) - len(todo)} already done, "
          f"{len(todo)} to train -> {sweep_dir}")
    with ray_session(args.address) as extra:
        write_manifest(sweep, trials, sweep_dir, extra)
        if todo:
            start = time.time()
            distributed.run_trials(todo, sweep_dir, Printer(trials), args.max_failures)
            extra["timings"]["sweep_s"] = round(time.time() - start, 2)
        manifest = write_manifest(sweep, trials, sweep_dir, extra)
        print_summary(manifest)
        completed = [n for n, t in manifest["trials"].items() if t["status"] == "completed"]
        if completed and not args.no_postprocess:
            jobs.postprocess.run(sweep_dir)
    return 0 if completed else 1


def check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast on a HOST:PORT nobody listens on: ray.init would retry it for minutes."""
    if not address or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as e:
        raise ConnectionError(
            f"no Ray cluster answers at {address} ({e}); start one with `ray start --head`, "
            f"check the address, or leave out --address to run on a local Ray") from None


@contextlib.contextmanager
def ray_session(address: str | None):
    """Join the cluster at `address`, or start a local Ray for the duration; yields run facts."""
    # Faster worker-group start and teardown on short trials (passed on to the workers).
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no Tune tables: we print our own lines
    start = time.time()
    ray.init(address=address, log_to_driver=False, logging_level="WARNING",
             include_dashboard=False if not address else None)
    # After ray.init, which installs its own SIGTERM handler: on Slurm preemption stop like
    # Ctrl+C (Tune saves its state, the trials keep their checkpoints) so a re-run resumes.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        extra = {"hardware": hardware(), "timings": {"ray_init_s": round(time.time() - start, 2)}}
        hw = extra["hardware"]
        print(f"ray: {hw['cpus']} CPUs, {hw['gpus']} GPUs on {hw['nodes']} node(s) "
              f"({extra['timings']['ray_init_s']} s to {'join' if address else 'start'})")
        yield extra
    finally:
        ray.shutdown()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    _cli.run(main)
