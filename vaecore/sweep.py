"""Sweeps: the sweep file expanded (once) into named trials, and the sweep folder they train into.

The folder, <out>/<sweep>/: sweep.toml (the resolved sweep), manifest.json (run facts and every
trial's state), trials/<trial>/ (see docs/LAYOUT.md). `prepare` and `pending` decide what a re-run
keeps; nothing here imports Ray.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import math
import os
import re
import socket
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import tomllib

from vaecore import config, layout, runs
from vaecore.config import Config, ConfigError

SHORT = {
    "model.latent_dim": "z",
    "loss.recon_multiplier": "r",
    "loss.kl_multiplier": "k",
    "train.seed": "s",
    "train.lr": "lr",
    "train.batch_size": "b",
}
SWEEP_KEYS = {"name", "description", "base", "set", "grid", "postprocess", "replicates", "extends"}
TABLES = ("set", "grid", "postprocess")  # what `extends` merges key by key; other keys are replaced


@dataclass(frozen=True)
class Trial:
    name: str  # e.g. "z3-r5000-s0"; derived from the grid values, never from a timestamp
    params: dict[str, Any]  # this trial's grid values, dotted keys
    config: Config  # the fully resolved config


@dataclass(frozen=True)
class Sweep:
    name: str  # output folder name under --out
    base: str  # named config or run TOML the trials start from
    overrides: dict[str, Any]  # [set]: applied to every trial
    grid: dict[str, list[Any]]  # [grid]: dotted key -> values; the product is the trial list
    description: str = ""
    postprocess: dict[str, Any] = field(default_factory=dict)  # passed to post-processing as is
    trials: list[Trial] = field(default_factory=list, compare=False)  # the grid, expanded by load()


MAX_TRIALS = 10_000  # a grid bigger than this is more likely a typo than a plan; --max-trials lifts it
TOP_TYPES = {
    "name": str,
    "description": str,
    "base": str,
    "extends": str,
    "set": dict,
    "grid": dict,
    "postprocess": dict,
}
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
NAME_BYTES = 100  # trial names longer than this are shortened with a hash (file names stop at 255)


def load(path: str | Path, cli_overrides: list[str] | None = None, max_trials: int = MAX_TRIALS) -> Sweep:
    """Read and validate a sweep TOML; `--set key=value` overrides join (and win over) its [set].

    Everything is checked here, before anything is written or trained: types, names, every grid
    point's config, the [postprocess] options, and that the resolved sweep writes back as TOML.
    """
    path = Path(path)
    raw = with_extends(read_sweep_toml(path), path)
    name = check_sweep_name(raw.get("name", path.stem))
    base = _resolve_base(raw.get("base", "default"), path.parent)
    overrides = {**config.flatten(raw.get("set", {})), **config.parse_overrides(cli_overrides or [])}
    grid = {k: v if isinstance(v, list) else [v] for k, v in config.flatten(raw.get("grid", {})).items()}
    grid = _with_replicates(grid, overrides, raw.get("replicates", 1))
    size = math.prod(len(v) for v in grid.values())
    if size > max_trials:
        raise ConfigError(
            f"the grid has {size:,} trials, more than the limit of {max_trials:,}; "
            f"shrink the grid or pass --max-trials {size}"
        )
    postprocess = raw.get("postprocess", {})
    # [postprocess] is checked now, not after hours of training (post.trial needs torch, loaded by now)
    from vaecore.post.trial import options_from

    options_from(postprocess)
    sweep = Sweep(
        name=name,
        base=base,
        overrides=overrides,
        grid=grid,
        description=raw.get("description", ""),
        postprocess=postprocess,
        trials=expand(base, overrides, grid),
    )
    check_round_trip(sweep, path)
    return sweep


def read_sweep_toml(path: Path) -> dict:
    """The sweep file's tables, its top-level keys and their types checked."""
    raw = config.read_toml(path)
    unknown = set(raw) - SWEEP_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown sweep key(s) {sorted(unknown)}; allowed: {sorted(SWEEP_KEYS)}")
    for key, tp in TOP_TYPES.items():
        if key in raw and not isinstance(raw[key], tp):
            want = "a table" if tp is dict else "a string"
            raise ConfigError(f"{path}: '{key}' must be {want}, got {type(raw[key]).__name__} {raw[key]!r}")
    return raw


def with_extends(raw: dict, path: Path) -> dict:
    """`extends = "demo.toml"` (beside this file): that sweep's keys, this file's on top of them.
    [set], [grid] and [postprocess] merge key by key; name, description, base and replicates are
    replaced. The name is never inherited: it defaults to this file's stem. One level only."""
    if "extends" not in raw:
        return raw
    parent_path = path.parent / raw["extends"]
    parent = read_sweep_toml(parent_path)
    if "extends" in parent:
        raise ConfigError(f"{path}: {parent_path} extends another sweep itself; extend that one instead")
    if "base" in parent:  # a run TOML named there is beside that file
        parent["base"] = _resolve_base(parent["base"], parent_path.parent)
    out = {k: v for k, v in parent.items() if k != "name"}
    for key, value in raw.items():
        if key in TABLES:  # [set] and [grid] by dotted key; [postprocess] options are flat already
            flat = dict if key == "postprocess" else config.flatten
            out[key] = {**flat(parent.get(key, {})), **flat(value)}
        elif key != "extends":
            out[key] = value
    return out


