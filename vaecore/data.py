"""Loading Fashion-MNIST as in-memory uint8 tensors (finding and verifying the files:
vaecore/datafiles.py)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from vaecore import datafiles

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


# --- loading ------------------------------------------------------------------------------------


def load(explicit: str = "", download: bool = False, verify: bool = True) -> FashionMNIST:
    """Find, verify (once per file version) and load the whole dataset into memory.

    verify=False skips the hashes: for Ray workers, whose driver already verified the files.
    """
    folder = datafiles.verify(explicit, download) if verify else datafiles.find(explicit, download)
    arrays = {}
    for name in datafiles.FILES:
        array, _ = datafiles.read_idx(datafiles.file_in(folder, name))
        arrays[name] = torch.from_numpy(array.copy())
    return FashionMNIST(
        train_x=arrays["train-images-idx3-ubyte"],
        train_y=arrays["train-labels-idx1-ubyte"].long(),
        test_x=arrays["t10k-images-idx3-ubyte"],
        test_y=arrays["t10k-labels-idx1-ubyte"].long(),
        source=str(folder),
    )


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
    that trained it, from the same copy. Verified as load does: after the sweep's driver (and on a
    joined cluster each node, distributed.check_nodes) verified its copy, that is a stat of the four
    files."""
    return load_for(cfg_data)
