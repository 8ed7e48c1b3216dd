"""A real one-node Slurm cluster runs scripts/slurm/sweep.sh: the tiny sweep, and a bad VAE_VENV."""

import math
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from vaecore import config, runs

from procs import REPO, free_port

pytestmark = pytest.mark.integration
CLUSTER = REPO / "scripts" / "slurm" / "local_cluster.sh"
TINY = "jobs/configs/tiny.toml"


@pytest.fixture(scope="module")
def slurm_env():
    """Start the project's one-node Slurm for this module; yields the environment to use it."""
    # short: munge's socket path is limited; under the suite's folder: its processes are ours
    folder = tempfile.mkdtemp(prefix="sl", dir=os.environ["RAY_TMPDIR"])
    ports = {"LOCAL_SLURM_CTLD_PORT": str(free_port()), "LOCAL_SLURM_D_PORT": str(free_port())}
    env = {**os.environ, **ports}
    proc = subprocess.run(
        ["bash", str(CLUSTER), "start", folder], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr
    conf = proc.stdout.strip().removeprefix("export SLURM_CONF=")
    try:
        yield {**env, "SLURM_CONF": conf}, Path(folder)
    finally:
        subprocess.run(["bash", str(CLUSTER), "stop", folder], capture_output=True, timeout=120, env=env)


def test_sbatch_runs_the_tiny_sweep_on_the_ray_it_starts(slurm_env, tmp_path):
    # --no-postprocess: post-processing and the gallery are tested elsewhere; here, the batch
    # script: Ray started inside the allocation, jobs.sweep given its address, the exit code.
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
            TINY,
            "--no-postprocess",
        ],
        cwd=REPO,
        env={**env, "VAE_OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    text = log.read_text() if log.exists() else ""
    assert proc.returncode == 0, proc.stderr + text[-4000:]
    assert "ray: 2 CPUs, 0 GPUs on 1 node(s)" in text and "to join)" in text
    assert f"--out {out} --config {TINY} --no-postprocess" in text  # VAE_OUT and the arguments
    sweep = out / "tiny"
    manifest = runs.read_json(sweep / "manifest.json")
    assert {n: t["status"] for n, t in manifest["trials"].items()} == {"z2": "completed", "z3": "completed"}
    assert manifest["hardware"]["cpus"] == 2
    for name in ("z2", "z3"):
        trial = sweep / "trials" / name
        r = config.from_dict(runs.read_json(trial / "config.json")).loss.recon_multiplier
        (row,) = runs.read_jsonl(trial / "metrics.jsonl")
        # the ELBO's ceiling under the implied Gaussian (README), less this run's own KL
        assert -700 < row["test_elbo"] < -392 * math.log(math.pi * 784 / r) - row["test_kl"]
        assert (trial / "model.pt").is_file()
    assert not (sweep / "gallery").exists()
    assert "Ray stopped" in text and "driver exited with code 0" in text
    job_id = proc.stdout.split()[-1]
    jobs = (folder / "log" / "jobcomp.txt").read_text().splitlines()
    assert "JobState=COMPLETED" in next(x for x in jobs if f"JobId={job_id} " in x)


def test_a_vae_venv_without_activate_fails_the_job_in_one_line(slurm_env, tmp_path):
    env, folder = slurm_env
    log = tmp_path / "job.out"
    venv = tmp_path / "no-venv"
    proc = subprocess.run(
        [
            "sbatch",
            "--wait",
            f"--output={log}",
            "scripts/slurm/sweep.sh",
            "--config",
            "jobs/configs/tiny.toml",
        ],
        cwd=REPO,
        env={**env, "VAE_VENV": str(venv), "VAE_OUT": str(tmp_path / "runs")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    text = log.read_text()
    assert proc.returncode == 1, proc.stderr + text
    errors = [line for line in text.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and errors[0].endswith(f"ERROR: VAE_VENV={venv} has no bin/activate"), text
    assert "starting Ray" not in text and not (tmp_path / "runs").exists()
    job_id = proc.stdout.split()[-1]
    line = next(
        x for x in (folder / "log" / "jobcomp.txt").read_text().splitlines() if f"JobId={job_id} " in x
    )
    assert "JobState=FAILED" in line