def _resolve_base(base: str, folder: Path) -> str:
    """A run TOML as an absolute path (relative to the sweep file naming it), a named config as is:
    one spelling, whatever the working directory."""
    return str((folder / base).resolve()) if base.endswith(".toml") else base


def check_round_trip(sweep: Sweep, path: Path) -> None:
    """sweep.toml is what post-processing and the gallery read: it must parse back to this sweep."""
    try:
        ok = tomllib.loads(to_toml(sweep)) == as_table(sweep)
    except tomllib.TOMLDecodeError:
        ok = False
    if not ok:
        raise ConfigError(
            f"{path}: the resolved sweep does not write back as the same TOML; simplify its values"
        )


def check_sweep_name(name: str) -> str:
    """A sweep name is one plain folder name: never empty, '.', '..', a path or hidden."""
    if not SAFE_NAME.fullmatch(name) or name in (".", "..") or len(name.encode()) > NAME_BYTES:
        raise ConfigError(
            f"sweep name {name!r} is not a plain folder name; use letters, digits, '.', '_' and '-' "
            f"(not starting with '.' or '-', at most {NAME_BYTES} characters)"
        )
    return name


def _with_replicates(grid: dict, overrides: dict, n: object) -> dict:
    """`replicates = n`: the grid gains a last axis train.seed = [0, ..., n-1] (the gallery groups by it)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"replicates must be a whole number >= 1, got {n!r}")
    if n == 1:
        return grid
    if "train.seed" in grid or "train.seed" in overrides:
        raise ConfigError(
            "replicates sets train.seed to 0..n-1; remove train.seed from [grid]/[set], or drop replicates"
        )
    return {**grid, "train.seed": list(range(n))}


def expand(base_name: str, overrides: dict[str, Any], grid: dict[str, list[Any]]) -> list[Trial]:
    """Every grid point as a Trial, in grid order; bad keys or values raise ConfigError."""
    base = config.apply(config.load(base_name), overrides)
    keys = list(grid)
    for key in keys:
        if not grid[key]:
            raise ConfigError(f"grid key '{key}' has no values; give at least one")
    out = []
    for values in itertools.product(*(grid[k] for k in keys)):
        raw = dict(zip(keys, values, strict=True))
        cfg = config.apply(base, raw)
        params = {k: config.flatten(asdict(cfg))[k] for k in keys}
        out.append(Trial(trial_name(params), params, cfg))
    folded = [t.name.lower() for t in out]  # case-insensitive filesystems would merge these
    if len(set(folded)) != len(folded):
        raise ConfigError(
            f"grid values give duplicate trial names (ignoring case): {sorted(t.name for t in out)}"
        )
    return out


def trial_name(params: dict[str, Any]) -> str:
    """{"model.latent_dim": 3, "loss.recon_multiplier": 5000.0} -> "z3-r5000"."""
    parts = []
    for key, value in params.items():
        text = _plain(value)
        parts.append(text if isinstance(value, str) else SHORT.get(key, key.split(".")[-1]) + text)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", "-".join(parts) or "base")
    if name.startswith((".", "-")):  # never '.', '..', hidden or option-like
        name = "_" + name
    if len(name) > NAME_BYTES:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[: NAME_BYTES - 9]}-{digest}"
    return name


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def as_table(sweep: Sweep) -> dict[str, Any]:
    """The resolved sweep as sweep.toml's tables (what reading that file gives back)."""
    return {
        "name": sweep.name,
        "base": sweep.base,
        "description": sweep.description,
        "set": sweep.overrides,
        "grid": sweep.grid,
        "postprocess": sweep.postprocess,
    }


def to_toml(sweep: Sweep) -> str:
    """The resolved sweep, as written to <out>/<sweep>/sweep.toml (dotted keys come out quoted)."""
    return config.dump_toml(as_table(sweep))


# --- the sweep folder ---------------------------------------------------------------------------


class Busy(RuntimeError):
    """Another process holds the sweep folder; the message names it."""


