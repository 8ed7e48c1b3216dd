"""Sweep files: a base config, overrides for every trial, a grid; expanded into named trials."""

from __future__ import annotations

import itertools
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vaecore import config
from vaecore.config import Config, ConfigError

SHORT = {
    "model.latent_dim": "z",
    "loss.recon_multiplier": "r",
    "loss.kl_multiplier": "k",
    "train.seed": "s",
    "train.lr": "lr",
    "train.batch_size": "b",
}
SWEEP_KEYS = {"name", "description", "base", "set", "grid", "postprocess"}


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


def load(path: str | Path, cli_overrides: list[str] | None = None) -> Sweep:
    """Read a sweep TOML; `--set key=value` overrides join (and win over) its [set] table."""
    path = Path(path)
    raw = config.read_toml(path)
    unknown = set(raw) - SWEEP_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown sweep key(s) {sorted(unknown)}; "
                          f"allowed: {sorted(SWEEP_KEYS)}")
    base = raw.get("base", "default")
    if base.endswith(".toml") and not Path(base).is_absolute():
        base = str(path.parent / base)
    overrides = {**config.flatten(raw.get("set", {})), **config.parse_overrides(cli_overrides or [])}
    grid = {k: v if isinstance(v, list) else [v] for k, v in config.flatten(raw.get("grid", {})).items()}
    sweep = Sweep(name=raw.get("name", path.stem), base=base, overrides=overrides, grid=grid,
                  description=raw.get("description", ""), postprocess=raw.get("postprocess", {}))
    trials(sweep)  # validate every grid point now, before anything starts
    return sweep


def trials(sweep: Sweep) -> list[Trial]:
    """Every grid point as a Trial, in grid order; bad keys or values raise ConfigError."""
    base = config.apply(config.load(sweep.base), sweep.overrides)
    keys = list(sweep.grid)
    for key in keys:
        if not sweep.grid[key]:
            raise ConfigError(f"grid key '{key}' has no values; give at least one")
    out = []
    for values in itertools.product(*(sweep.grid[k] for k in keys)):
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
    lines = [f"name = {lit(sweep.name)}", f"base = {lit(sweep.base)}",
             f"description = {lit(sweep.description)}", "", "[set]"]
    lines += [f'"{k}" = {lit(v)}' for k, v in sweep.overrides.items()]
    lines += ["", "[grid]"] + [f'"{k}" = {lit(v)}' for k, v in sweep.grid.items()]
    lines += ["", "[postprocess]"] + [f"{k} = {lit(v)}" for k, v in sweep.postprocess.items()]
    return "\n".join(lines) + "\n"
