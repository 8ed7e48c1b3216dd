"""A real one-node Slurm cluster runs scripts/slurm/sweep.sh with the tiny sweep."""

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from vaecore import runs

from procs import REPO

pytestmark = pytest.mark.integration
CLUSTER = REPO / "scripts" / "slurm" / "local_cluster.sh"


@pytest.fixture(scope="module")
def slurm_env():
    """Start the project's one-node Slurm for this module; yields the environment to use it."""
    folder = tempfile.mkdtemp(prefix="slurm", dir="/tmp")  # short: munge's socket path is limited
    proc = subprocess.run(
        ["bash", str(CLUSTER), "start", folder], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    conf = proc.stdout.strip().removeprefix("export SLURM_CONF=")
    yield {**os.environ, "SLURM_CONF": conf}, Path(folder)
    subprocess.run(["bash", str(CLUSTER), "stop", folder], capture_output=True, timeout=120)


def test_sbatch_runs_the_tiny_sweep_end_to_end(slurm_env, tmp_path):
    env, folder = slurm_env
    out = tmp_path / "runs"
    log = tmp_path / "job.out"
    proc = subprocess.run(
        [
            "sbatch",
            "--wait",
            "--cpus-per-task=2",
            f"--output={log}",
            "scripts/slurm/sweep.sh",
            "--config",
            "jobs/configs/tiny.toml",
        ],
        cwd=REPO,
        env={**env, "VAE_OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=1500,
    )
    text = log.read_text() if log.exists() else ""
    assert proc.returncode == 0, proc.stderr + text[-4000:]
    assert "ray: 2 CPUs, 0 GPUs on 1 node(s)" in text
    sweep = out / "tiny"
    manifest = runs.read_json(sweep / "manifest.json")
    assert {n: t["status"] for n, t in manifest["trials"].items()} == {"z2": "completed", "z3": "completed"}
    assert manifest["hardware"]["cpus"] == 2
    for name in ("z2", "z3"):
        summary = runs.read_json(sweep / "trials" / name / "summary.json")
        assert summary is not None and summary["metrics"]["test_elbo"] < 1000
    assert (sweep / "gallery" / "index.html").is_file()
    jobs = (folder / "log" / "jobcomp.txt").read_text()
    assert "JobState=COMPLETED" in jobs
