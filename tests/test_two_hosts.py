"""Ray across two real hosts (tests/hosts.py: network, hostname and mount namespaces on a bridge):
a head on n1 and a worker node on n2, each with its own address; `ray job submit` from this
(the root) namespace to n1's job server; a DDP trial whose two ranks are on the two hosts; a node
that cannot see --out; a node whose link goes down mid-trial.

One cluster for the module. The link test breaks n2 and runs last; a test after it (another
order) brings n2 back first (Cluster.ready)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from hosts import Hosts, HostsUnavailable

from vaecore import model, runs

from procs import DDP_SET, REPO, write_sweep

pytestmark = pytest.mark.integration
PORT, DASHBOARD = 6379, 8265  # each host has its own ports: nothing else listens in a new namespace
EXCLUDES = json.dumps({"excludes": [".git", "test-artifacts", ".venv"]})


class Cluster:
    """A Ray head on n1 and a worker node on n2; the environment a client of it needs."""

    def __init__(self, hosts: Hosts, folder: Path):
        self.hosts, self.folder, self.broken, self.starts = hosts, folder, False, 0
        self.head = hosts.addr("n1")
        self.address = f"{self.head}:{PORT}"
        self.env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "PYTHONUNBUFFERED": "1",
            "TMPDIR": str(folder),  # what `ray stop` leaves of its processes' temp files: ours
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": os.urandom(16).hex(),
            # a lost node is declared dead after ~3 s (Ray's default: ~30 s), and a node that
            # lost the head stops after 5 s (default 60 s): the link test's waits
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_timeout_ms": "1000",
            "RAY_health_check_failure_threshold": "3",
            "RAY_gcs_rpc_server_reconnect_timeout_s": "5",
        }

    def start(self, name: str) -> None:
        args = ["--node-ip-address", self.hosts.addr(name), "--num-cpus", "1", "--disable-usage-stats"]
        self.starts += 1
        args += ["--temp-dir", str(self.folder / f"{name}-{self.starts}")]  # hosts share /tmp
        if name == "n1":
            args += ["--head", "--port", str(PORT), "--include-dashboard", "true"]
            args += ["--dashboard-host", self.head, "--dashboard-port", str(DASHBOARD)]
        else:
            args += ["--address", self.address]
        proc = self.hosts.run(name, ["ray", "start", *args], env=self.env, timeout=120)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    def nodes(self) -> list[str]:
        """The addresses of the alive nodes, as the head sees them."""
        code = "import ray, json, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
        code += "print(json.dumps([n['NodeManagerAddress'] for n in ray.nodes() if n['Alive']]))"
        proc = self.hosts.run("n1", [sys.executable, "-c", code, self.address], env=self.env, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return sorted(json.loads(proc.stdout.strip().splitlines()[-1]))

    def ready(self) -> None:
        """Both nodes in the cluster; after the link test, n2 plugged in again and restarted."""
        if not self.broken:
            return
        self.hosts.unhide("n2")
        self.hosts.link("n2", up=True)
        self.hosts.end("n2")
        self.start("n2")
        deadline = time.time() + 60
        while self.nodes() != sorted([self.head, self.hosts.addr("n2")]):
            assert time.time() < deadline, "n2 did not rejoin"
        self.broken = False

    def sweep(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """jobs.sweep run on n1 (a driver runs on a node of its cluster), joined to this cluster."""
        argv = [sys.executable, "-m", "jobs.sweep", *args, "--address", self.address]
        return self.hosts.run("n1", argv, env=self.env, cwd=REPO, timeout=timeout)


@pytest.fixture(scope="module")
def cluster():
    try:
        hosts = Hosts(["n1", "n2"], grace=2.0)  # a test cluster: no need to wait for a clean exit
    except HostsUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    folder = Path(tempfile.mkdtemp(prefix="th", dir=os.environ["RAY_TMPDIR"]))  # short: Ray's sockets
    try:
        c = Cluster(hosts, folder)
        c.start("n1")
        c.start("n2")
        yield c
    finally:
        hosts.close()


def test_a_ddp_trial_submitted_from_outside_has_a_rank_on_each_host_and_the_one_host_result(
    cluster, ddp_pair, tmp_path
):
    cluster.ready()
    # The exact-resume test's two-worker trial (conftest.ddp_pair: both ranks on the suite's
    # one-host head), here with a rank on each host.
    sweep = write_sweep(tmp_path / "ddp.toml", "ddp", set=DDP_SET, grid={"train.threads": [0]})
    submit = ["ray", "job", "submit", "--address", f"http://{cluster.head}:{DASHBOARD}", "--working-dir", "."]
    submit += ["--runtime-env-json", EXCLUDES, "--", "python", "-m", "jobs.sweep", "--config", str(sweep)]
    two = tmp_path / "two"
    proc = subprocess.run(
        [*submit, "--out", str(two), "--no-postprocess"],  # from the root namespace, over the bridge
        cwd=REPO,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0 and "succeeded" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "ray: 2 CPUs, 0 GPUs on 2 node(s)" in proc.stdout
    trial = two / "ddp" / "trials" / "threads0"
    status = runs.read_json(trial / "status.json")
    assert status["status"] == "completed"
    where = {(r["host"], r["address"]) for r in status["ranks"]}
    assert where == {("n1", cluster.head), ("n2", cluster.hosts.addr("n2"))}, status["ranks"]
    # half the 600 images each, and the same weights and loss on both hosts at the end
    assert [r["images"] for r in status["ranks"]] == [300, 300]
    assert len({(r["weights"], r["loss"]) for r in status["ranks"]}) == 1, status["ranks"]
    one_host, _, _ = ddp_pair
    (one,) = [d for d in one_host.glob("trials/*") if not runs.read_jsonl(d / "events.jsonl")]  # not cut
    rows = [runs.read_jsonl(d / "metrics.jsonl") for d in (trial, one)]
    assert len(rows[0]) == len(rows[1]) == 2
    for a, b in zip(*rows, strict=True):
        for key in ("loss", "recon", "kl", "test_loss", "test_elbo"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), key
    wa, wb = (model.torch_load(d / "model.pt")["model"] for d in (trial, one))
    assert all(torch.allclose(wa[k], wb[k], rtol=1e-4, atol=1e-6) for k in wa)


def test_a_node_that_cannot_see_the_output_folder_stops_the_sweep_naming_it(cluster, tmp_path):
    cluster.ready()
    out = tmp_path / "out"
    out.mkdir()
    cluster.hosts.hide("n2", out)  # n2 sees another (empty) folder there
    try:
        proc = cluster.sweep("--config", "jobs/configs/tiny.toml", "--out", str(out), "--no-postprocess")
    finally:
        cluster.hosts.unhide("n2")
    n2 = cluster.hosts.addr("n2")
    line = f"error: node n2 ({n2}) cannot see {out / 'tiny'}: --out must be on storage shared by every node"
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith(line), proc.stderr[-2000:]
    assert not list(out.glob("tiny/trials/*/status.json"))  # nothing trained


def test_a_trial_whose_host_loses_its_link_resumes_on_the_other_from_its_checkpoint(cluster, tmp_path):
    cluster.ready()
    # two epochs: the link goes down after n2's first, and the second is trained on n1
    sets = {"train.epochs": 2, "data.train_per_class": 80, "data.test_per_class": 10, "train.batch_size": 32}
    sets["resources.cpus_per_worker"] = 1
    sweep = write_sweep(tmp_path / "cut.toml", "cut", set=sets, grid={"model.latent_dim": [2, 3]})
    out, log = tmp_path / "out", tmp_path / "driver.log"
    trials = out / "cut" / "trials"
    argv = [sys.executable, "-m", "jobs.sweep", "--config", str(sweep), "--out", str(out), "--no-postprocess"]
    with open(log, "w") as f:  # one trial per host (1 CPU each)
        driver = cluster.hosts.popen(
            "n1", [*argv, "--address", cluster.address], cwd=REPO, env=cluster.env, stdout=f, stderr=f
        )
    try:
        deadline, cut = time.time() + 300, None
        while cut is None:
            assert time.time() < deadline and driver.poll() is None, log.read_text()[-3000:]
            for d in trials.glob("*"):
                if runs.read_dict(d / "status.json").get("host") == "n2" and runs.read_jsonl(
                    d / "metrics.jsonl"
                ):
                    cut = d
            time.sleep(0.2)
        cluster.broken = True
        # n2's network file system goes with its link: what n2 still writes reaches nobody
        cluster.hosts.hide("n2", out)
        cluster.hosts.link("n2", up=False)
        assert driver.wait(timeout=600) == 0, log.read_text()[-3000:]
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    text = log.read_text()
    lost = f"{cut.name}: its trial process was lost (a lost node, or killed); restarting it from its last"
    assert lost in text, text[-3000:]
    status = runs.read_json(cut / "status.json")
    assert status["status"] == "completed" and status["host"] == "n1", text[-3000:]
    assert [r["host"] for r in status["ranks"]] == ["n1"]
    assert [r["epoch"] for r in runs.read_jsonl(cut / "metrics.jsonl")] == [1, 2]  # each once
    resumed = [e for e in runs.read_jsonl(cut / "events.jsonl") if e["event"] == "resumed"]
    assert [e["epoch"] for e in resumed] == [1], text[-3000:]  # from the checkpoint n2 wrote


def test_a_worker_bigger_than_every_node_is_refused_though_the_cluster_sum_fits():
    # Found on these hosts: tiny.toml's default 2 CPUs per worker on two 1-CPU nodes passed the
    # cluster-wide check and the sweep waited forever for a node with 2 CPUs.
    from vaecore import config, distributed

    cfg = config.load("default", ["resources.cpus_per_worker=2"])
    two_small = [{"CPU": 1.0}, {"CPU": 1.0}]
    distributed.check_fits({"CPU": 2.0}, cfg)  # the sum fits
    with pytest.raises(
        config.ConfigError, match=r"needs 2 CPUs and 0 GPUs on one node .* 2 nodes has 1 CPUs"
    ):
        distributed.check_fits_a_node(two_small, cfg)
    distributed.check_fits_a_node([{"CPU": 1.0}, {"CPU": 2.0}], cfg)
    gpu = config.load("default", ["resources.cpus_per_worker=1", "resources.gpus_per_worker=1"])
    with pytest.raises(config.ConfigError, match="1 GPUs on one node"):
        distributed.check_fits_a_node([{"CPU": 4.0}, {"CPU": 1.0, "GPU": 0.0}], gpu)
    distributed.check_fits_a_node([{"CPU": 4.0}, {"CPU": 1.0, "GPU": 1.0}], gpu)
