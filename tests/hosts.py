"""Separate hosts on one machine, for tests: network, hostname and mount namespaces on a bridge.

    with Hosts(["n1", "n2"]) as hosts:
        hosts.addr("n1")                      # "10.88.K.1" (K: the first 10.88.K.0/24 free here)
        hosts.run("n2", ["hostname"])         # subprocess.run inside n2: prints "n2"
        proc = hosts.popen("n1", [...])       # a process inside n1, ended at close()
        hosts.hide("n2", folder)              # n2 now sees an empty tmpfs at `folder`
        hosts.link("n2", up=False)            # n2's cable is pulled

Each host is a network namespace joined by a veth pair to this run's bridge, which alone carries
its private /24 (the root namespace is .254 there, host i is .i); no host has a route anywhere
else, so nothing leaves the machine. A holder process (`sleep infinity` under `unshare --uts
--mount`) gives the host its own hostname and a mount namespace in which /etc/hosts lists every
host (a host's name resolves to its address, as on a cluster) and in which folders can be hidden.
Commands run inside with `nsenter -t HOLDER --net --uts --mount` (not `ip netns exec`, which
mounts a fresh /sys without cgroups, where slurmd fails). The hosts share the filesystem, /tmp
included, as cluster nodes with a shared scratch TMPDIR do.

Every name starts with "vth<pid of the owning process>"; close() (also on an exception, and at
interpreter exit) ends every process inside each namespace by pid (`ip netns pids`: SIGTERM, a
grace period, SIGKILL), deletes the namespaces (their veth ends go with them), the bridge and the
run's folder. A new Hosts first removes the same way what owners that no longer run left behind
(a killed test run: namespaces, links, folders), and only that.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

NETNS_DIR = Path("/var/run/netns")
NAME = re.compile(r"^vth(\d+)[a-z]")  # every namespace and link this helper makes
_instances = itertools.count()
_open: list[Hosts] = []


class HostsUnavailable(RuntimeError):
    """Namespaces cannot be made here; the message says why, in one line."""


def require() -> None:
    """Raise HostsUnavailable (one line) unless this process can make namespaced hosts."""
    if os.geteuid() != 0:
        raise HostsUnavailable("namespaced hosts need root (network namespaces, veth, a bridge)")
    for tool, package in (("ip", "iproute2"), ("nsenter", "util-linux"), ("unshare", "util-linux")):
        if shutil.which(tool) is None:
            raise HostsUnavailable(f"namespaced hosts need `{tool}`: apt-get install {package}")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise HostsUnavailable(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def end_pids(pids: list[int], grace: float = 5.0) -> None:
    """SIGTERM, wait up to `grace` s, then SIGKILL: only these pids."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.time() + grace
        while time.time() < deadline and any(_alive(p) and not _zombie(p) for p in pids):
            time.sleep(0.1)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def netns_pids(ns: str) -> list[int]:
    proc = _ip("netns", "pids", ns, check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit() and int(p) != os.getpid()]


def _remove_netns(ns: str, grace: float) -> None:
    end_pids(netns_pids(ns), grace)
    _ip("-n", ns, "link", "del", "eth0", check=False)  # the veth pair, now rather than later
    _ip("netns", "del", ns, check=False)


def our_names() -> tuple[list[str], list[str]]:
    """The namespaces and links (root namespace) whose names this helper uses."""
    spaces = [line.split()[0] for line in _ip("netns", "list", check=False).stdout.splitlines() if line]
    links = [
        line.split(":")[1].strip().split("@")[0]
        for line in _ip("-o", "link", "show", check=False).stdout.splitlines()
        if line.count(":") >= 2
    ]
    return [s for s in spaces if NAME.match(s)], [li for li in links if NAME.match(li)]


def sweep_stale() -> list[str]:
    """Remove the namespaces, links and folders of owners that no longer run; returns their names."""
    spaces, links = our_names()
    folders = [p for p in Path(tempfile.gettempdir()).glob("vth*-*") if NAME.match(p.name)]
    dead = lambda name: not _alive(int(NAME.match(name).group(1)))
    gone = []
    for name in filter(dead, spaces):
        _remove_netns(name, grace=2.0)
        gone.append(name)
    for name in filter(dead, links):
        _ip("link", "del", name, check=False)
        gone.append(name)
    for folder in (f for f in folders if dead(f.name)):
        shutil.rmtree(folder, ignore_errors=True)
        gone.append(folder.name)
    return gone


def _free_subnet() -> str:
    used = _ip("-o", "-4", "addr", "show", check=False).stdout
    for k in range(256):
        if f" 10.88.{k}." not in used:
            return f"10.88.{k}"
    raise HostsUnavailable("no free 10.88.K.0/24 on this machine")


@contextlib.contextmanager
def _one_maker():
    """Hosts are made one at a time across processes (scripts/test.sh runs two pytest workers):
    the sweep of dead owners' leftovers and the pick of a free /24 until the bridge holds it must not
    interleave. An exclusive lock on this file, released when the block ends (or its process dies)."""
    with open(__file__) as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


