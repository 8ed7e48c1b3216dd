"""README's "an existing Ray cluster" block, as a new user runs it: extracted from README.md and
run verbatim by bash on a fresh host (a network namespace: its own loopback, so Ray's default
ports are free; tests/hosts.py) with an empty HOME, so no token or Ray state from before helps."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

import pytest
from hosts import Hosts, HostsUnavailable

from vaecore import runs

from procs import REPO

pytestmark = pytest.mark.integration


def readme_block() -> str:
    """The lines of README's "# 2. an existing Ray cluster" item, up to item 3."""
    text = (REPO / "README.md").read_text()
    found = re.search(r"^# 2\. an existing Ray cluster.*?(?=^# 3\. )", text, re.S | re.M)
    assert found, "README.md has no '# 2. an existing Ray cluster' block"
    return found.group(0)


def test_the_readme_cluster_block_runs_as_written_on_a_fresh_machine(tmp_path):
    block = readme_block()
    assert "ray start --head" in block and "ray job submit" in block
    home = tmp_path / "home"
    home.mkdir()
    ray_tmp = tempfile.mkdtemp(prefix="rm", dir=os.environ["RAY_TMPDIR"])  # short: Ray's socket paths
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "RAY_TMPDIR": ray_tmp,  # Ray's state beside the test's, not in the machine's /tmp/ray
        "TMPDIR": ray_tmp,  # and what `ray stop` leaves of its processes' temp files (a pymp-* folder)
        "RAY_USAGE_STATS_ENABLED": "0",
        "VAE_CACHE_DIR": os.environ["VAE_CACHE_DIR"],
        "TORCH_HOME": os.environ["TORCH_HOME"],
    }
    try:
        hosts = Hosts(["fresh"])
    except HostsUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    with hosts:
        proc = hosts.run("fresh", ["bash", "-e", "-c", block], cwd=REPO, env=env, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "succeeded" in proc.stdout and "ray: 2 CPUs, 0 GPUs on 1 node(s)" in proc.stdout, out[-4000:]
    token = home / ".ray" / "auth_token"
    assert token.is_file() and token.stat().st_mode & 0o077 == 0, "the token is readable by others"
    manifest = runs.read_json(home / "runs" / "tiny" / "manifest.json")
    assert {t["status"] for t in manifest["trials"].values()} == {"completed"}
    assert (
        subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.count(hosts.tag) == 0
    )
