"""A real one-node Slurm cluster runs scripts/slurm/sweep.sh with the tiny sweep."""

import os
import subprocess
import tempfile
import time
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


def test_usr1_requeues_the_job_which_resumes_and_records_each_epoch_once(slurm_env, tmp_path):
    env, folder = slurm_env
    out, log = tmp_path / "runs", tmp_path / "job.out"
    sweep = tmp_path / "long.toml"
    sweep.write_text(
        'name = "long"\n[set]\n"train.epochs" = 4\n"data.train_per_class" = 300\n"data.test_per_class" = 20\n'
        '"resources.cpus_per_worker" = 2\n[grid]\n"model.latent_dim" = [2]\n'
    )
    args = ["--parsable", "--cpus-per-task=2", f"--output={log}", "scripts/slurm/sweep.sh"]
    args += ["--config", str(sweep), "--no-postprocess"]
    submit = subprocess.run(
        ["sbatch", *args],
        cwd=REPO,
        env={**env, "VAE_OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submit.returncode == 0, submit.stderr
    job_id = submit.stdout.strip().split(";")[0]
    metrics = out / "long" / "trials" / "z2" / "metrics.jsonl"
    deadline = time.time() + 600
    while len(runs.read_jsonl(metrics)) < 1:
        assert time.time() < deadline, "no epoch within 10 minutes"
        time.sleep(1)
    signal = subprocess.run(
        ["scancel", "--signal=USR1", "--batch", job_id], env=env, capture_output=True, timeout=30
    )
    assert signal.returncode == 0, signal.stderr
    # Slurm holds a requeued job back for about two minutes; let it start as soon as it is queued.
    deadline = time.time() + 300
    while "JobState=PENDING" not in (show := _show(env, job_id)) or "Restarts=1" not in show:
        assert time.time() < deadline, log.read_text()[-3000:]
        time.sleep(1)
    subprocess.run(
        ["scontrol", "update", f"JobId={job_id}", "StartTime=now"], env=env, timeout=30, check=True
    )
    comp = folder / "log" / "jobcomp.txt"
    deadline = time.time() + 900
    while f"JobId={job_id} " not in comp.read_text() or "JobState=COMPLETED" not in _records(comp, job_id):
        assert time.time() < deadline, log.read_text()[-3000:]
        time.sleep(2)
    text = log.read_text()
    assert "requeue 1 of at most 5" in text and f"job {job_id} (restart 1)" in text, text[-3000:]
    assert [r["epoch"] for r in runs.read_jsonl(metrics)] == [1, 2, 3, 4]
    assert runs.read_json(out / "long" / "trials" / "z2" / "status.json")["status"] == "completed"


def _show(env: dict, job_id: str) -> str:
    proc = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], env=env, capture_output=True, text=True, timeout=30
    )
    return proc.stdout


def _records(comp: Path, job_id: str) -> str:
    return "\n".join(line for line in comp.read_text().splitlines() if f"JobId={job_id} " in line)
