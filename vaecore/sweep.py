"""Sweeps: the sweep file expanded (once) into named trials, and the sweep folder they train into.

The folder, <out>/<sweep>/: sweep.toml (the resolved sweep), manifest.json (run facts and every
trial's state), trials/<trial>/ (see docs/LAYOUT.md). `prepare` and `pending` decide what a re-run
keeps; nothing here imports Ray.
"""

from __future__ import annotations

import itertools
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vaecore import config, runs
from vaecore.config import Config, ConfigError

SHORT = {
    "model.latent_dim": "z",
    "loss.recon_multiplier": "r",
    "loss.kl_multiplier": "k",
    "train.seed": "s",
    "train.lr": "lr",
    "train.batch_size": "b",
}
SWEEP_KEYS = {"name", "description", "base", "set", "grid", "postprocess", "replicates"}


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


def load(path: str | Path, cli_overrides: list[str] | None = None) -> Sweep:
    """Read a sweep TOML; `--set key=value` overrides join (and win over) its [set] table."""
    path = Path(path)
    raw = config.read_toml(path)
    unknown = set(raw) - SWEEP_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown sweep key(s) {sorted(unknown)}; allowed: {sorted(SWEEP_KEYS)}")
    base = raw.get("base", "default")
    if base.endswith(".toml") and not Path(base).is_absolute():
        base = str(path.parent / base)
    overrides = {**config.flatten(raw.get("set", {})), **config.parse_overrides(cli_overrides or [])}
    grid = {k: v if isinstance(v, list) else [v] for k, v in config.flatten(raw.get("grid", {})).items()}
    grid = _with_replicates(grid, overrides, raw.get("replicates", 1))
    return Sweep(
        name=raw.get("name", path.stem),
        base=base,
        overrides=overrides,
        grid=grid,
        description=raw.get("description", ""),
        postprocess=raw.get("postprocess", {}),
        trials=expand(base, overrides, grid),
    )  # every grid point validated before anything starts


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
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"grid values give duplicate trial names: {sorted(names)}")
    return out


def trial_name(params: dict[str, Any]) -> str:
    """{"model.latent_dim": 3, "loss.recon_multiplier": 5000.0} -> "z3-r5000"."""
    parts = []
    for key, value in params.items():
        text = _plain(value)
        parts.append(text if isinstance(value, str) else SHORT.get(key, key.split(".")[-1]) + text)
    name = "-".join(parts) or "base"
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def to_toml(sweep: Sweep) -> str:
    """The resolved sweep, as written to <out>/<sweep>/sweep.toml."""
    lit = config.toml_literal
    lines = [
        f"name = {lit(sweep.name)}",
        f"base = {lit(sweep.base)}",
        f"description = {lit(sweep.description)}",
        "",
        "[set]",
    ]
    lines += [f'"{k}" = {lit(v)}' for k, v in sweep.overrides.items()]
    lines += ["", "[grid]"] + [f'"{k}" = {lit(v)}' for k, v in sweep.grid.items()]
    lines += ["", "[postprocess]"] + [f"{k} = {lit(v)}" for k, v in sweep.postprocess.items()]
    return "\n".join(lines) + "\n"


# --- the sweep folder ---------------------------------------------------------------------------


def prepare(sweep: Sweep, sweep_dir: Path, fresh: bool) -> None:
    """Create the folder, or refuse to mix a different sweep into an existing one."""
    text = to_toml(sweep)
    old = sweep_dir / "sweep.toml"
    if old.is_file() and fresh:
        aside = sweep_dir.with_name(f"{sweep_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(sweep_dir, aside)
        print(f"--fresh: moved the previous sweep to {aside}")
    elif old.is_file() and old.read_text() != text:
        raise ConfigError(
            f"{sweep_dir} holds a different sweep (its sweep.toml differs); "
            f"re-run with the same settings to continue, pass --fresh to start over, "
            f"or choose another --out"
        )
    runs.atomic_write_text(sweep_dir / "sweep.toml", text)


def pending(sweep: Sweep, sweep_dir: Path, retry_failed: bool) -> list[Trial]:
    """Trials still to train; writes config.json/params.json for every trial."""
    todo = []
    for t in sweep.trials:
        d = sweep_dir / "trials" / t.name
        runs.write_json(d / "config.json", asdict(t.config))
        runs.write_json(d / "params.json", t.params)
        state = runs.read_dict(d / "status.json").get("status")
        if state == "completed" or (state == "failed" and not retry_failed):
            continue
        todo.append(t)
    return todo


def write_manifest(sweep: Sweep, sweep_dir: Path, extra: dict) -> dict:
    """manifest.json: the sweep, run facts (`extra`: hardware, timings) and every trial's state."""
    path = sweep_dir / "manifest.json"
    manifest = runs.read_dict(path) or {"created": _now()}
    manifest.update(
        {
            "sweep": sweep.name,
            "base": sweep.base,
            "grid": sweep.grid,
            "set": sweep.overrides,
            "description": sweep.description,
            "updated": _now(),
            "git": runs.git_revision(),
            "versions": runs.versions(),
            **extra,
        }
    )
    manifest["trials"] = {}
    for t in sweep.trials:
        status = runs.read_dict(sweep_dir / "trials" / t.name / "status.json")
        manifest["trials"][t.name] = {
            "params": t.params,
            "status": status.get("status", "pending"),
            "reason": status.get("reason", ""),
            "epochs": status.get("epochs", 0),
            "seconds": status.get("seconds", 0.0),
        }
    runs.write_json(path, manifest)
    return manifest


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
