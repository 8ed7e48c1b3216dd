"""Shared fixtures: the real dataset (loaded once) and small configs."""

from __future__ import annotations

import pytest

from vaecore import config, data


@pytest.fixture(scope="session")
def fmnist() -> data.FashionMNIST:
    """The real Fashion-MNIST from the Debian package (installed by the test command)."""
    return data.load()


@pytest.fixture(scope="session")
def small(fmnist) -> data.FashionMNIST:
    """A fixed, class-balanced slice: 200 training and 50 test images per class."""
    return data.subset(fmnist, 200, 50)


@pytest.fixture
def tiny_cfg() -> config.Config:
    return config.load("default", ["train.epochs=2", "train.batch_size=64", "resources.cpus_per_worker=2"])


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
    """The shipped tiny sweep run end to end on a real local Ray: train, post-process, gallery."""
    from procs import job

    out = tmp_path_factory.mktemp("tiny")
    proc = job("jobs.sweep", "--config", "jobs/configs/tiny.toml", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / "tiny"
