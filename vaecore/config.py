"""The one config tree: frozen dataclasses, named presets, TOML loading, overrides, validation."""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomli_w
import tomllib


class ConfigError(ValueError):
    """A user mistake in a config file or override; the message is one line that says the fix."""


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "compact"  # architecture preset: "compact" (CPU-friendly) or "seed" (the write-up's)
    latent_dim: int = 3  # size of z; the seed settled on 3


@dataclass(frozen=True)
class LossConfig:
    likelihood: str = "mse"  # "mse" (the seed's, Gaussian), "bce" (Bernoulli), "cb" (continuous Bernoulli)
    recon_multiplier: float = 5000.0  # weight on the per-image mean reconstruction error (seed: 5000)
    kl_multiplier: float = 1.0  # weight on KL(q(z|x) || N(0, I)); 1 keeps the seed's balance


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10  # full passes over the training set
    batch_size: int = 128  # global batch; each of W workers takes batch_size // W
    lr: float = 1e-3  # Adam learning rate at the start
    scheduler: str = "plateau"  # "plateau" (the seed's), "cosine", "step" or "none"
    lr_factor: float = 0.5  # plateau/step: multiply the lr by this when it fires
    lr_patience: int = 2  # plateau: epochs without test-loss improvement before it fires
    lr_step: int = 10  # step: fire every this many epochs
    grad_clip: float = 100.0  # max global gradient norm; 0 turns clipping off
    seed: int = 0  # seeds weights, batch order and the reparameterisation noise
    threads: int = 0  # torch CPU threads per worker; 0 = the worker's CPU count
    # "fp32"; "bf16": autocast the forward pass (weights and loss stay fp32); "auto": bf16 with
    # channels_last where a few timed steps run >= 1.15x faster here, else fp32 (vaecore/precision.py)
    precision: str = "fp32"
    channels_last: bool = False  # NHWC memory format for the convolutions (often faster on GPUs)


@dataclass(frozen=True)
class DataConfig:
    dir: str = ""  # Fashion-MNIST folder; "" searches $FASHION_MNIST_DIR, then the Debian package
    download: bool = False  # let torchvision download the data (needs internet) when not found
    train_per_class: int = 0  # use the first N training images of each class; 0 = all 6000
    test_per_class: int = 0  # use the first N test images of each class; 0 = all 1000


@dataclass(frozen=True)
class ResourcesConfig:
    workers: int = 1  # data-parallel Ray Train workers per trial
    cpus_per_worker: int = 2  # CPUs Ray reserves for each worker (also its torch threads)
    gpus_per_worker: float = 0.0  # GPUs per worker; fractions let small trials share one GPU


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)


CHOICES = {
    "model.arch": ("compact", "seed", "mlp"),
    "loss.likelihood": ("mse", "bce", "cb"),
    "train.scheduler": ("plateau", "cosine", "step", "none"),
    "train.precision": ("fp32", "bf16", "auto"),
}

# The seed's chosen run: latent 3, reconstruction x5000, KL x1, Adam with a plateau scheduler.
NAMED = {
    "default": Config(),
    "seed": Config(
        model=ModelConfig(arch="seed", latent_dim=3),
        loss=LossConfig(likelihood="mse", recon_multiplier=5000.0, kl_multiplier=1.0),
        train=TrainConfig(epochs=30, scheduler="plateau"),
    ),
}


# --- building: named base + TOML + overrides ----------------------------------------------------


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model": {"latent_dim": 3}} -> {"model.latent_dim": 3}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


@functools.cache  # the dataclasses never change; a trial's config is coerced key by key
def known_keys() -> dict[str, type]:
    """Every settable dotted key and its Python type (do not modify the returned dict)."""
    out = {}
    hints = typing.get_type_hints(Config)
    for section in fields(Config):
        sub = hints[section.name]
        for name, tp in typing.get_type_hints(sub).items():
            out[f"{section.name}.{name}"] = tp
    return out


def _unknown(key: str) -> ConfigError:
    near = difflib.get_close_matches(key, known_keys(), n=1)
    hint = f"; did you mean '{near[0]}'?" if near else f"; known keys: {', '.join(known_keys())}"
    return ConfigError(f"unknown config key '{key}'{hint}")


def coerce(key: str, value: Any) -> Any:
    """Convert a TOML value or a command-line string to the key's type, or raise ConfigError."""
    tp = known_keys().get(key)
    if tp is None:
        raise _unknown(key)
    return convert(key, value, tp)


def convert(key: str, value: Any, tp: type) -> Any:
    """`value` as type `tp` (strings parsed, ints widened to floats), or a ConfigError naming key."""
    if isinstance(tp, types.UnionType):
        tp = next(t for t in typing.get_args(tp) if t is not type(None))
    if isinstance(value, str) and tp is not str:
        value = _parse_text(key, value, tp)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not tp:
        raise ConfigError(f"{key} must be a {tp.__name__}, got {value!r}")
    if tp is float and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    return value


def _parse_text(key: str, text: str, tp: type) -> Any:
    if tp is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"{key} must be true or false, got '{text}'")
    try:
        if tp is int:  # accept "1e3" but not "2.5"
            number = float(text)
            if not number.is_integer():
                raise ValueError
            return int(number)
        return tp(text)
    except ValueError:
        raise ConfigError(f"{key} must be a {tp.__name__}, got '{text}'") from None


