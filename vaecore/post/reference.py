"""Real-data statistics in the reference classifier's feature space, computed once and cached.

The FID reference (the test images' feature mean and covariance, and its square root) and the
floor FID (real train images against the test images) depend only on the classifier's weights
and on the images, not on any trial. So they are computed once, kept in runs.cache_dir() under
a key made of (weights hash, images hash), and reused by every trial of every sweep; a process
(a Ray worker running several trials) also keeps them in memory. A missing, corrupt or foreign
cache file is recomputed and rewritten, never an error.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from torch import nn

from vaecore import runs
from vaecore.model import torch_load, torch_save
from vaecore.post import metrics
from vaecore.post.classifier import predict
from vaecore.post.metrics import RealStats

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the cached fields change; part of the key
_MEMO: dict[str, RealStats] = {}  # key -> stats: trials run by one process share them


def floor_images(train_x: torch.Tensor, n: int) -> torch.Tensor:
    """A fixed random set of n train images (seed 0): the real side of the floor FID."""
    idx = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(0))[:n]
    return train_x[idx]


def cache_key(clf: nn.Module, test_x: torch.Tensor, floor_x: torch.Tensor) -> str:
    """sha256 over the classifier's weights and the exact images (shapes and bytes)."""
    # type: an Autocast-wrapped (bf16) classifier's features differ a little: cached apart
    h = hashlib.sha256(f"real-stats-{FORMAT}-{type(clf).__name__}".encode())
    for name, t in clf.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    for x in (test_x, floor_x):
        h.update(str(tuple(x.shape)).encode() + str(x.dtype).encode())
        h.update(x.contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def cache_path(key: str) -> Path:
    return runs.cache_dir() / "fid_reference" / f"{key}.pt"


def compute(clf: nn.Module, test_x: torch.Tensor, floor_x: torch.Tensor, key: str) -> RealStats:
    real, _ = predict(clf, test_x)
    floor, _ = predict(clf, floor_x)
    mean, cov = metrics.gaussian(real)
    half = metrics.sqrt_psd(cov)
    return RealStats(key, mean, cov, half, metrics.frechet(mean, cov, half, *metrics.gaussian(floor)))


def real_stats(clf: nn.Module, test_x: torch.Tensor, floor_x: torch.Tensor) -> RealStats:
    """The cached statistics for this classifier and these images, computed on the first call."""
    key = cache_key(clf, test_x, floor_x)
    if key in _MEMO:
        return _MEMO[key]
    stats = _read(cache_path(key), key)
    if stats is None:
        stats = compute(clf, test_x, floor_x, key)
        try:
            torch_save({"format": FORMAT, **stats.__dict__}, cache_path(key))
        except OSError as e:  # a read-only cache still gives right numbers, just not reused
            log.warning("could not cache the FID reference in %s: %s", cache_path(key), e)
    _MEMO[key] = stats
    return stats


def _read(path: Path, key: str) -> RealStats | None:
    """The cached stats, or None when the file is missing, unreadable or not what the key says."""
    if not path.is_file():
        return None
    try:
        d = torch_load(path)
        stats = RealStats(d["key"], d["mean"], d["cov"], d["cov_half"], float(d["floor_fid"]))
        f = stats.mean.shape[0]
        ok = (
            d["format"] == FORMAT
            and stats.key == key
            and stats.cov.shape == stats.cov_half.shape == (f, f)
            and all(bool(t.isfinite().all()) for t in (stats.mean, stats.cov, stats.cov_half))
        )
    except Exception as e:  # a torn or foreign file raises many types; all mean "recompute"
        log.warning("ignoring the unreadable FID reference cache %s (%s)", path, type(e).__name__)
        return None
    return stats if ok else None
