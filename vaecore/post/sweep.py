"""Post-processing of a sweep: which trials, the skip key, Ray tasks or in-process, progress lines.

Reads only what each trial saved (config.json, model.pt, metrics.jsonl, status.json, params.json).
summary.json is written last and carries an `inputs` hash, so an interrupted trial is redone and
an unchanged one is skipped.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from vaecore import data, runs
from vaecore.config import ConfigError, read_toml
from vaecore.post import classifier
from vaecore.post.trial import Options, TrialError, options_from, run_pipeline

__all__ = ["Options", "options_from", "process_sweep", "process_trial"]

# bump when the outputs change meaning; part of the skip key. pp-2: one pass over the test images,
# the pictures' samples are the FID's first ones (z from sample_seed), IWAE draws made up front
CODE_VERSION = "pp-2"


def load_options(sweep_dir: Path) -> Options:
    path = Path(sweep_dir) / "sweep.toml"
    return options_from(read_toml(path).get("postprocess", {})) if path.is_file() else Options()


def code_hash() -> str:
    """Hash of the modules whose code decides the outputs: all of post/, plus the core ones it uses."""
    here = Path(__file__).resolve().parent
    files = sorted(here.glob("*.py")) + [here.parent / f"{n}.py" for n in ("latent", "losses", "model")]
    h = hashlib.sha256(CODE_VERSION.encode())
    for path in files:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def inputs_hash(trial_dir: Path, opts: Options, clf_key: str) -> str:
    h = hashlib.sha256()
    for name in ("model.pt", "config.json"):
        h.update((trial_dir / name).read_bytes())
    settings = {k: v for k, v in asdict(opts).items() if k != "threads"}  # speed, not meaning
    h.update(json.dumps(settings, sort_keys=True).encode())
    h.update(clf_key.encode())
    h.update(code_hash().encode())
    return h.hexdigest()


# --- one trial ----------------------------------------------------------------------------------


def why_not_ready(trial_dir: Path) -> str:
    """'' if the trial can be post-processed, else the reason it cannot."""
    status = runs.read_json(trial_dir / "status.json", {}) or {}
    if status.get("status") != "completed":
        reason = status.get("reason") or "no status.json"
        return f"training not completed (status {status.get('status', 'missing')!r}: {reason})"
    if not (trial_dir / "model.pt").is_file():
        return "no model.pt"
    return ""


def skip_reason(trial_dir: Path, opts: Options, clf_key: str, force: bool = False) -> tuple[str, str]:
    """('', inputs key) if the trial needs post-processing, else (why not, key or ''). Cheap: hashes
    a few files, so the driver can ask before starting a task."""
    reason = why_not_ready(trial_dir)
    if reason:
        return reason, ""
    key = inputs_hash(trial_dir, opts, clf_key)
    old = runs.read_json(trial_dir / "summary.json", {}) or {}
    return ("up to date" if not force and old.get("inputs") == key else ""), key


@functools.lru_cache(maxsize=4)
def _dataset(folder: str, train_per_class: int, test_per_class: int) -> data.FashionMNIST:
    return data.subset(data.load(folder), train_per_class, test_per_class)


def process_trial(
    trial_dir: Path,
    opts: Options,
    clf_state: dict,
    force: bool = False,
    progress: Callable[[str], None] = print,
) -> dict:
    """Post-process one trial; never raises for a bad trial, returns its status row."""
    trial_dir, name, start = Path(trial_dir), Path(trial_dir).name, time.perf_counter()
    row = {"status": "skipped", "reason": "", "seconds": 0.0}
    try:
        row["reason"], key = skip_reason(trial_dir, opts, clf_state["info"]["key"], force)
        if row["reason"]:
            return row
        cfg_dict = json.loads((trial_dir / "config.json").read_text())
        ds = _dataset(
            cfg_dict["data"]["dir"], cfg_dict["data"]["train_per_class"], cfg_dict["data"]["test_per_class"]
        )
        device = (
            "cuda" if cfg_dict["resources"]["gpus_per_worker"] > 0 and torch.cuda.is_available() else "cpu"
        )
        with pinned_threads(opts.threads or _ray_task_cpus()):
            summary = run_pipeline(
                trial_dir, ds, opts, clf_state, device, lambda step: progress(f"[{name}] {step}")
            )
        summary["inputs"] = key
        runs.write_json(trial_dir / "summary.json", summary)  # last: marks the trial as done
        row.update(status="done", reason="")
    except (TrialError, ConfigError, data.DataError, OSError, KeyError, ValueError, RuntimeError) as e:
        row.update(status="failed", reason=str(e).splitlines()[0] if str(e) else type(e).__name__)
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


@contextlib.contextmanager
def pinned_threads(n: int | None):
    """torch's intra-op threads (OpenMP, and MKL's BLAS/LAPACK with them) set to n, then restored.

    A Ray task gets n = its CPUs: more threads than cores made small BLAS calls (a 128 x 128
    eigh) and the convolutions slower on a shared box. None leaves torch's default.
    """
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _ray_task_cpus() -> int | None:
    """The CPUs Ray gave the task this process is running, or None outside a Ray task."""
    ray = sys.modules.get("ray")  # never import Ray here: vaecore imports without it
    if ray is None or not ray.is_initialized():
        return None
    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except AssertionError:  # Ray's way of saying "this is the driver, not a worker"
        return None
    return max(1, round(cpus)) if cpus else None


# --- the sweep ----------------------------------------------------------------------------------


def reference_classifier(progress: Callable[[str], None] = print) -> dict:
    """The shipped reference classifier's state dict and info (never trained here)."""
    model, info = classifier.load_reference()
    progress(
        f"reference classifier: shipped weights {info['key']}, test accuracy {info['test_accuracy']:.4f}"
    )
    return {"model": model.state_dict(), "info": info}


