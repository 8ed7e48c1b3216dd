"""Reliability on a real Ray (a local one, or the suite's head): Ctrl+C and its re-run, exact
two-worker resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vaecore import model, runs

from procs import REPO, job, write_sweep

pytestmark = pytest.mark.integration


def small_sweep(folder: Path, grid: dict, sets: dict, post: dict | None = None, per_class: int = 60) -> str:
    """Sweep "t": `per_class` training and 10 test images a class, batches of 32."""
    small = {"data.train_per_class": per_class, "data.test_per_class": 10, "train.batch_size": 32}
    return str(write_sweep(folder / "sweep.toml", "t", set={**small, **sets}, grid=grid, postprocess=post))


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_ctrl_c_stops_without_postprocessing_and_a_rerun_finishes_each_epoch_once(tmp_path, ray_head):
    path = small_sweep(
        tmp_path,
        {"model.latent_dim": [2, 3]},
        {"train.epochs": 3, "resources.cpus_per_worker": 1},  # the stop lands with two epochs to go
        {"iwae_k": 4, "iwae_images": 20, "fid_samples": 200, "inception": False, "flow_steps": 100},
        per_class=100,  # epochs of ~2 s
    )
    out = tmp_path / "out"
    trials = out / "t" / "trials"
    log, err = tmp_path / "driver.out", tmp_path / "driver.err"
    with open(log, "w") as o, open(err, "w") as e:
        driver = subprocess.Popen(
            [sys.executable, "-m", "jobs.sweep", "--config", path, "--out", str(out)],
            cwd=REPO,
            start_new_session=True,
            stdout=o,
            stderr=e,
        )
    try:
        wait_for(lambda: len(runs.read_jsonl(trials / "z2" / "metrics.jsonl")) >= 1, 600, "a first epoch")
        os.kill(driver.pid, signal.SIGINT)
        driver.wait(timeout=120)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    stdout, stderr = log.read_text(), err.read_text()
    assert driver.returncode == 130, stdout + stderr
    assert "interrupted; re-run the same command" in stderr
    statuses = {t: runs.read_dict(trials / t / "status.json").get("status") for t in ("z2", "z3")}
    assert set(statuses.values()) <= {"interrupted", "completed"} and "interrupted" in statuses.values()
    manifest = runs.read_dict(out / "t" / "manifest.json")
    assert {t: manifest["trials"][t]["status"] for t in statuses} == statuses
    assert not list(trials.glob("*/summary.json"))  # neither trial had finished: none post-processed

    # The re-runs join the suite's Ray head: resuming does not need the Ray that trained before.
    on_head = ["--address", ray_head["address"]]
    proc = job(
        "jobs.sweep",
        "--config",
        path,
        "--out",
        str(out),
        "--no-postprocess",
        *on_head,
        env=ray_head["env"],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for t in ("z2", "z3"):
        assert [r["epoch"] for r in runs.read_jsonl(trials / t / "metrics.jsonl")] == [1, 2, 3]
        assert runs.read_dict(trials / t / "status.json")["status"] == "completed"
    assert len(runs.read_dict(out / "t" / "manifest.json")["history"]) == 2


def test_a_two_worker_trial_cut_and_resumed_equals_the_uninterrupted_one(ddp_pair):
    sweep, proc, marker = ddp_pair
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert marker.exists(), "the fault was never injected"
    trials = [sweep / "trials" / name for name in ("threads0", "threads1")]
    resumed = [[e["event"] for e in runs.read_jsonl(d / "events.jsonl")] == ["resumed"] for d in trials]
    assert sorted(resumed) == [False, True], resumed  # exactly one was cut and resumed
    keys = ("loss", "test_loss", "test_elbo", "lr")
    rows = [[[r[k] for k in keys] for r in runs.read_jsonl(d / "metrics.jsonl")] for d in trials]
    assert rows[0] == rows[1] and len(rows[0]) == 2
    wa, wb = (model.torch_load(d / "model.pt")["model"] for d in trials)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # DDP: each rank trained on half the 600 images and ended with the same weights and loss
    for d in trials:
        ranks = runs.read_json(d / "status.json")["ranks"]
        assert [r["images"] for r in ranks] == [300, 300], ranks
        assert len({(r["weights"], r["loss"]) for r in ranks}) == 1, ranks
        assert ranks[0]["loss"] == rows[0][-1][0]  # the all-reduced loss metrics.jsonl has
