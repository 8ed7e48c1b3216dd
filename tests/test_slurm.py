"""The suite's one-node Slurm (conftest.py) runs scripts/slurm/sweep.sh: the tiny sweep, a bad VAE_VENV."""

import math
import subprocess

import pytest

from vaecore import config, runs

from procs import REPO

pytestmark = pytest.mark.integration
TINY = "jobs/configs/tiny.toml"


def test_sbatch_runs_the_tiny_sweep_on_the_ray_it_starts(tiny_sweep, slurm_one):
    # The suite's tiny sweep is this batch job (conftest.py); its output and gallery are checked in
    # test_ray.py and test_gallery_browser.py. Here, the batch script: Ray started inside the
    # allocation, jobs.sweep given its address and $VAE_OUT, the exit code, Slurm's record.
    _, folder = slurm_one
    out = tiny_sweep.parent
    text = (out / "driver.log").read_text()
    assert "ray: 2 CPUs, 0 GPUs on 1 node(s)" in text and "to join)" in text
    assert f"--out {out} --config {TINY}" in text  # VAE_OUT and the arguments
    manifest = runs.read_json(tiny_sweep / "manifest.json")
    assert {n: t["status"] for n, t in manifest["trials"].items()} == {"z2": "completed", "z3": "completed"}
    assert manifest["hardware"]["cpus"] == 2
    for name in ("z2", "z3"):
        trial = tiny_sweep / "trials" / name
        r = config.from_dict(runs.read_json(trial / "config.json")).loss.recon_multiplier
        (row,) = runs.read_jsonl(trial / "metrics.jsonl")
        # the ELBO's ceiling under the implied Gaussian (README), less this run's own KL
        assert -700 < row["test_elbo"] < -392 * math.log(math.pi * 784 / r) - row["test_kl"]
        assert (trial / "model.pt").is_file()
    assert (tiny_sweep / "gallery" / "index.html").is_file()
    assert "Ray stopped" in text and "driver exited with code 0" in text
    job_id = (out / "job_id").read_text()
    jobs = (folder / "log" / "jobcomp.txt").read_text().splitlines()
    assert "JobState=COMPLETED" in next(x for x in jobs if f"JobId={job_id} " in x)


def test_a_vae_venv_without_activate_fails_the_job_in_one_line(slurm_one, tmp_path):
    env, folder = slurm_one
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
