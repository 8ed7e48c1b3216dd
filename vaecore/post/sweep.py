"""Post-processing of a sweep: which trials, the skip key, one trial at a time, progress lines.

Reads only what each trial saved (config.json, model.pt, metrics.jsonl, status.json, params.json).
summary.json is written last and carries an `inputs` hash, so an interrupted trial is redone and
an unchanged one is skipped. Imports no Ray: a caller with a Ray session hands process_sweep a
`fan_out` (vaecore.distributed.postprocess_tasks) to run the trials as tasks.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from vaecore import data, datafiles, layout
from vaecore.config import ConfigError, from_dict, read_toml
from vaecore.model import pick_device
from vaecore.post import classifier
from vaecore.post.threads import pinned
from vaecore.post.trial import Options, TrialError, options_from, run_pipeline

__all__ = ["Options", "options_from", "process_sweep", "process_trial"]

# bump when the outputs change meaning; part of the skip key. pp-2: one pass over the test images,
# the pictures' samples are the FID's first ones (z from sample_seed), IWAE draws made up front
CODE_VERSION = "pp-2"


def load_options(sweep_dir: Path) -> Options:
    path = layout.SweepDir(sweep_dir).file("sweep")
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
    for key in ("model", "config"):
        h.update(layout.Trial(trial_dir).file(key).read_bytes())
    settings = {k: v for k, v in asdict(opts).items() if k != "threads"}  # speed, not meaning
    h.update(json.dumps(settings, sort_keys=True).encode())
    h.update(clf_key.encode())
    h.update(code_hash().encode())
    return h.hexdigest()


# --- one trial ----------------------------------------------------------------------------------


def skip_reason(trial_dir: Path, opts: Options, clf_key: str, force: bool = False) -> tuple[str, str]:
    """('', inputs key) if the trial needs post-processing, else (why not, key or ''). Cheap: hashes
    a few files, so the driver can ask before starting a task."""
    reason = layout.Trial(trial_dir).why_not_completed()
    if reason:
        return reason, ""
    key = inputs_hash(trial_dir, opts, clf_key)
    old = layout.Trial(trial_dir).summary()
    return (UP_TO_DATE if not force and old.get("inputs") == key else ""), key


UP_TO_DATE = "up to date"  # the skip reason of a trial whose summary.json has this very inputs key


def process_trial(
    trial_dir: Path,
    opts: Options,
    clf_state: dict,
    force: bool = False,
    progress: Callable[[str], None] = print,
    threads: int | None = None,
) -> dict:
    """Post-process one trial; never raises for a bad trial, returns its status row. threads:
    torch's for this trial ([postprocess] threads wins; a Ray task passes its CPUs)."""
    trial_dir, name, start = Path(trial_dir), Path(trial_dir).name, time.perf_counter()
    row = {"status": "skipped", "reason": "", "seconds": 0.0}
    try:
        row["reason"], key = skip_reason(trial_dir, opts, clf_state["info"]["key"], force)
        if row["reason"]:
            return row
        cfg = from_dict(json.loads(layout.Trial(trial_dir).file("config").read_text()))
        ds = data.subset(data.cached(cfg.data), opts.train_per_class, 0)  # the train images to encode
        device = str(pick_device(cfg.resources.gpus_per_worker))
        with pinned(opts.threads or threads):
            summary = run_pipeline(
                trial_dir, ds, opts, clf_state, device, lambda step: progress(f"[{name}] {step}")
            )
        summary["inputs"] = key
        layout.Trial(trial_dir).write_summary(summary)  # last: marks the trial as done
        row.update(status="done", reason="")
    except (TrialError, ConfigError, datafiles.DataError, OSError, KeyError, ValueError, RuntimeError) as e:
        row.update(status="failed", reason=str(e).splitlines()[0] if str(e) else type(e).__name__)
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


# --- the sweep ----------------------------------------------------------------------------------


def reference_classifier(progress: Callable[[str], None] = print) -> dict:
    """The shipped reference classifier's state dict and info (never trained here)."""
    model, info = classifier.load_reference()
    progress(
        f"reference classifier: shipped weights {info['key']}, test accuracy {info['test_accuracy']:.4f}"
    )
    return {"model": model.state_dict(), "info": info}


def trial_dirs(sweep_dir: Path) -> list[Path]:
    folder = layout.SweepDir(sweep_dir)
    if not folder.file("trials").is_dir():
        raise FileNotFoundError(
            f"{sweep_dir} is not a sweep folder (no trials/ inside); "
            f"pass <out>/<sweep> as written by jobs.sweep"
        )
    return [t.path for t in folder.trials()]


def ray_options(trial_dir: Path) -> dict:
    """The Ray resources to post-process a trial with: those one of its training workers had."""
    res = layout.Trial(trial_dir).config().get("resources", {})
    gpus = 1 if res.get("gpus_per_worker", 0) > 0 else 0
    return {"num_cpus": max(1, int(res.get("cpus_per_worker", 1))), "num_gpus": gpus}


def done_line(trial_dir: Path, row: dict) -> str:
    """'[z3] done in 38.1 s (encode 8.4, iwae 10.0, ...)' from the trial's row and summary.json."""
    line = f"[{trial_dir.name}] {row['status']}"
    if row["status"] == "done":
        timings = layout.Trial(trial_dir).summary().get("timings", {})
        steps = ", ".join(f"{k} {v:.1f}" for k, v in timings.items() if k != "total" and v >= 0.05)
        return f"{line} in {row['seconds']:.1f} s ({steps})"
    return f"{line} {row['reason']}".rstrip()


FanOut = Callable[[list[Path], Options, dict, bool, Callable[[str], None]], dict[str, dict]]


def process_sweep(
    sweep_dir: Path,
    force: bool = False,
    progress: Callable[[str], None] = print,
    fan_out: FanOut | None = None,
) -> dict[str, dict]:
    """Post-process every trial of a sweep that needs it: trial name -> {"status", "reason", "seconds"}.

    Trials that are up to date or not trained are skipped quietly (their rows say why); the others
    run in this process, one after another, or through fan_out (e.g. as Ray tasks).
    """
    dirs = trial_dirs(sweep_dir)
    opts = load_options(sweep_dir)
    clf_state = reference_classifier(lambda line: None)
    out, todo = {}, []
    for d in dirs:  # cheap (a few hashes): only trials with work to do start a task
        try:
            reason = skip_reason(d, opts, clf_state["info"]["key"], force)[0]
        except OSError:
            reason = ""  # process_trial reports it as the trial's failure
        out[d.name] = {"status": "skipped", "reason": reason, "seconds": 0.0}
        if not reason:
            todo.append(d)
    if todo:
        reference_classifier(progress)  # cached now: says which classifier scores the FIDs
        how = " as Ray tasks" if fan_out else ""
        progress(f"post-processing {len(todo)} trial{'s' if len(todo) != 1 else ''}{how}")
    if todo and fan_out:
        out.update(fan_out(todo, opts, clf_state, force, progress))
    for d in todo if not fan_out else []:
        out[d.name] = process_trial(d, opts, clf_state, force, progress)
        progress(done_line(d, out[d.name]))
    return {d.name: out[d.name] for d in dirs}