def apply(cfg: Config, flat: dict[str, Any]) -> Config:
    """Return cfg with the dotted keys in `flat` replaced, each value coerced and validated."""
    sections: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        value = coerce(key, value)
        section, name = key.split(".", 1)
        sections.setdefault(section, {})[name] = value
    for section, changes in sections.items():
        cfg = replace(cfg, **{section: replace(getattr(cfg, section), **changes)})
    validate(cfg)
    return cfg


def parse_overrides(items: list[str]) -> dict[str, str]:
    """["model.latent_dim=2", ...] -> {"model.latent_dim": "2"}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{item}' must look like key=value, e.g. train.epochs=5")
        key = key.strip().removeprefix("--")
        if key not in known_keys():
            raise _unknown(key)
        out[key] = value.strip()
    return out


def load(source: str | Path, overrides: list[str] | None = None) -> Config:
    """Build a Config from a named preset or a TOML file, then apply key=value overrides."""
    cfg = from_toml(Path(source)) if str(source).endswith(".toml") else named(str(source))
    return apply(cfg, parse_overrides(overrides or []))


def named(name: str) -> Config:
    if name not in NAMED:
        raise ConfigError(f"unknown named config '{name}'; choose one of {', '.join(NAMED)}")
    return NAMED[name]


def from_toml(path: Path) -> Config:
    """A run TOML: optional `base = "seed"` plus [model]/[loss]/... tables."""
    data = read_toml(path)
    base = named(data.pop("base", "default"))
    return apply(base, flatten(data))


def read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None


def to_toml(cfg: Config) -> str:
    """The resolved config as TOML text (what `from_toml` reads back)."""
    return dump_toml(asdict(cfg))


def dump_toml(table: dict[str, Any]) -> str:
    """The one TOML writer: `table` as TOML text, keys in their order, sub-dicts as [tables].

    Values must be what a TOML file read back gives: finite numbers, strings, booleans, lists and
    tables; anything else (inf, nan, None, a date) is a ConfigError, not a file that reads back
    different or not at all.
    """
    _check_writable("", table)
    return tomli_w.dumps(table)


def _check_writable(key: str, v: Any) -> None:
    if isinstance(v, dict):
        for k, x in v.items():
            _check_writable(f"{key}.{k}" if key else str(k), x)
    elif isinstance(v, list):
        for x in v:
            _check_writable(key, x)
    elif not isinstance(v, bool | int | float | str) or (isinstance(v, float) and not math.isfinite(v)):
        raise ConfigError(
            f"cannot write {key} = {v!r} to TOML: only finite numbers, strings, booleans, lists and tables"
        )


def digest(cfg_dict: dict[str, Any]) -> str:
    """A short, stable hash of a resolved config (its asdict form): a trial's identity."""
    return hashlib.sha256(json.dumps(cfg_dict, sort_keys=True).encode()).hexdigest()[:16]


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The dotted keys whose values differ, as "key: old -> new" (both asdict forms).

    A key that `old` lacks and `new` holds at its default is not a difference: configs written
    before the key existed meant exactly that default, so their runs stay resumable.
    """
    a, b = flatten(old), flatten(new)
    defaults = flatten(asdict(Config()))
    return [
        f"{k}: {a.get(k, '(absent)')!r} -> {b.get(k, '(absent)')!r}"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k) and not (k not in a and k in defaults and b.get(k) == defaults[k])
    ]


def from_dict(d: dict[str, Any]) -> Config:
    """Inverse of dataclasses.asdict: how a config comes back across the Ray boundary."""
    return apply(Config(), flatten(d))


# --- validation ---------------------------------------------------------------------------------


def validate(cfg: Config) -> None:
    flat = flatten(asdict(cfg))
    for key, allowed in CHOICES.items():
        if flat[key] not in allowed:
            raise ConfigError(f"{key} = {flat[key]!r} is not allowed; choose one of {allowed}")
    positive = [
        "model.latent_dim",
        "train.epochs",
        "train.batch_size",
        "train.lr",
        "resources.workers",
        "loss.recon_multiplier",
    ]
    for key in positive:
        if not flat[key] > 0:
            raise ConfigError(f"{key} must be > 0, got {flat[key]}")
    non_negative = [
        "loss.kl_multiplier",
        "train.grad_clip",
        "train.threads",
        "data.train_per_class",
        "data.test_per_class",
        "resources.cpus_per_worker",
        "resources.gpus_per_worker",
        "train.seed",
    ]
    for key in non_negative:
        if flat[key] < 0:
            raise ConfigError(f"{key} must be >= 0, got {flat[key]}")
    if not 0 < cfg.train.lr_factor < 1:
        raise ConfigError(f"train.lr_factor must be between 0 and 1, got {cfg.train.lr_factor}")
    if cfg.train.batch_size < cfg.resources.workers:
        raise ConfigError(
            f"train.batch_size ({cfg.train.batch_size}) must be at least resources.workers "
            f"({cfg.resources.workers}): each worker takes batch_size // workers images"
        )
