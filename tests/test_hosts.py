"""tests/hosts.py, the namespaced-host helper: each host has its own name and address, the hosts
reach each other and the root namespace over their bridge only, and the helper leaves no
namespace, link or process behind: after close(), after Ctrl+C, and after a SIGKILL (the next
run removes that)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hosts import Hosts, HostsUnavailable, our_names

pytestmark = pytest.mark.integration
TESTS = Path(__file__).resolve().parent

ECHO = textwrap.dedent(
    """
    import socket, sys
    s = socket.create_server(("0.0.0.0", 7000))
    print("listening", flush=True)
    for _ in range(int(sys.argv[1])):
        c, _ = s.accept(); c.sendall(socket.gethostname().encode()); c.close()
    """
)
ASK = "import socket, sys; print(socket.create_connection((sys.argv[1], 7000), timeout=2).recv(99).decode())"


def make(names: list[str]) -> Hosts:
    try:
        return Hosts(names, grace=1.0)  # the stubborn process below waits out the grace
    except HostsUnavailable as e:
        pytest.fail(str(e), pytrace=False)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_hosts_have_their_own_name_and_address_and_leave_nothing_behind(tmp_path):
    before = our_names()
    hosts = make(["h1", "h2"])
    try:
        assert hosts.run("h1", ["hostname"]).stdout.strip() == "h1"
        server = hosts.popen("h2", [sys.executable, "-c", ECHO, "2"], stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "listening"
        by_name = hosts.run("h1", [sys.executable, "-c", ASK, "h2"], timeout=30)  # /etc/hosts of the hosts
        assert by_name.stdout.strip() == "h2", by_name.stderr
        root = subprocess.run([sys.executable, "-c", ASK, hosts.addr("h2")], capture_output=True, text=True)
        assert root.stdout.strip() == "h2", root.stderr  # the root namespace, over the bridge
        # A folder hidden from h2 only; a pulled cable.
        (tmp_path / "seen").write_text("x")
        hosts.hide("h2", tmp_path)
        assert hosts.run("h1", ["ls", str(tmp_path)]).stdout.split() == ["seen"]
        assert hosts.run("h2", ["ls", str(tmp_path)]).stdout.split() == []
        hosts.link("h2", up=False)
        cut = hosts.run("h1", [sys.executable, "-c", ASK, "h2"], timeout=30)
        assert cut.returncode != 0
        # Processes that outlive their starter: one ignoring SIGTERM, one detached with setsid.
        hosts.popen("h2", ["sh", "-c", "trap '' TERM; setsid sleep 300 & exec sleep 301"])
        deadline = time.time() + 10
        while len(spawned := hosts.pids("h2")) < 3:  # holder and the two sleeps (the server is done)
            assert time.time() < deadline, spawned
        pids = hosts.pids("h1") + spawned
        links = [hosts.bridge, hosts.veth("h1"), hosts.veth("h2")]
    finally:
        hosts.close()
    assert not any(alive(p) for p in pids)
    assert our_names() == before, "namespaces or links left behind"
    listed = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert not any(f" {link}:" in listed or f" {link}@" in listed for link in links)
    assert (tmp_path / "seen").is_file()  # hiding never touched the folder itself


HOLD = textwrap.dedent(
    """
    import signal, sys, time
    # Ctrl+C raises KeyboardInterrupt even where a shell started us with SIGINT ignored (a
    # background job of a non-interactive shell is, and Python then keeps it ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.path.insert(0, sys.argv[1])
    from hosts import Hosts
    h = Hosts(["x"])
    p = h.popen("x", ["sleep", "300"])
    print(h.netns("x"), p.pid, h.folder, flush=True)
    time.sleep(120)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_or_killed_owner_leaves_nothing_after_the_next_start(sig):
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(TESTS)], stdout=subprocess.PIPE, text=True)
    netns, pid, folder = child.stdout.readline().split()
    os.kill(child.pid, sig)
    child.wait(timeout=60)
    left = [Path("/var/run/netns", netns).exists(), alive(int(pid)), Path(folder).exists()]
    if sig == signal.SIGINT:  # Ctrl+C: the helper closes its hosts at exit
        assert left == [False, False, False]
    else:  # SIGKILL: nothing ran; the next Hosts() removes what the dead owner left
        assert left == [True, True, True]
        make(["y"]).close()
        assert [Path("/var/run/netns", netns).exists(), alive(int(pid)), Path(folder).exists()] == [False] * 3


@pytest.mark.parametrize("why", ["not root", "no ip"])
def test_where_namespaces_cannot_be_made_the_reason_is_one_line(why):
    code = f"import sys; sys.path.insert(0, {str(TESTS)!r}); import hosts; hosts.require()"
    if why == "not root":
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code]
        env = os.environ
    else:
        argv, env = [sys.executable, "-c", code], {**os.environ, "PATH": "/nonexistent"}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    last = proc.stderr.strip().splitlines()[-1]
    want = "need root" if why == "not root" else "need `ip`: apt-get install iproute2"
    assert proc.returncode == 1 and last.startswith("hosts.HostsUnavailable: ") and want in last, proc.stderr
