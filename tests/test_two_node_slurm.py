"""A real two-node Slurm: slurmctld here, one slurmd on each of two namespaced hosts (tests/hosts.py:
own address and hostname, shared filesystem and /tmp), munge shared. scripts/slurm/sweep.sh on
`sbatch --nodes=2`: Ray on both nodes, trials on both hosts, and USR1 preemption of that two-node
job (requeue, resume, every epoch once); a node that cannot see --out."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from hosts import Hosts, HostsUnavailable

from vaecore import runs

from procs import REPO, free_port, local_slurm

pytestmark = pytest.mark.integration
TINY = "jobs/configs/tiny.toml"


@pytest.fixture(scope="module")
def slurm2():
    """Two Slurm nodes n1, n2 (1 CPU each) on two hosts; yields (env, hosts, slurm folder)."""
    try:
        hosts = Hosts(["n1", "n2"])
    except HostsUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    folder = tempfile.mkdtemp(prefix="s2", dir=os.environ["RAY_TMPDIR"])  # short: munge's socket
    nodes = " ".join(f"{n}@{hosts.addr(n)}@{hosts.holders[n]}" for n in ("n1", "n2"))
    env = {
        **os.environ,
        "LOCAL_SLURM_CTLD_PORT": str(free_port()),
        "LOCAL_SLURM_D_PORT": "6818",  # each host has its own ports
        "LOCAL_SLURM_NODES": nodes,
        "LOCAL_SLURM_CTLD_ADDR": hosts.bridge_addr,
        "LOCAL_SLURM_NODE_CPUS": "1",
    }
    try:
        with local_slurm(folder, env) as conf:
            yield {**env, "SLURM_CONF": conf}, hosts, Path(folder)
    finally:
        hosts.close()


def sbatch(env: dict, out: Path, log: Path, *args: str, wait: bool = True) -> subprocess.CompletedProcess:
    flags = ["--wait"] if wait else ["--parsable"]
    return subprocess.run(
        [
            "sbatch",
            *flags,
            "--nodes=2",
            "--cpus-per-task=1",
            f"--output={log}",
            "scripts/slurm/sweep.sh",
            *args,
        ],
        cwd=REPO,
        env={**env, "VAE_OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=900,
    )


def job_state(folder: Path, job_id: str) -> str:
    comp = folder / "log" / "jobcomp.txt"
    lines = comp.read_text().splitlines() if comp.exists() else []
    return " ".join(line for line in lines if f"JobId={job_id} " in line)


def remove_ray_temp(log_text: str) -> None:
    """The job's Ray temp folders (kept by sweep.sh for their logs): ours, named in the log."""
    for folder in set(re.findall(r"temp dir (/tmp/ray-\d+-[0-9a-f]{8}-\d+)\)", log_text)):
        shutil.rmtree(folder, ignore_errors=True)


def test_a_node_that_cannot_see_the_output_folder_stops_the_job_naming_it(slurm2, tmp_path):
    env, hosts, folder = slurm2
    out, log = tmp_path / "runs", tmp_path / "job.out"
    out.mkdir()
    hosts.hide("n2", out)  # n2's slurmd (and its job steps) see another, empty folder there
    try:
        proc = sbatch(env, out, log, "--config", TINY, "--no-postprocess")
    finally:
        hosts.unhide("n2")
    text = log.read_text()
    assert proc.returncode == 1, text
    errors = [line for line in text.splitlines() if "ERROR" in line]
    want = f"ERROR: output folder {out} is not on storage shared by all nodes (n[1-2]; not visible on n2)"
    assert len(errors) == 1 and errors[0].split("] ", 1)[1].startswith(want), text
    assert "starting Ray" not in text


def test_sbatch_on_two_nodes_trains_on_both_hosts_and_usr1_requeues_it_to_resume_each_epoch_once(
    slurm2, tmp_path
):
    # One job for both (the suite's time): the two-node command with two epochs, SIGUSR1 after the
    # first; its requeued run starts Ray on both nodes again and trains the second.
    env, hosts, folder = slurm2
    out, log = tmp_path / "runs", tmp_path / "job.out"
    args = ["--config", TINY, "--set", "train.epochs=2", "--no-postprocess"]
    submit = sbatch(env, out, log, *args, wait=False)
    assert submit.returncode == 0, submit.stderr
    job_id = submit.stdout.strip().split(";")[0]
    trials = [out / "tiny" / "trials" / n for n in ("z2", "z3")]
    try:
        wait_for(lambda: any(runs.read_jsonl(t / "metrics.jsonl") for t in trials), 600, log, "a first epoch")
        signal = subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], env=env, capture_output=True)
        assert signal.returncode == 0, signal.stderr
        # Slurm holds a requeued job back for about two minutes; let it start as soon as it safely can.
        # Not within the second its old run's credential was revoked: slurmd compares whole seconds
        # and refuses the new launch ("Job credential revoked"), which fails the job (seen in CI).
        wait_for(
            lambda: "JobState=PENDING" in (s := show(env, job_id)) and "Restarts=1" in s, 300, log, "requeue"
        )
        queued = int(time.time())
        wait_for(lambda: time.time() >= queued + 2 and nodes_idle(env), 120, log, "both nodes to be free")
        subprocess.run(
            ["scontrol", "update", f"JobId={job_id}", "StartTime=now"], env=env, timeout=30, check=True
        )
        wait_for(
            lambda: "JobState=COMPLETED" in job_state(folder, job_id), 900, log, "the requeued job's end"
        )
    finally:
        text = log.read_text() if log.exists() else ""
        remove_ray_temp(text)
    assert f"starting Ray head on n1 at {hosts.addr('n1')}:" in text, text[-3000:]
    assert text.count("all 2 Ray nodes ready") == 2 and text.count("ray: 2 CPUs, 0 GPUs on 2 node(s)") == 2
    # one temp folder per node, though the hosts share /tmp (with one name, mkdir failed on n2)
    temps = re.findall(r"temp dir (/tmp/ray-\d+-[0-9a-f]{8}-\d+)\)", text)
    assert len(temps) == 4 and len(set(temps)) == 4, temps
    assert "requeue 1 of at most 5" in text and f"job {job_id} (restart 1)" in text, text[-3000:]
    for t in trials:
        assert [r["epoch"] for r in runs.read_jsonl(t / "metrics.jsonl")] == [1, 2]
        assert runs.read_json(t / "status.json")["status"] == "completed"
    assert {runs.read_json(t / "status.json")["host"] for t in trials} == {"n1", "n2"}  # both hosts trained
    print(text)


def nodes_idle(env: dict) -> bool:
    states = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True, timeout=30)
    return states.stdout.split() == ["idle"]


def show(env: dict, job_id: str) -> str:
    proc = subprocess.run(["scontrol", "show", "job", "-o", job_id], env=env, capture_output=True, text=True)
    return proc.stdout


def wait_for(predicate, timeout: float, log: Path, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"no {what}: " + (log.read_text()[-3000:] if log.exists() else "")
        time.sleep(0.5)
