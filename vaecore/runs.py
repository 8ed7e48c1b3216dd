"""Files every stage shares: atomic writes, tolerant JSON/JSONL readers, the cache folder, versions.

Torch-free (the gallery uses it); torch files are written and read by vaecore.model.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; others may serve the gallery
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable: without this a power loss can undo it."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems (and NFS clients) refuse fsync on a folder; nothing to do
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path, default: Any = None) -> Any:
    """The parsed file, or `default` when it is missing, unreadable, binary or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):  # UnicodeDecodeError is a ValueError
        return default


def read_dict(path: Path) -> dict:
    """A JSON object file as a dict; {} for anything else (missing, corrupt, a list)."""
    obj = read_json(path, {})
    return obj if isinstance(obj, dict) else {}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict]:
    """The object rows of a JSONL file; a torn or corrupt line (a run killed mid-write) is skipped."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, ValueError):
        return []
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def cache_dir() -> Path:
    """The one cache folder (reference classifier, dataset verification stamps): $VAE_CACHE_DIR,
    else $XDG_CACHE_HOME/vaecore, else ~/.cache/vaecore."""
    if os.environ.get("VAE_CACHE_DIR"):
        return Path(os.environ["VAE_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vaecore"


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """The versions that matter, read once per process (every status and checkpoint records them)."""
    out = {"python": platform.python_version()}
    for pkg in ("torch", "torchvision", "ray", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


@functools.lru_cache(maxsize=4)
def git_revision(where: Path | None = None) -> str:
    """The code's git commit (with '-dirty' if modified), or 'unknown' outside a checkout.

    Asked once per process: every checkpoint and status records it."""
    where = where or Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=where,
            text=True,
            capture_output=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            text=True,
            capture_output=True,
            timeout=5,
        ).stdout
        return rev + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