def trial_dirs(sweep_dir: Path) -> list[Path]:
    folder = Path(sweep_dir) / "trials"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{sweep_dir} is not a sweep folder (no trials/ inside); "
            f"pass <out>/<sweep> as written by jobs.sweep"
        )
    return sorted(p for p in folder.iterdir() if p.is_dir())


def ray_options(trial_dir: Path) -> dict:
    """The Ray resources to post-process a trial with: those one of its training workers had."""
    cfg = runs.read_json(trial_dir / "config.json", {}) or {}
    res = cfg.get("resources", {})
    gpus = 1 if res.get("gpus_per_worker", 0) > 0 else 0
    return {"num_cpus": max(1, int(res.get("cpus_per_worker", 1))), "num_gpus": gpus}


def _run_ray(
    dirs: list[Path], opts: Options, clf_state: dict, force: bool, progress: Callable[[str], None]
) -> dict[str, dict]:
    import ray

    task = ray.remote(process_trial)
    clf_ref = ray.put(clf_state)
    pending = {task.options(**ray_options(d)).remote(d, opts, clf_ref, force): d for d in dirs}
    out = {}
    while pending:  # report each trial as it finishes, not in submission order
        (ref,), _ = ray.wait(list(pending), num_returns=1)
        d = pending.pop(ref)
        try:
            out[d.name] = ray.get(ref)
        except Exception as e:  # a crashed worker fails its trial, not the sweep
            out[d.name] = {
                "status": "failed",
                "reason": f"ray task: {str(e).splitlines()[0]}",
                "seconds": 0.0,
            }
        progress(done_line(d, out[d.name]))
    return {d.name: out[d.name] for d in dirs}


def done_line(trial_dir: Path, row: dict) -> str:
    """'[z3] done in 38.1 s (encode 8.4, iwae 10.0, ...)' from the trial's row and summary.json."""
    line = f"[{trial_dir.name}] {row['status']}"
    if row["status"] == "done":
        timings = (runs.read_json(trial_dir / "summary.json", {}) or {}).get("timings", {})
        steps = ", ".join(f"{k} {v:.1f}" for k, v in timings.items() if k != "total" and v >= 0.05)
        return f"{line} in {row['seconds']:.1f} s ({steps})"
    return f"{line} {row['reason']}".rstrip()


def process_sweep(
    sweep_dir: Path, force: bool = False, progress: Callable[[str], None] = print, use_ray: bool | None = None
) -> dict[str, dict]:
    """Post-process every trial of a sweep: trial name -> {"status", "reason", "seconds"}.

    Runs each trial as a Ray task when Ray is initialised (or use_ray=True), else in-process.
    """
    sweep_dir = Path(sweep_dir)
    dirs = trial_dirs(sweep_dir)
    opts = load_options(sweep_dir)
    clf_state = reference_classifier(progress)
    if use_ray is None:
        use_ray = _ray_ready()
    if use_ray:  # only trials with work to do become tasks (a task start costs seconds)
        out, todo = {}, []
        for d in dirs:
            try:
                reason = skip_reason(d, opts, clf_state["info"]["key"], force)[0]
            except OSError:
                reason = ""  # the task reports it as the trial's failure
            if reason:
                out[d.name] = {"status": "skipped", "reason": reason, "seconds": 0.0}
                progress(done_line(d, out[d.name]))
            else:
                todo.append(d)
        if todo:
            progress(f"post-processing {len(todo)} trials as Ray tasks")
            out.update(_run_ray(todo, opts, clf_state, force, progress))
        return {d.name: out[d.name] for d in dirs}
    out = {}
    for d in dirs:
        out[d.name] = process_trial(d, opts, clf_state, force, progress)
        progress(done_line(d, out[d.name]))
    return out


def _ray_ready() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return ray.is_initialized()
