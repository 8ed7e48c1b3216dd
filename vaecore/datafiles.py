"""Finding and verifying the Fashion-MNIST files (the standard library and numpy only): what a
node of the cluster checks before the sweep starts, without importing torch. vaecore/data.py
loads them as tensors."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from vaecore import runs

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

# name -> (SHA-256 of the decompressed IDX file, its size in bytes, expected shape)
FILES = {
    "train-images-idx3-ubyte": (
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        47040016,
        (60000, 28, 28),
    ),
    "train-labels-idx1-ubyte": (
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        60008,
        (60000,),
    ),
    "t10k-images-idx3-ubyte": (
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        7840016,
        (10000, 28, 28),
    ),
    "t10k-labels-idx1-ubyte": (
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        10008,
        (10000,),
    ),
}
HOW_TO_PROVIDE = (
    "provide the data with --set data.dir=DIR, $FASHION_MNIST_DIR, "
    "or `apt-get install dataset-fashion-mnist` (or --set data.download=true with internet)"
)


class DataError(RuntimeError):
    """Missing or corrupt dataset files; the message is one line that says how to fix it."""


# --- finding ------------------------------------------------------------------------------------


def candidates(explicit: str = "") -> list[Path]:
    """Folders to search, in the documented order."""
    out = []
    if explicit:
        out.append(Path(explicit))
    if os.environ.get("FASHION_MNIST_DIR"):
        out.append(Path(os.environ["FASHION_MNIST_DIR"]))
    out.append(DEBIAN_DIR)
    return [p for base in out for p in (base, base / "FashionMNIST" / "raw")]


def file_in(folder: Path, name: str) -> Path | None:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def find(explicit: str = "", download: bool = False) -> Path:
    """The first folder holding all four IDX files (gzipped or plain)."""
    if explicit and not Path(explicit).is_dir():
        raise DataError(f"data.dir '{explicit}' is not a folder; {HOW_TO_PROVIDE}")
    for folder in candidates(explicit):
        if all(file_in(folder, name) for name in FILES):
            return folder
    if download:
        return _download(Path(explicit or "data"))
    searched = ", ".join(str(p) for p in candidates(explicit)[::2])
    raise DataError(f"Fashion-MNIST not found in {searched}; {HOW_TO_PROVIDE}")


def _download(root: Path) -> Path:
    from torchvision.datasets import FashionMNIST as TV

    TV(str(root), train=True, download=True)
    TV(str(root), train=False, download=True)
    return root / "FashionMNIST" / "raw"


# --- verifying ----------------------------------------------------------------------------------


def read_idx(path: Path) -> tuple[np.ndarray, bytes]:
    """Parse one IDX file into (array, its raw bytes); DataError names the file if malformed."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({e}); {HOW_TO_PROVIDE}") from None
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number); {HOW_TO_PROVIDE}")
    if raw[2] != 0x08:
        raise DataError(f"{path}: IDX dtype 0x{raw[2]:02x}, expected 0x08 (uint8); {HOW_TO_PROVIDE}")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    payload = raw[4 + 4 * ndim :]
    if len(payload) != int(np.prod(dims)):
        raise DataError(
            f"{path}: truncated or padded: header says {dims} = {int(np.prod(dims))} bytes, "
            f"file has {len(payload)}; {HOW_TO_PROVIDE}"
        )
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims), raw


def check(name: str, path: Path, array: np.ndarray, raw: bytes) -> None:
    want_hash, _, want_shape = FILES[name]
    if array.shape != want_shape:
        raise DataError(f"{path}: shape {array.shape}, expected {want_shape}; {HOW_TO_PROVIDE}")
    if name.endswith("labels-idx1-ubyte") and array.max() > 9:
        raise DataError(f"{path}: label {array.max()} outside 0..9; {HOW_TO_PROVIDE}")
    if hashlib.sha256(raw).hexdigest() != want_hash:
        raise DataError(f"{path}: SHA-256 mismatch (corrupt or not Fashion-MNIST); {HOW_TO_PROVIDE}")


def _stamp_path(folder: Path) -> Path:
    """Where we remember a successful verification: the user cache, keyed on the folder."""
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    return runs.cache_dir() / f"verified-{key}.json"


def _fingerprint(folder: Path) -> dict[str, list[float]]:
    out = {}
    for name in FILES:
        st = file_in(folder, name).stat()
        out[name] = [st.st_size, st.st_mtime_ns]
    return out


def _remember(folder: Path) -> None:
    """Note that this folder's files verified (a stamp in the user cache)."""
    stamp, fingerprint = _stamp_path(folder), _fingerprint(folder)
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        tmp = stamp.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(fingerprint))
        tmp.replace(stamp)
    except OSError:
        pass  # an unwritable cache only costs a re-hash next time


def _is_trusted(folder: Path) -> bool:
    """True when this folder's four files were verified before and have not changed since."""
    stamp = _stamp_path(folder)
    return stamp.is_file() and json.loads(stamp.read_text()) == _fingerprint(folder)


def verify(explicit: str = "", download: bool = False) -> Path:
    """The dataset's folder (found as `find` does), its files checked unless a stamp vouches for them."""
    folder = find(explicit, download)
    if not _is_trusted(folder):
        for name in FILES:
            path = file_in(folder, name)
            check(name, path, *read_idx(path))
        _remember(folder)
    return folder
