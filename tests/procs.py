"""Test helpers: write sweep files, run the jobs, free ports, find and end processes we started."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vaecore import config, runs

REPO = Path(__file__).resolve().parent.parent


# A two-worker DDP trial's settings: the exact-resume test (test_reliability_ray.py) and the two-host
# test (test_two_hosts.py) train it; 600 training and 100 test images, batches of 32, two epochs.
DDP_SET = {
    "data.train_per_class": 60,
    "data.test_per_class": 10,
    "train.batch_size": 32,
    "train.epochs": 2,
    "resources.workers": 2,
    "resources.cpus_per_worker": 1,
}


def write_sweep(
    path: Path,
    name: str,
    base: str = "default",
    set: dict[str, Any] | None = None,  # the sweep file's [set] table
    grid: dict[str, list[Any]] | None = None,
    postprocess: dict[str, Any] | None = None,
    description: str = "",
) -> Path:
    """A sweep file at `path` (folders made), written by the library's one TOML writer."""
    table = {"name": name, "base": base, "description": description}
    table |= {"set": set or {}, "grid": grid or {}, "postprocess": postprocess or {}}
    runs.atomic_write_text(Path(path), config.dump_toml(table))
    return Path(path)


def job(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m <args>` from the repo root; output captured as text; never hangs the suite."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, env=full_env, text=True, capture_output=True, timeout=timeout
    )


def free_port() -> int:
    """A TCP port that was free a moment ago (the OS picks it; nothing else listens there now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def own_pids(folder: Path) -> set[int]:
    """Processes started for `folder`: its path is in their environment or command line.

    Every process the suite starts (directly, or by Ray or Slurm on its behalf) inherits
    $RAY_TMPDIR/$VAE_CACHE_DIR under the suite's own temp folder, so this finds them and only them.
    """
    needle = str(folder).encode()
    out = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if any(e.endswith(b"=" + needle) or (b"=" + needle + b"/") in e for e in env) or (
            needle + b"/" in cmd
        ):
            out.add(int(proc.name))
    return out


def end(pids: set[int], grace: float = 5.0) -> None:
    """SIGTERM, wait, then SIGKILL the given processes (only those, never by name)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.time() + grace
        while time.time() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.2)


@contextlib.contextmanager
def local_slurm(folder: str, env: dict):
    """The project's Slurm (scripts/slurm/local_cluster.sh, configured by env's LOCAL_SLURM_*) in
    `folder` for the block; yields its SLURM_CONF. Stopped at the end, started or not."""
    script = ["bash", str(REPO / "scripts" / "slurm" / "local_cluster.sh")]
    try:
        start = [*script, "start", folder]
        proc = subprocess.run(start, capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 0, proc.stderr
        yield proc.stdout.strip().removeprefix("export SLURM_CONF=")
    finally:
        subprocess.run([*script, "stop", folder], capture_output=True, timeout=120, env=env)