@contextlib.contextmanager
def lock(sweep_dir: Path, what: str):
    """Hold the sweep folder exclusively: one driver (or post-processing run) per folder.

    The lock is flock() on <out>/.<sweep>.lock, beside the folder so that --fresh can move the
    folder while holding it. The kernel drops it when the holder dies, so a killed driver never
    leaves a stale lock; the file's text only says who holds it. On NFS, Linux maps flock to the
    server's byte-range locks: it works across nodes where the server supports locking, and a
    filesystem without working locks is refused with a message rather than run unprotected.
    """
    path = layout.SweepDir(sweep_dir).lock
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = runs.read_dict(path)
        os.close(fd)
        who = f"{holder.get('what', 'another process')} (pid {holder.get('pid', '?')}"
        who += f" on {holder.get('host', '?')}"
        raise Busy(
            f"{sweep_dir} is in use by {who}, since {holder.get('since', '?')}); "
            f"wait for it to end or stop it, then re-run"
        ) from None
    except OSError as e:
        os.close(fd)
        raise Busy(f"cannot lock {path} ({e}); put --out on a filesystem that supports file locks") from None
    try:
        info = {"what": what, "pid": os.getpid(), "host": socket.gethostname(), "since": _now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def prepare(sweep: Sweep, sweep_dir: Path, fresh: bool) -> None:
    """Create the folder and each trial's config.json/params.json, or refuse a different sweep.

    "The same sweep" means that every trial already in the folder is in this sweep with the same
    resolved config, however the sweep file was spelled or wherever it lives; new grid points
    are added. A trial's config.json is written once, at creation, and never rewritten: it is the
    config the trial was trained with. sweep.toml is rewritten when its text changes (a new
    description or [postprocess] table, a new grid point).
    """
    if fresh and sweep_dir.exists():
        aside = sweep_dir.with_name(f"{sweep_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(sweep_dir, aside)
        runs.fsync_dir(sweep_dir.parent)
        print(f"--fresh: moved the previous sweep to {aside}")
    differs = differences(sweep, sweep_dir)
    if differs:
        raise ConfigError(
            f"{sweep_dir} holds a different sweep ({differs}); re-run with the same settings to continue, "
            f"pass --fresh to start over, or choose another --out"
        )
    text = to_toml(sweep)
    old = layout.SweepDir(sweep_dir).file("sweep")
    if not old.is_file() or old.read_text() != text:
        runs.atomic_write_text(old, text)
    for t in sweep.trials:
        trial = layout.SweepDir(sweep_dir).trial(t.name)
        if not trial.file("config").is_file():
            trial.create(t.params, asdict(t.config))


def differences(sweep: Sweep, sweep_dir: Path) -> str:
    """'' when sweep_dir is empty or holds this sweep, else what differs, in a few words."""
    have = {t.name: t for t in layout.SweepDir(sweep_dir).trials() if t.file("config").is_file()}
    extra = sorted(set(have) - {t.name for t in sweep.trials})
    if extra:
        return f"its trials include {', '.join(extra[:3])}, which this sweep does not have"
    for t in sweep.trials:
        if t.name in have:
            changed = config.diff(have[t.name].config(), asdict(t.config))
            if changed:
                return f"trial {t.name} was created with a different config: {'; '.join(changed[:3])}"
    return ""


def pending(sweep: Sweep, sweep_dir: Path, retry_failed: bool) -> list[Trial]:
    """Trials still to train. A completed trial is kept; a diverged one is final unless
    retry_failed; one that failed for any other reason (a crash, a lost node) is trained again."""
    folder = layout.SweepDir(sweep_dir)
    todo = []
    for t in sweep.trials:
        trial = folder.trial(t.name)
        if trial.completed() or (trial.status().final and not retry_failed):
            continue
        todo.append(t)
    return todo


def mark_interrupted(trials: list[Trial], sweep_dir: Path) -> None:
    """After Ctrl+C or SIGTERM: trials that were training say so; a re-run resumes them.

    A trial whose Train run the stop tore down may already have recorded that as a crash: it is
    relabelled too. Completed and diverged (final) trials keep their status.
    """
    for t in trials:
        layout.SweepDir(sweep_dir).trial(t.name).mark_interrupted()


def write_manifest(sweep: Sweep, sweep_dir: Path, extra: dict, new_run: bool = False) -> dict:
    """manifest.json: the sweep, run facts (`extra`: hardware, timings) and every trial's state.

    new_run appends this driver's start, code revision and versions to "history", so a sweep
    trained across several code versions says so.
    """
    folder = layout.SweepDir(sweep_dir)
    manifest = folder.manifest() or {"created": _now()}
    if new_run:
        history = manifest.get("history") if isinstance(manifest.get("history"), list) else []
        manifest["history"] = [*history, {"started": _now(), **layout.provenance()}]
    prov = layout.provenance()
    manifest.update(
        sweep=sweep.name,
        base=sweep.base,
        grid=sweep.grid,
        set=sweep.overrides,
        description=sweep.description,
        updated=_now(),
        git=prov["git"],
        versions=prov["versions"],
        **extra,
    )
    manifest["trials"] = {t.name: _manifest_entry(t, folder.trial(t.name)) for t in sweep.trials}
    folder.write_manifest(manifest)
    return manifest


def _manifest_entry(t: Trial, trial: layout.Trial) -> dict:
    status = trial.status()
    return {
        "params": t.params,
        "status": status.status.value,
        "reason": status.reason,
        "epochs": status.epochs,
        "seconds": status.seconds if status.seconds is not None else 0.0,
        "config_digest": config.digest(asdict(t.config)),
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
