"""Shared fixtures (the real dataset, small configs, one Ray head) and the suite's isolation.

Isolation: before any test runs, the suite gets its own folder under /tmp (short: Ray's socket
paths are limited) holding its cache ($VAE_CACHE_DIR: dataset verification stamps), Ray's temp
folder ($RAY_TMPDIR, so `ray.init()` never finds a `ray start` cluster of someone else) and an
empty torch cache ($TORCH_HOME, so Inception weights on this machine do not switch code paths).
$RAY_ADDRESS is unset. Subprocesses inherit all of it. At the end, processes that still name
that folder in their environment are ended. The reference classifier ships with the code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from vaecore import config, data

from procs import REPO, end, free_port, local_slurm, own_pids

ROOT = Path(tempfile.mkdtemp(prefix="vt", dir="/tmp"))
ROOT.chmod(0o755)  # munged refuses a socket below a folder others cannot traverse (Slurm tests)


def _isolate() -> None:
    cache = ROOT / "cache"
    cache.mkdir()
    os.environ["VAE_CACHE_DIR"] = str(cache)
    os.environ["RAY_TMPDIR"] = str(ROOT)
    os.environ["TORCH_HOME"] = str(ROOT / "torch")
    os.environ.pop("RAY_ADDRESS", None)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Two xdist workers (spawned after this, so they inherit it) run more torch threads than cores;
    # OpenMP threads that spin while they wait burn the other worker's core. Unit tests alone: 213
    # core-s and 110 s spinning, 120 core-s and 64 s passive, 98 core-s and 72 s serial.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_configure(config):  # noqa: ARG001 (pytest's hook signature)
    _isolate()


# scripts/test.sh runs the suite on two pytest-xdist workers. Each worker is a suite of its own (its
# own ROOT, its own instance of every session fixture). The tests of a costly shared result run on
# one worker, so that it is made once: its xdist_group. The Ray head is cheap next to its tests
# (~10 core-s): its tests go to either worker, and each worker that runs one starts its own head.
GROUPS = {"ddp_pair": "ddp", "slurm_one": "slurm", "tiny_sweep": "slurm"}


def pytest_itemcollected(item):  # before any collection_modifyitems hook (xdist's reads the groups)
    groups = {GROUPS[name] for name in item.fixturenames if name in GROUPS}
    assert len(groups) <= 1, f"{item.nodeid} uses services of two groups {groups}: merge them"
    if groups:
        item.add_marker(pytest.mark.xdist_group(groups.pop()))


def pytest_collection_modifyitems(config, items):  # noqa: ARG001
    # The real-component tests first: the short unit tests then fill both workers to the end.
    items.sort(key=lambda item: item.get_closest_marker("integration") is None)


def pytest_collection_finish(session):
    # xdist marks a grouped test by its node id; where it no longer can, each worker would start
    # every service again: a suite minutes slower that still passes. Say so instead.
    if getattr(session.config.option, "loadgroup", False):
        grouped = [i.nodeid for i in session.items if i.get_closest_marker("xdist_group")]
        lost = [nodeid for nodeid in grouped if "@" not in nodeid]
        if lost:
            raise pytest.UsageError(
                f"pytest-xdist kept no xdist_group ({lost[0]}): this pytest and pytest-xdist do not"
                " work together (pytest-xdist#1386); use pyproject.toml's pins: bash scripts/setup.sh --test"
            )


def pytest_unconfigure(config):  # noqa: ARG001
    end(own_pids(ROOT))
    shutil.rmtree(ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def fmnist() -> data.FashionMNIST:
    """The real Fashion-MNIST from the Debian package (installed by the test command)."""
    return data.load()


@pytest.fixture(scope="session")
def small(fmnist) -> data.FashionMNIST:
    """A fixed, class-balanced slice: 200 training and 50 test images per class."""
    return data.subset(fmnist, 200, 50)


@pytest.fixture(scope="session")
def few(fmnist) -> data.FashionMNIST:
    """20 training and 10 test images per class (4 steps an epoch at batch 64): for tests of the
    loop's bookkeeping (resume, divergence, files), which need every class but no learning."""
    return data.subset(fmnist, 20, 10)