class Hosts:
    """N namespaced hosts on a bridge; a context manager (see the module's docstring)."""

    def __init__(self, names: list[str], grace: float = 5.0):
        require()
        with _one_maker():
            self._start(names, grace)

    def _start(self, names: list[str], grace: float) -> None:
        sweep_stale()
        self.names, self.grace = list(names), grace
        self.tag = f"vth{os.getpid()}{chr(ord('a') + next(_instances) % 26)}"
        self.bridge = f"{self.tag}br"
        self.net = _free_subnet()
        self.folder = Path(tempfile.mkdtemp(prefix=f"{self.tag}-"))
        self.holders: dict[str, int] = {}
        self.procs: list[subprocess.Popen] = []
        self.hidden: dict[str, list[str]] = {n: [] for n in self.names}
        _open.append(self)
        try:
            self._make()
        except BaseException:
            self.close()
            raise

    # --- addresses and names -----------------------------------------------------------------

    def addr(self, name: str) -> str:
        return f"{self.net}.{self.names.index(name) + 1}"

    @property
    def bridge_addr(self) -> str:
        """The root namespace's address on the bridge (where a slurmctld there listens)."""
        return f"{self.net}.254"

    def netns(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def veth(self, name: str) -> str:
        return f"{self.tag}{self.names.index(name)}"

    # --- making and removing ----------------------------------------------------------------

    def _make(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.bridge_addr}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        lines = ["127.0.0.1 localhost", f"{self.bridge_addr} {socket.gethostname()}"]
        hosts_file = self.folder / "hosts"
        hosts_file.write_text("\n".join(lines + [f"{self.addr(n)} {n}" for n in self.names]) + "\n")
        for name in self.names:
            ns, veth = self.netns(name), self.veth(name)
            _ip("netns", "add", ns)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", veth, "master", self.bridge)
            _ip("link", "set", veth, "up")
            _ip("-n", ns, "addr", "add", f"{self.addr(name)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            self.holders[name] = self._holder(name, hosts_file)

    def _holder(self, name: str, hosts_file: Path) -> int:
        script = 'hostname "$0" && mount --bind "$1" /etc/hosts && exec sleep infinity'
        argv = ["nsenter", f"--net={NETNS_DIR / self.netns(name)}", "unshare", "--uts", "--mount"]
        proc = subprocess.Popen(
            [*argv, "--propagation", "private", "sh", "-c", script, name, str(hosts_file)],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append(proc)
        deadline = time.time() + 10
        while _comm(proc.pid) != "sleep":
            if proc.poll() is not None or time.time() > deadline:
                raise HostsUnavailable(f"could not start the holder of host {name} (exit {proc.poll()})")
            time.sleep(0.02)
        return proc.pid

    def close(self) -> None:
        """End every process in the hosts (by pid), delete namespaces, bridge and folder."""
        for name in self.names:
            _remove_netns(self.netns(name), self.grace)
            _ip("link", "del", self.veth(name), check=False)  # else it goes later, asynchronously
        for proc in self.procs:
            with contextlib.suppress(Exception):
                proc.kill()
                proc.wait(timeout=5)
        _ip("link", "del", self.bridge, check=False)
        shutil.rmtree(self.folder, ignore_errors=True)
        if self in _open:
            _open.remove(self)

    def __enter__(self) -> Hosts:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- running inside ---------------------------------------------------------------------

    def enter(self, name: str, cwd: str | Path | None = None) -> list[str]:
        """The argv prefix that runs a command inside host `name` (in `cwd`, default ours)."""
        wd = Path(cwd or os.getcwd())
        return ["nsenter", "-t", str(self.holders[name]), "--net", "--uts", "--mount", f"--wd={wd}"]

    def run(self, name: str, argv: list[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        """subprocess.run inside host `name`; text output captured unless told otherwise."""
        kw.setdefault("capture_output", "stdout" not in kw)
        kw.setdefault("text", True)
        return subprocess.run([*self.enter(name, kw.pop("cwd", None)), *argv], timeout=timeout, **kw)

    def popen(self, name: str, argv: list[str], **kw) -> subprocess.Popen:
        """subprocess.Popen inside host `name`; ended (by pid) at close() if still running."""
        proc = subprocess.Popen([*self.enter(name, kw.pop("cwd", None)), *argv], **kw)
        self.procs.append(proc)
        return proc

    def pids(self, name: str) -> list[int]:
        """Every process inside host `name` (its holder included)."""
        return netns_pids(self.netns(name))

    def end(self, name: str, keep_holder: bool = True) -> None:
        """End every process inside host `name` by pid (the holder stays unless told)."""
        end_pids([p for p in self.pids(name) if not (keep_holder and p == self.holders[name])], self.grace)

    # --- faults -----------------------------------------------------------------------------

    def link(self, name: str, up: bool) -> None:
        """Plug in or pull host `name`'s cable (its veth end on the bridge)."""
        _ip("link", "set", self.veth(name), "up" if up else "down")

    def hide(self, name: str, folder: Path) -> None:
        """Host `name` sees an empty tmpfs at `folder` (another folder there); the others do not."""
        mount = ["mount", "-t", "tmpfs", "-o", "size=1m", "vth-hidden", str(folder)]
        proc = self.run(name, mount, timeout=30)
        if proc.returncode != 0:
            raise HostsUnavailable(f"cannot hide {folder} from {name}: {proc.stderr.strip()}")
        self.hidden[name].append(str(folder))

    def unhide(self, name: str) -> None:
        for folder in reversed(self.hidden[name]):
            self.run(name, ["umount", folder], timeout=30)
        self.hidden[name] = []


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@atexit.register
def _close_all() -> None:
    for hosts in list(_open):
        hosts.close()
