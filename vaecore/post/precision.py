"""Post-processing's inference in bf16 where this machine is faster at it: a measured choice.

Encoding, decoding and the classifier's features are inference, and on CPUs with bf16 units
(AVX-512 bf16, AMX) or on GPUs they run 1.8-3.3x faster in bf16 (measured: benchmarks/
postprocess.py, docs/BENCHMARKS.md). Only the networks run in bf16: every tensor they hand back
is fp32, so what is computed from them stays fp32 (the ELBO terms, IWAE's log-weights and its
log-sum-exp in float64, the FIDs' means, covariances and matrix square root in float64).
"""

from __future__ import annotations

import contextlib
import functools
import time

import torch
from torch import nn

from vaecore.precision import faster  # the one measured choice, shared with training

CHOICES = ("auto", "fp32", "bf16")


class Autocast(nn.Module):
    """A VAE or the reference classifier whose passes run under bf16 autocast, returning fp32."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.latent_dim = getattr(inner, "latent_dim", None)
        self.device_type = next(inner.parameters()).device.type

    def _run(self, fn, *args):
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            out = fn(*args)
        return tuple(t.float() for t in out) if isinstance(out, tuple) else out.float()

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._run(self.inner.encode, x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self._run(self.inner.decode, z)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self._run(self.inner.decode_logits, z)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(self.inner.features, x)

    def head(self, f: torch.Tensor) -> torch.Tensor:
        return self._run(self.inner.head, f)

    def forward(self, x: torch.Tensor):
        return self._run(self.inner, x)


def resolve(choice: str, model: nn.Module, batch: int = 256) -> str:
    """'fp32' or 'bf16': the choice itself, or for 'auto' the faster decode on this device (timed
    once per process for each model shape and device, twice each, the better kept: the first
    fp32 round also warms the caches up)."""
    if choice != "auto":
        return choice
    shapes = tuple(tuple(p.shape) for p in model.parameters())
    key = ("decode", shapes, str(next(model.parameters()).device))
    rates = {
        "fp32": functools.partial(_decode_rate, model, False, batch),
        "bf16": functools.partial(_decode_rate, model, True, batch),
    }
    return faster(key, lambda: rates, rounds=2)


@torch.inference_mode()
def _decode_rate(model: nn.Module, bf16: bool, batch: int, rounds: int = 3) -> float:
    """Decodes per second of `rounds` batches, after one untimed batch (warm-up)."""
    device = next(model.parameters()).device
    z = torch.randn(batch, model.latent_dim, device=device)
    ctx = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with ctx:
        model.decode(z)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(rounds):
            model.decode(z)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return rounds * batch / (time.perf_counter() - start)


def apply(precision: str, *models: nn.Module) -> tuple[nn.Module, ...]:
    """The models as they run for this precision ('fp32': unchanged; 'bf16': Autocast-wrapped)."""
    return tuple(Autocast(m) if precision == "bf16" else m for m in models)
