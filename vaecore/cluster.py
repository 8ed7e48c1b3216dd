"""What the sweep driver settles before Ray is imported: is the cluster there, and the embedded
Ray's private token (Ray reads RAY_AUTH_MODE once, when it is first imported); and the check each
node of a joined cluster runs before the sweep starts (torch-free, so its Ray task starts fast)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import tempfile
from pathlib import Path

from vaecore import datafiles
from vaecore.config import ConfigError


def check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast on a HOST:PORT nobody listens on: ray.init would retry it for minutes."""
    if address and address.startswith("ray://"):
        raise ConfigError(
            "ray:// (Ray Client) addresses are not supported: Ray Train's engine does not run through "
            "Ray Client; submit the job with `ray job submit`, or pass the cluster's HOST:PORT or auto"
        )
    if not address or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as e:
        raise ConnectionError(
            f"no Ray cluster answers at {address} ({e}); start one with `ray start --head`, "
            f"check the address, or leave out --address to run on a local Ray"
        ) from None


@contextlib.contextmanager
def private_token():
    """Token auth for the embedded local Ray, with a fresh token that only this user can read.

    Left to itself, Ray would use ~/.ray/auth_token, which it writes world-readable. Set before
    Ray is imported (it reads RAY_AUTH_MODE then); Ray's own processes inherit the environment.
    """
    folder = Path(tempfile.mkdtemp(prefix="vae-ray-auth-"))  # mode 700
    token = folder / "token"
    fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, secrets.token_hex(32).encode())
    os.close(fd)
    saved = {k: os.environ.pop(k, None) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_TOKEN")}
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    try:
        yield token
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v
        shutil.rmtree(folder, ignore_errors=True)


def node_problem(address: str, marker: str, data_dirs: list[tuple[str, bool]]) -> str:
    """Run on the node at `address` (a Ray task): '' or what is wrong there, in one line. The sweep
    folder holding `marker` must be the one the driver writes, and every dataset (data.dir,
    data.download) must verify with the node's own copy."""
    node = f"node {socket.gethostname()} ({address})"
    if not Path(marker).is_file():
        where = Path(marker).parent
        return f"{node} cannot see {where}: --out must be on storage shared by every node of the Ray cluster"
    try:
        for folder, download in data_dirs:
            datafiles.verify(folder, download)
    except datafiles.DataError as e:
        return f"{node}: {e}"
    return ""
