"""Finding, verifying and loading Fashion-MNIST as in-memory uint8 tensors."""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vaecore import runs

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
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


@dataclass(frozen=True)
class FashionMNIST:
    train_x: torch.Tensor  # (60000, 28, 28) uint8
    train_y: torch.Tensor  # (60000,) int64
    test_x: torch.Tensor  # (10000, 28, 28) uint8
    test_y: torch.Tensor  # (10000,) int64
    source: str  # folder the files came from


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 28, 28) -> float (B, 1, 28, 28) in [0, 1]; kept as uint8 until here because it is 4x
    smaller. Float images (B, 1, 28, 28) pass through, so callers may hand in either."""
    return x.unsqueeze(1).float().div_(255.0) if x.dtype == torch.uint8 else x


def to_device(ds: FashionMNIST, device: torch.device | str) -> FashionMNIST:
    """The dataset with its tensors on `device`, still uint8 (all of it is 55 MB): batches are then
    indexed and converted there, with no host copy per step. A no-op for tensors already there."""
    moved = [t.to(device) for t in (ds.train_x, ds.train_y, ds.test_x, ds.test_y)]
    return FashionMNIST(*moved, source=ds.source)


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


# --- loading ------------------------------------------------------------------------------------


def load(explicit: str = "", download: bool = False, verify: bool = True) -> FashionMNIST:
    """Find, verify (once per file version) and load the whole dataset into memory.

    verify=False skips the hashes: for Ray workers, whose driver already verified the files.
    """
    folder = find(explicit, download)
    stamp = _stamp_path(folder)
    trusted = not verify or (stamp.is_file() and json.loads(stamp.read_text()) == _fingerprint(folder))
    arrays = {}
    for name in FILES:
        path = file_in(folder, name)
        array, raw = read_idx(path)
        if not trusted:
            check(name, path, array, raw)
        arrays[name] = torch.from_numpy(array.copy())
    if not trusted:
        _remember(stamp, _fingerprint(folder))
    return FashionMNIST(
        train_x=arrays["train-images-idx3-ubyte"],
        train_y=arrays["train-labels-idx1-ubyte"].long(),
        test_x=arrays["t10k-images-idx3-ubyte"],
        test_y=arrays["t10k-labels-idx1-ubyte"].long(),
        source=str(folder),
    )


def _remember(stamp: Path, fingerprint: dict) -> None:
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        tmp = stamp.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(fingerprint))
        tmp.replace(stamp)
    except OSError:
        pass  # an unwritable cache only costs a re-hash next time


def per_class(x: torch.Tensor, y: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n images of each class, in dataset order (deterministic); n = 0 keeps all."""
    if n <= 0:
        return x, y
    keep = torch.cat([torch.nonzero(y == c).flatten()[:n] for c in range(10)]).sort().values
    return x[keep], y[keep]


def subset(ds: FashionMNIST, train_per_class: int, test_per_class: int) -> FashionMNIST:
    train_x, train_y = per_class(ds.train_x, ds.train_y, train_per_class)
    test_x, test_y = per_class(ds.test_x, ds.test_y, test_per_class)
    return FashionMNIST(train_x, train_y, test_x, test_y, ds.source)


def load_for(cfg_data, verify: bool = True) -> FashionMNIST:
    """Load and subset as a DataConfig says."""
    ds = load(cfg_data.dir, cfg_data.download, verify)
    return subset(ds, cfg_data.train_per_class, cfg_data.test_per_class)


@functools.lru_cache(maxsize=4)
def cached(cfg_data) -> FashionMNIST:
    """load_for, once per process and DataConfig (on the CPU): Tune reuses a trial's process for
    the next trial with the same resources, and a one-worker trial post-processes in the process
    that trained it, from the same copy. Verified as load does: after the sweep's start checked
    each node's copy (distributed.check_nodes), that is a stat of the four files."""
    return load_for(cfg_data)
