"""The sweep and trial folders: every file's name, a trial's status, and each file's reader and writer.

This module owns docs/LAYOUT.md: the one writer of status.json and the one place that decides
whether a trial is completed. Every stage asks it; none spells a file name itself. Torch-free and
Ray-free, so the gallery reads through it too.
"""

from __future__ import annotations

import enum
import socket
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from vaecore import runs
from vaecore.config import diff


class Status(str, enum.Enum):
    """A trial's training state, as status.json and the manifest spell it."""

    PENDING = "pending"  # created, never started (no status.json yet)
    RUNNING = "running"  # a trial process is training it
    COMPLETED = "completed"  # trained: model.pt is there
    FAILED = "failed"  # crashed (retried on a re-run) or diverged (final: kept unless --retry-failed)
    INTERRUPTED = "interrupted"  # the driver was stopped (Ctrl+C, SIGTERM); a re-run resumes it


@dataclass(frozen=True)
class TrialStatus:
    """status.json: one shape, whoever writes it."""

    status: Status = Status.PENDING
    reason: str = ""  # why it failed or was interrupted; "" otherwise
    epochs: int = 0  # epochs in metrics.jsonl when written
    seconds: float | None = None  # wall time of the last training attempt
    final: bool = False  # a failure a re-run keeps (diverged); --retry-failed trains it again
    config_digest: str = ""  # vaecore.config.digest of config.json: the trial's identity
    git: str = ""  # code revision that trained it
    versions: dict = field(default_factory=dict)  # python, torch, torchvision, ray, numpy
    host: str = ""  # the machine whose trial process wrote this
    ranks: list = field(default_factory=list)  # Ray: where each rank trained, [{"host", "address"}]
    worker_start_s: float | None = None  # Ray: seconds until the training function was entered
    setup_s: float | None = None  # Ray: seconds to build the model and resume, before the first epoch
    teardown_s: float | None = None  # Ray: seconds from the last epoch's end to the trial's end
    precision: str = ""  # what it trained in, "fp32" or "bf16" (train.precision "auto": measured)

    def to_dict(self) -> dict:
        return {**asdict(self), "status": self.status.value}


def parse_status(raw: Any) -> TrialStatus:
    """A TrialStatus from whatever status.json held: unknown keys dropped, bad values defaulted."""
    raw = raw if isinstance(raw, dict) else {}
    try:
        state = Status(raw.get("status", "pending"))
    except ValueError:
        state = Status.PENDING
    out: dict = {"status": state}
    for f in fields(TrialStatus):
        value = raw.get(f.name)
        if f.name != "status" and value is not None and _fits(value, f):
            out[f.name] = value
    return TrialStatus(**out)


def _fits(value: Any, f) -> bool:
    want = {"str": str, "int": int, "bool": bool, "dict": dict, "list": list}.get(str(f.type))
    if want is None:  # float | None
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, want) and (want is bool or not isinstance(value, bool))


def provenance() -> dict:
    """What wrote a record: the code revision, package versions, this host."""
    return {"git": runs.git_revision(), "versions": runs.versions(), "host": socket.gethostname()}


# --- a trial folder ------------------------------------------------------------------------------

# Every file or folder of a trial, by the name code uses for it (docs/LAYOUT.md lists each).
TRIAL_FILES = {
    "config": "config.json",
    "params": "params.json",
    "metrics": "metrics.jsonl",
    "epochs": "epochs",
    "model": "model.pt",
    "checkpoint": "checkpoint.pt",
    "events": "events.jsonl",
    "status": "status.json",
    "diverged": "diverged.json",
    "worker_clock": "worker_clock.json",
    "latents": "latents.npz",
    "summary": "summary.json",
    "artifacts": "artifacts",
}


EPOCH_IMAGES = ("samples", "recon", "prototypes")  # epochs/<kind>_NNN.png, drawn after every epoch


