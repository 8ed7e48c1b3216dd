"""torch's intra-op threads for one piece of post-processing: set, then restored."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def pinned(n: int | None):
    """torch's intra-op threads (OpenMP, and MKL's BLAS/LAPACK with them) set to n, then restored.

    A Ray task gets n = its CPUs: more threads than cores made small BLAS calls (a 128 x 128
    eigh) and the convolutions slower on a shared box. The flow and two-stage fits take n = 1:
    their small matmuls ran 1.5-15x slower on two threads (docs/BENCHMARKS.md). None leaves
    torch's default.
    """
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
