"""Real local Ray: the sweep job end to end, DDP, resume after a killed driver, worker faults."""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from vaecore import config, runs
from vaecore.gallery import site

from procs import REPO, end, job, own_pids, write_sweep

pytestmark = pytest.mark.integration


SMALL = {"data.train_per_class": 60, "data.test_per_class": 10, "train.batch_size": 32}  # [set] of sweep "t"


def gaussian_constant(r: float) -> float:
    """392 * log(pi * 784 / r): -log p(x|z) of a perfect reconstruction (README, losses.py)."""
    return 392 * math.log(math.pi * 784 / r)


def test_tiny_sweep_writes_the_documented_layout_with_sensible_metrics(tiny_sweep):
    sweep_dir = tiny_sweep
    manifest = json.loads((sweep_dir / "manifest.json").read_text())
    assert set(manifest["trials"]) == {"z2", "z3"}
    assert all(t["status"] == "completed" for t in manifest["trials"].values())
    assert manifest["hardware"]["cpus"] == 2 and manifest["timings"]["sweep_s"] > 0
    assert manifest["versions"]["ray"].startswith("2.")
    for name, z in (("z2", 2), ("z3", 3)):
        d = sweep_dir / "trials" / name
        assert json.loads((d / "params.json").read_text()) == {"model.latent_dim": z}
        cfg = config.from_dict(json.loads((d / "config.json").read_text()))
        assert cfg.model.latent_dim == z
        r, c = cfg.loss.recon_multiplier, gaussian_constant(cfg.loss.recon_multiplier)
        rows = runs.read_jsonl(d / "metrics.jsonl")
        assert [r["epoch"] for r in rows] == [1]
        row = rows[0]
        # the terms the code promises: recon = r * mse, ELBO = -(recon + constant) - KL
        assert row["test_recon"] == pytest.approx(r * row["test_mse"], rel=1e-5)
        assert row["test_elbo"] == pytest.approx(-(row["test_recon"] + c) - row["test_kl"], abs=1e-2)
        assert row["test_kl"] > 0 and row["test_elbo"] < -c - row["test_kl"]  # -c: the ELBO's ceiling
        # an untrained compact VAE scores about -750 nats on this data; one epoch beats it
        assert row["test_elbo"] > -700 and row["images_per_s"] > 10
        summary = runs.read_json(d / "summary.json")
        m = summary["metrics"]
        assert m["test_kl"] == pytest.approx(sum(m["kl_per_dim"]), rel=1e-6) and len(m["kl_per_dim"]) == z
        assert -700 < m["test_elbo"] < -c - m["test_kl"] and m["test_iwae"] > m["test_elbo"]
        state = torch.load(d / "model.pt")
        assert state["model"]["mu.weight"].shape == (z, 3136)
        assert (d / "epochs" / "samples_001.png").stat().st_size > 1000
        check_overheads(d)
    assert not list(sweep_dir.glob("trials/*/*.tmp"))


def test_each_trial_is_postprocessed_as_it_ends_and_the_final_gallery_equals_a_fresh_build(
    tiny_sweep, tmp_path
):
    log = (tiny_sweep.parent / "driver.log").read_text()
    for name in ("z2", "z3"):
        # post-processed inside the sweep, before the final pass, which then finds nothing to do;
        # the one closing table says so
        assert re.search(rf"\] {name} +finished, post-processed in \d+\.\d s", log), log
        assert re.search(rf"^{name} +completed +1 +\d+\.\d +done \(\d+\.\d s\) *$", log, re.M), log
    assert not re.search(r"^post-processing \d+ trial", log, re.M)  # the final pass started nothing
    assert "skipped" not in log and len(re.findall(r"^trial +training", log, re.M)) == 1
    assert log.index("gallery: ") < log.index("finished")  # built while training
    copy = Path(shutil.copytree(tiny_sweep, tmp_path / "tiny"))
    shutil.rmtree(copy / "gallery")
    site.build(copy)
    assert site._same_tree(copy / "gallery", tiny_sweep / "gallery")


def check_overheads(d) -> None:
    """status.json's seconds around training add up with the epochs' own seconds."""
    status = runs.read_json(d / "status.json")
    parts = [status[k] for k in ("worker_start_s", "setup_s", "teardown_s")]
    assert all(p >= 0 for p in parts), status  # worker_start_s ~0 in local mode (one worker)
    clock = runs.read_json(d / "worker_clock.json")
    assert clock["entered"] <= clock["ready"] <= clock["done"]
    epochs = sum(r["train_seconds"] + r["eval_seconds"] for r in runs.read_jsonl(d / "metrics.jsonl"))
    training = clock["done"] - clock["ready"]
    assert training >= epochs
    # start -> entered -> ready -> done -> end: the parts tile the trial's wall time
    assert sum(parts) + training == pytest.approx(status["seconds"], abs=0.5)


def test_a_killed_driver_resumes_without_retraining_finished_trials(tmp_path, ray_head):
    # One CPU-2 worker per trial on 2 cores: the trials run one after the other.
    sets = {**SMALL, "resources.cpus_per_worker": 2}
    path = str(write_sweep(tmp_path / "sweep.toml", "t", set=sets, grid={"train.epochs": [1, 3]}))
    out = tmp_path / "out"
    ray_tmp = tempfile.mkdtemp(prefix="rk", dir=os.environ["RAY_TMPDIR"])  # its Ray's processes: ours
    driver = subprocess.Popen(
        [sys.executable, "-m", "jobs.sweep", "--config", path, "--out", str(out), "--no-postprocess"],
        cwd=REPO,
        # TMPDIR too: its token folder (vaecore.cluster.private_token), which a SIGKILL leaves, is ours
        env={**os.environ, "RAY_TMPDIR": ray_tmp, "TMPDIR": ray_tmp},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    long = out / "t" / "trials" / "epochs3"
    deadline = time.time() + 240
    while len(runs.read_jsonl(long / "metrics.jsonl")) < 1 and time.time() < deadline:
        time.sleep(0.5)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    end(own_pids(ray_tmp), grace=2.0)
    done = out / "t" / "trials" / "epochs1"
    assert runs.read_json(done / "status.json")["status"] == "completed"
    kept = {
        p.name: p.stat().st_mtime_ns
        for p in done.rglob("*")
        if p.is_file() and p.name not in ("config.json", "params.json")
    }
    first_rows = runs.read_jsonl(long / "metrics.jsonl")
    assert 1 <= len(first_rows) < 3

    # the re-run joins the suite's Ray head: a resume does not need the Ray that trained before
    again = ["--no-postprocess", "--address", ray_head["address"]]
    proc = job("jobs.sweep", "--config", path, "--out", str(out), *again, env=ray_head["env"], timeout=400)
    assert proc.returncode == 0, proc.stderr
    assert "1 already done, 1 to train" in proc.stdout
    assert {p.name: p.stat().st_mtime_ns for p in done.rglob("*") if p.name in kept} == kept
    rows = runs.read_jsonl(long / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[0] == first_rows[0]
    events = runs.read_jsonl(long / "events.jsonl")
    assert events and events[0]["event"] == "resumed" and events[0]["epoch"] == len(first_rows)