@dataclass(frozen=True)
class Trial:
    """One trial folder, <sweep>/trials/<name>/ (or a plain `jobs.train` run folder)."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @property
    def name(self) -> str:
        return self.path.name

    def file(self, key: str) -> Path:
        return self.path / TRIAL_FILES[key]

    def epoch_image(self, kind: str, epoch: int) -> Path:
        """epochs/<kind>_NNN.png, kind one of EPOCH_IMAGES: the pictures redrawn after each epoch."""
        assert kind in EPOCH_IMAGES, kind
        return self.file("epochs") / f"{kind}_{epoch:03d}.png"

    # --- status ----------------------------------------------------------------------------------

    def status(self) -> TrialStatus:
        return parse_status(runs.read_json(self.file("status")))

    def write_status(self, status: TrialStatus) -> None:
        runs.write_json(self.file("status"), status.to_dict())

    def completed(self, config: dict | None = None) -> bool:
        """Trained; with `config` (an asdict form), trained with that very config, every epoch."""
        if self.why_not_completed():
            return False
        if config is None:
            return True
        old = self.config()  # a key added since, at its default, is the same config
        return bool(old) and not diff(old, config) and self.status().epochs == config["train"]["epochs"]

    def why_not_completed(self) -> str:
        """'' when the trial is trained (status completed and model.pt there), else why not."""
        raw = runs.read_json(self.file("status"))
        if raw is None:
            return "training not completed (no status.json)"
        st = parse_status(raw)
        if st.status is not Status.COMPLETED:
            return f"training not completed (status {st.status.value!r}: {st.reason or 'no reason given'})"
        if not self.file("model").is_file():
            return "no model.pt"
        return ""

    def outcome(self, error: str, seconds: float, **extra) -> TrialStatus:
        """The status a training attempt ends with: diverged (final), crashed (error), no model, or
        completed; with its epochs, time and provenance (extra: overheads, config_digest)."""
        diverged = runs.read_dict(self.file("diverged"))
        if diverged:
            state, reason, final = Status.FAILED, str(diverged.get("reason", "diverged")), True
        elif error:
            state, reason, final = Status.FAILED, error, False
        elif not self.file("model").is_file():
            state, reason, final = Status.FAILED, "training ended without writing model.pt", False
        else:
            state, reason, final = Status.COMPLETED, "", False
        epochs = len(self.history())
        return TrialStatus(state, reason, epochs, round(seconds, 2), final, **provenance(), **extra)

    def mark_running(self) -> None:
        """A training attempt starts: its status says so, and the last attempt's markers go."""
        self.write_status(TrialStatus(Status.RUNNING, **provenance()))
        self.file("diverged").unlink(missing_ok=True)
        self.file("worker_clock").unlink(missing_ok=True)

    def mark_interrupted(self) -> None:
        """The driver was stopped: a trial not yet completed, nor finally failed, says so."""
        st = self.status()
        if st.status is not Status.COMPLETED and not st.final:
            self.write_status(replace(st, status=Status.INTERRUPTED, reason="the driver was stopped"))

    def mark_failed(self, reason: str) -> None:
        """The trial's process itself crashed (Tune reports the error, not the trial)."""
        self.write_status(TrialStatus(Status.FAILED, reason, len(self.history()), **provenance()))

    # --- the other files -------------------------------------------------------------------------

    def config(self) -> dict:
        return runs.read_dict(self.file("config"))

    def params(self) -> dict:
        return runs.read_dict(self.file("params"))

    def summary(self) -> dict:
        return runs.read_dict(self.file("summary"))

    def history(self) -> list[dict]:
        return runs.read_jsonl(self.file("metrics"))

    def create(self, params: dict, config: dict) -> None:
        """params.json, then config.json, which marks the trial as created (written once)."""
        runs.write_json(self.file("params"), params)
        runs.write_json(self.file("config"), config)

    def write_config(self, config: dict) -> None:
        runs.write_json(self.file("config"), config)

    def write_history(self, rows: list[dict]) -> None:
        runs.write_jsonl(self.file("metrics"), rows)

    def write_summary(self, summary: dict) -> None:
        runs.write_json(self.file("summary"), summary)

    def log_event(self, event: str, epoch: int) -> None:
        """events.jsonl: what happened to a trial besides its epochs (resumes after a failure)."""
        rows = runs.read_jsonl(self.file("events"))
        rows.append({"event": event, "epoch": epoch, "time": round(time.time(), 1)})
        runs.write_jsonl(self.file("events"), rows)


# --- a sweep folder ------------------------------------------------------------------------------

SWEEP_FILES = {
    "sweep": "sweep.toml",
    "manifest": "manifest.json",
    "trials": "trials",
    "gallery": "gallery",
    "ray": "ray",
}


@dataclass(frozen=True)
class SweepDir:
    """<out>/<sweep>/: the resolved sweep, the manifest, the trials, the gallery, Ray's storage."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    def file(self, key: str) -> Path:
        return self.path / SWEEP_FILES[key]

    def trial(self, name: str) -> Trial:
        return Trial(self.file("trials") / name)

    def trials(self) -> list[Trial]:
        """Every trial folder, by name (symbolic links are not trials)."""
        folder = self.file("trials")
        if not folder.is_dir():
            return []
        return [Trial(p) for p in sorted(folder.iterdir()) if p.is_dir() and not p.is_symlink()]

    @property
    def lock(self) -> Path:
        """Beside the folder, so that --fresh can move the folder while holding the lock."""
        return self.path.parent / f".{self.path.name}.lock"

    def manifest(self) -> dict:
        return runs.read_dict(self.file("manifest"))

    def write_manifest(self, manifest: dict) -> None:
        runs.write_json(self.file("manifest"), manifest)
