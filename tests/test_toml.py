"""The one TOML writer (config.dump_toml): what it writes reads back equal, or it refuses in one line."""

import dataclasses
import datetime
import math

import pytest
import tomllib

from vaecore import config, sweep
from vaecore.config import ConfigError

from procs import REPO, write_sweep

SHIPPED = sorted((REPO / "jobs" / "configs").glob("*.toml"))
ODD = 'say "hi" \\ C:\\dir\nsecond line\ttab, naïve 🚀, bell \x07, DEL \x7f, \'single\' """'


def as_table(s: sweep.Sweep) -> dict:
    return {
        "name": s.name,
        "base": s.base,
        "description": s.description,
        "set": s.overrides,
        "grid": s.grid,
        "postprocess": s.postprocess,
    }


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_sweep_writes_back_and_reads_back_equal(path, tmp_path):
    s = sweep.load(path)
    text = sweep.to_toml(s)
    assert tomllib.loads(text) == as_table(s)
    out = tmp_path / "resolved.toml"
    out.write_text(text)
    again = sweep.load(out)
    assert again == s and again.trials == s.trials


def test_a_description_with_quotes_escapes_unicode_and_del_reads_back_equal(tmp_path):
    path = write_sweep(tmp_path / "odd.toml", "odd", description=ODD, grid={"train.seed": [0]})
    s = sweep.load(path)
    assert s.description == ODD
    out = tmp_path / "again.toml"
    out.write_text(sweep.to_toml(s))
    assert sweep.load(out) == s
    assert "\x7f" not in out.read_text()  # TOML wants DEL escaped


def test_sweep_toml_keeps_the_key_order_and_quotes_dotted_keys():
    s = sweep.Sweep("n", "default", {"train.epochs": 2, "data.dir": "d"}, {"model.latent_dim": [2, 3]})
    text = sweep.to_toml(s)
    heads = [line for line in text.splitlines() if line and not line.startswith((" ", "]"))]
    assert heads == [
        'name = "n"',
        'base = "default"',
        'description = ""',
        "[set]",
        '"train.epochs" = 2',
        '"data.dir" = "d"',
        "[grid]",
        '"model.latent_dim" = [',
        "[postprocess]",
    ]


@pytest.mark.parametrize(
    "value", [math.inf, -math.inf, math.nan, None, datetime.date(2026, 1, 1), (1, 2), [1.0, math.nan]]
)
def test_values_toml_cannot_hold_are_one_line_errors_naming_the_key(value):
    with pytest.raises(ConfigError, match=r"cannot write grid\.x = .* to TOML") as e:
        config.dump_toml({"grid": {"x": value}})
    assert "\n" not in str(e.value)


def test_a_config_with_a_non_finite_value_is_refused_not_written():
    cfg = config.Config()
    odd = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=math.inf))
    with pytest.raises(ConfigError, match=r"train\.lr = inf"):
        config.to_toml(odd)


def test_the_config_writer_reads_back_through_from_toml(tmp_path):
    cfg = config.load("seed", ["data.dir=" + ODD])
    path = tmp_path / "run.toml"
    path.write_text(config.to_toml(cfg))
    assert config.load(path) == cfg
