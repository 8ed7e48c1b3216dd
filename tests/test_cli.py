"""The installed console scripts (pyproject's [project.scripts]): --help works, and bad input is one
line on stderr and exit status 2, never a traceback. Every bad input here fails before Ray starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import jobs.postprocess
import jobs.sweep
import jobs.train

from procs import REPO

BIN = Path(sys.executable).parent

# script -> (options its --help must name, arguments that are bad input)
SCRIPTS = {
    "vae-sweep": (
        [
            "--config",
            "--out",
            "--set KEY=VALUE",
            "--address",
            "--fresh",
            "--retry-failed",
            "--no-postprocess",
        ],
        ["--config", "missing.toml"],
    ),
    "vae-train": (["--config", "--out", "--set KEY=VALUE"], ["--set", "nonsense"]),
    "vae-postprocess": (["sweep_dir", "--force", "--address", "--no-gallery"], ["no/such/sweep"]),
    "vae-gallery": (["sweep_dir"], ["no/such/sweep"]),
}


def script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    path = BIN / name
    assert path.is_file(), f"{path} is not installed: pip install -e '.[test]'"
    return subprocess.run([str(path), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_exits_0_and_names_the_options(name):
    proc = script(name, "--help", cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: {name} ")
    for option in SCRIPTS[name][0]:
        assert option in proc.stdout, option


@pytest.mark.parametrize("name", SCRIPTS)
def test_bad_input_is_one_error_line_and_exit_2(name, tmp_path):
    proc = script(name, *SCRIPTS[name][1], cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not any(tmp_path.iterdir())  # nothing written


def test_sweep_and_postprocess_default_to_the_same_exported_ray_address(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert jobs.sweep.parse([]).address == "10.0.0.1:6379"
    assert jobs.postprocess.parse(["runs/demo"]).address == "10.0.0.1:6379"
    monkeypatch.delenv("RAY_ADDRESS")
    assert jobs.sweep.parse([]).address is None
    assert jobs.postprocess.parse(["runs/demo"]).address is None


def test_set_is_repeatable_and_collects_in_order():
    args = ["--set", "train.epochs=1", "--set", "model.latent_dim=2"]
    assert jobs.sweep.parse(args).overrides == ["train.epochs=1", "model.latent_dim=2"]
    assert jobs.train.parse(args).overrides == ["train.epochs=1", "model.latent_dim=2"]
    assert jobs.train.parse([]).overrides == []
