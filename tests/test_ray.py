"""Real local Ray: the sweep job end to end, DDP, resume after a killed driver, worker faults."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from vaecore import config, runs

from procs import REPO, end, job, ray_pids

pytestmark = pytest.mark.integration


def write_sweep(tmp_path, grid: str, sets: str = "") -> str:
    path = tmp_path / "sweep.toml"
    path.write_text(
        'name = "t"\nbase = "default"\n[set]\n"data.train_per_class" = 60\n"data.test_per_class" = 10\n'
        f'"train.batch_size" = 32\n{sets}\n[grid]\n{grid}\n'
    )
    return str(path)


def test_tiny_sweep_writes_the_documented_layout_with_sensible_metrics(tiny_sweep):
    sweep_dir = tiny_sweep
    manifest = json.loads((sweep_dir / "manifest.json").read_text())
    assert set(manifest["trials"]) == {"z2", "z3"}
    assert all(t["status"] == "completed" for t in manifest["trials"].values())
    assert manifest["hardware"]["cpus"] >= 1 and manifest["timings"]["sweep_s"] > 0
    assert manifest["versions"]["ray"].startswith("2.")
    for name, z in (("z2", 2), ("z3", 3)):
        d = sweep_dir / "trials" / name
        assert json.loads((d / "params.json").read_text()) == {"model.latent_dim": z}
        assert config.from_dict(json.loads((d / "config.json").read_text())).model.latent_dim == z
        rows = runs.read_jsonl(d / "metrics.jsonl")
        assert [r["epoch"] for r in rows] == [1]
        # an untrained compact VAE scores about -750 nats on this data; one epoch beats it
        assert -700 < rows[0]["test_elbo"] < 1000 and rows[0]["images_per_s"] > 10
        state = torch.load(d / "model.pt")
        assert state["model"]["mu.weight"].shape == (z, 3136)
        assert (d / "epochs" / "samples_001.png").stat().st_size > 1000
    assert not list(sweep_dir.glob("trials/*/*.tmp"))


def probe_loop(loop_cfg: dict) -> None:
    """Inside each DDP worker: record this rank's shard, losses and final parameters."""
    import ray.train
    import ray.train.torch

    from vaecore import data, train

    cfg = config.from_dict(loop_cfg["config"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    ds = data.load_for(cfg.data, verify=False)
    s = train.new_session(cfg, "cpu", rank, wrap=ray.train.torch.prepare_model)
    shard = torch.cat(
        train.shard_batches(len(ds.train_x), cfg.train.batch_size, cfg.train.seed, 0, rank, world)
    )
    rows = [train.run_epoch(s, ds, cfg, "cpu", rank, world) for _ in range(3)]
    params = torch.cat([p.detach().flatten() for p in s.model.parameters()]).double()
    out = {
        "shard": shard.tolist(),
        "loss": [r["loss"] for r in rows],
        "param_sum": params.sum().item(),
        "param_sq": params.pow(2).sum().item(),
    }
    (loop_cfg["out"] / f"rank{rank}.json").write_text(json.dumps(out))
    ray.train.report({"done": 1})


def test_ddp_with_two_cpu_workers_shards_the_data_and_keeps_replicas_equal(tmp_path):
    import ray
    import ray.train
    from ray import cloudpickle
    from ray.train.torch import TorchConfig, TorchTrainer

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cfg = config.load(
        "default",
        [
            "data.train_per_class=100",
            "data.test_per_class=10",
            "train.batch_size=64",
            "resources.workers=2",
            "resources.cpus_per_worker=1",
        ],
    )
    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False)
    try:
        TorchTrainer(
            probe_loop,
            train_loop_config={"config": asdict(cfg), "out": tmp_path},
            torch_config=TorchConfig(backend="gloo"),
            scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
            run_config=ray.train.RunConfig(storage_path=str(tmp_path / "ray")),
        ).fit()
    finally:
        ray.shutdown()
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert len(r0["shard"]) == len(r1["shard"]) == 500
    assert not set(r0["shard"]) & set(r1["shard"])
    assert r0["param_sum"] == pytest.approx(r1["param_sum"], rel=1e-9)
    assert r0["param_sq"] == pytest.approx(r1["param_sq"], rel=1e-9)
    assert r0["loss"] == r1["loss"]  # all-reduced, so every rank reports the global mean
    assert all(torch.isfinite(torch.tensor(r0["loss"])))
    assert r0["loss"][2] < 0.8 * r0["loss"][0]


def test_a_killed_driver_resumes_without_retraining_finished_trials(tmp_path):
    # One CPU-2 worker per trial on 2 cores: the trials run one after the other.
    path = write_sweep(tmp_path, '"train.epochs" = [1, 5]', '"resources.cpus_per_worker" = 2')
    out = tmp_path / "out"
    before = ray_pids()
    driver = subprocess.Popen(
        [sys.executable, "-m", "jobs.sweep", "--config", path, "--out", str(out), "--no-postprocess"],
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    long = out / "t" / "trials" / "epochs5"
    deadline = time.time() + 240
    while len(runs.read_jsonl(long / "metrics.jsonl")) < 1 and time.time() < deadline:
        time.sleep(0.5)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    end(ray_pids() - before)
    done = out / "t" / "trials" / "epochs1"
    assert runs.read_json(done / "status.json")["status"] == "completed"
    kept = {
        p.name: p.stat().st_mtime_ns
        for p in done.rglob("*")
        if p.is_file() and p.name not in ("config.json", "params.json")
    }
    first_rows = runs.read_jsonl(long / "metrics.jsonl")
    assert 1 <= len(first_rows) < 5

    proc = job("jobs.sweep", "--config", path, "--out", str(out), "--no-postprocess")
    assert proc.returncode == 0, proc.stderr
    assert "1 already done, 1 to train" in proc.stdout
    assert {p.name: p.stat().st_mtime_ns for p in done.rglob("*") if p.name in kept} == kept
    rows = runs.read_jsonl(long / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5] and rows[0] == first_rows[0]
    events = runs.read_jsonl(long / "events.jsonl")
    assert events and events[0]["event"] == "resumed" and events[0]["epoch"] == len(first_rows)


def test_worker_fault_recovers_and_a_diverging_sibling_fails_with_its_reason(tmp_path):
    path = write_sweep(
        tmp_path,
        '"train.lr" = [0.001, 1e12]',
        '"train.epochs" = 2\n"train.grad_clip" = 0.0\n"resources.cpus_per_worker" = 1',
    )
    marker = tmp_path / "crashed"
    proc = job(
        "jobs.sweep",
        "--config",
        path,
        "--out",
        str(tmp_path / "out"),
        "--no-postprocess",
        env={"VAE_FAULT_ONCE": str(marker)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    trials = tmp_path / "out" / "t" / "trials"
    good, bad = trials / "lr0.001", trials / "lr1000000000000"
    assert marker.exists(), "the fault was never injected"
    assert runs.read_json(good / "status.json")["status"] == "completed"
    assert [r["epoch"] for r in runs.read_jsonl(good / "metrics.jsonl")] == [1, 2]
    assert runs.read_jsonl(good / "events.jsonl")[0] == {
        **runs.read_jsonl(good / "events.jsonl")[0],
        "event": "resumed",
        "epoch": 1,
    }
    status = runs.read_json(bad / "status.json")
    assert status["status"] == "failed" and "non-finite" in status["reason"]
    assert not (bad / "model.pt").exists()
    assert "lr1000000000000" in proc.stdout and "failed" in proc.stdout


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_job_submit_runs_the_sweep_on_a_started_head(tmp_path):
    import tempfile

    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}", "RAY_AUTH_MODE": "token"}
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths are limited
    port, dash = free_port(), free_port()
    before = ray_pids()
    try:
        subprocess.run(
            [
                "ray",
                "start",
                "--head",
                "--node-ip-address=127.0.0.1",
                f"--port={port}",
                "--num-cpus=2",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dash}",
                f"--temp-dir={temp_dir}",
                "--disable-usage-stats",
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        out = tmp_path / "out"
        proc = subprocess.run(
            [
                "ray",
                "job",
                "submit",
                "--address",
                f"http://127.0.0.1:{dash}",
                "--working-dir",
                ".",
                "--runtime-env-json",
                '{"excludes": [".git", "test-artifacts"]}',
                "--",
                "python",
                "-m",
                "jobs.sweep",
                "--config",
                "jobs/configs/tiny.toml",
                "--out",
                str(out),
                "--no-postprocess",
            ],
            cwd=REPO,
            env=env,
            text=True,
            capture_output=True,
            timeout=400,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        assert "succeeded" in proc.stdout
        assert "ray: 2 CPUs" in proc.stdout and "1 node(s)" in proc.stdout
        for name in ("z2", "z3"):
            assert runs.read_json(out / "tiny" / "trials" / name / "status.json")["status"] == "completed"
    finally:
        end(ray_pids() - before)