@pytest.fixture
def tiny_cfg() -> config.Config:
    return config.load("default", ["train.epochs=2", "train.batch_size=64", "resources.cpus_per_worker=2"])


@pytest.fixture(scope="session")
def slurm_one():
    """The project's one-node Slurm (scripts/slurm/local_cluster.sh) for the whole suite: its own
    folder under the suite's (short: munge's socket path is limited), free ports. Yields the
    environment that submits to it and its folder (log/jobcomp.txt: each job's end state)."""
    folder = tempfile.mkdtemp(prefix="sl", dir=ROOT)
    ports = {"LOCAL_SLURM_CTLD_PORT": str(free_port()), "LOCAL_SLURM_D_PORT": str(free_port())}
    env = {**os.environ, **ports}
    with local_slurm(folder, env) as conf:
        yield {**env, "SLURM_CONF": conf}, Path(folder)


@pytest.fixture(scope="session")
def tiny_sweep(slurm_one, tmp_path_factory):
    """The shipped tiny sweep end to end (train, post-process, gallery) as a cluster user runs it:
    `sbatch scripts/slurm/sweep.sh --config jobs/configs/tiny.toml` on the one-node Slurm, which
    starts Ray inside the allocation. One run for the tests of the sweep's output, its gallery and
    the batch script (test_slurm.py). The job's log is kept in <out>/driver.log, its id in
    <out>/job_id."""
    env, _ = slurm_one
    out = tmp_path_factory.mktemp("tiny")
    log = out / "driver.log"
    argv = ["sbatch", "--wait", "--cpus-per-task=2", f"--output={log}", "scripts/slurm/sweep.sh"]
    proc = subprocess.run(
        [*argv, "--config", "jobs/configs/tiny.toml"],
        cwd=REPO,
        env={**env, "VAE_OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr + (log.read_text()[-4000:] if log.exists() else "")
    (out / "job_id").write_text(proc.stdout.split()[-1])
    return out / "tiny"


@pytest.fixture(scope="session")
def ray_head():
    """One `ray start --head` (2 CPUs, no dashboard: `ray job submit` is tested on its own clusters)
    shared by the tests that only need a running cluster. Its own temp folder, free ports and a
    token of its own; ended by its pids.

    Yields {"address": "127.0.0.1:PORT", "env": the environment a client needs, "tmpdir": its
    $RAY_TMPDIR (for --address auto)}.
    """
    tmpdir = ROOT / "head"
    tmpdir.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "RAY_TMPDIR": str(tmpdir),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": os.urandom(16).hex(),
    }
    ports = {
        "--port": port,
        "--ray-client-server-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--metrics-export-port": free_port(),
        "--runtime-env-agent-port": free_port(),
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
    }
    proc = subprocess.run(
        [
            "ray",
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            *(f"{k}={v}" for k, v in ports.items()),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        yield {
            "address": f"127.0.0.1:{port}",
            "env": env,
            "tmpdir": tmpdir,
        }
    finally:
        end(own_pids(tmpdir), grace=2.0)  # a test head: no need to wait for a clean exit
        time.sleep(0.5)


@pytest.fixture(scope="session")
def ddp_pair(ray_head, tmp_path_factory):
    """Two trials that train the same (one torch thread per worker either way) in one sweep on the
    suite's head, one after the other; VAE_FAULT_ONCE cuts whichever trains first after its
    first epoch. Returns (the sweep folder, the driver's CompletedProcess, the marker's path)."""
    from procs import DDP_SET, job, write_sweep

    folder = tmp_path_factory.mktemp("ddp")
    path = write_sweep(folder / "sweep.toml", "t", set=DDP_SET, grid={"train.threads": [0, 1]})
    marker = folder / "crashed"
    proc = job(
        "jobs.sweep",
        "--config",
        str(path),
        "--out",
        str(folder / "out"),
        "--no-postprocess",
        "--address",
        ray_head["address"],
        env={**ray_head["env"], "VAE_FAULT_ONCE": str(marker)},
    )
    return folder / "out" / "t", proc, marker
