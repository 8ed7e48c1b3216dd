"""One epoch: this rank's sharded batches, the optimiser step, the divergence watch, evaluation.

The step stays on the training device: the uint8 dataset lives there (data.to_device), batches are
indexed and converted there, and the loss sums and each step's loss and gradient norm are kept
there and read once per epoch (and every CHECK_EVERY steps, to stop a diverged run early).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from vaecore.config import Config
from vaecore.data import FashionMNIST, to_float
from vaecore.losses import vae_loss


class Diverged(RuntimeError):
    """The loss or the gradients became NaN/inf; training stops with this reason."""


@dataclass
class Session:
    """Everything that changes while training one config in one process."""

    model: nn.Module  # possibly DDP-wrapped
    optimizer: torch.optim.Optimizer
    scheduler: object | None
    epoch: int = 0  # epochs completed
    history: list[dict] = field(default_factory=list)  # one metrics row per completed epoch


def unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


# --- the epoch ----------------------------------------------------------------------------------


CHECK_EVERY = 50  # steps between the host's reads of the divergence watch: each read waits for
# the device, and a diverged run wastes at most this many steps before it stops
TERMS = ("loss", "recon", "kl", "mse")  # the training terms summed per epoch, in metrics order
EVAL_TERMS = (*TERMS, "elbo")


def shard_indices(n: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> torch.Tensor:
    """This rank's image indices for one epoch, in order: its shard of a seeded permutation.

    Drawn on the CPU whatever the training device, so the order (and a resume) is the same
    everywhere. Every rank gets the same number of images (the last n % world are left out this
    epoch), so every rank takes the same number of steps and DDP's all-reduces never wait.
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g)
    per_rank = n // world
    return perm[rank * per_rank : (rank + 1) * per_rank]


def shard_batches(
    n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1, device="cpu"
) -> list[torch.Tensor]:
    """This rank's index batches for one epoch: its shard, moved to `device` once, cut into
    batch_size // world pieces."""
    order = shard_indices(n, seed, epoch, rank, world).to(device)
    return list(order.split(max(1, batch_size // world)))


def _all_reduce(sums: dict[str, float], device) -> dict[str, float]:
    if not (dist.is_available() and dist.is_initialized()):
        return sums
    t = torch.tensor(list(sums.values()), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(sums, t.tolist(), strict=True))


def gather(mine, device) -> list:
    """Every rank's `mine` in rank order; every rank must call it (an all-gather)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [mine]
    out: list = [None] * dist.get_world_size()
    with torch.cuda.device(device) if torch.device(device).type == "cuda" else contextlib.nullcontext():
        dist.all_gather_object(out, mine)  # NCCL needs the rank's own GPU current
    return out


def weights_digest(model: nn.Module) -> str:
    """A short digest of the model's parameters, bit for bit."""
    h = hashlib.sha256()
    for p in unwrap(model).parameters():
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def check_replicas(s: Session, images: int, device) -> list[dict]:
    """Each rank's training images an epoch, the digest of its final weights and its last loss
    (all-reduced), in rank order; every rank must call it. DDP keeps the replicas identical and
    every rank's metrics equal, so ranks that disagree mean a broken synchronization: the trial
    fails (RuntimeError) instead of saving one rank's model as the result."""
    loss = s.history[-1]["loss"] if s.history else None
    ranks = gather({"images": images, "weights": weights_digest(s.model), "loss": loss}, device)
    if any(r["weights"] != ranks[0]["weights"] or r["loss"] != ranks[0]["loss"] for r in ranks):
        raise RuntimeError(f"DDP ranks ended with different weights or losses: {ranks}; their sync is broken")
    return ranks


def _means(sums: dict[str, float]) -> dict[str, float]:
    n = sums.pop("n")
    return {k: v / n for k, v in sums.items()}


def as_batch(x: torch.Tensor, idx: torch.Tensor, cfg: Config) -> torch.Tensor:
    """Images x[idx] as float (B, 1, 28, 28) in [0, 1], in the model's memory format."""
    xb = to_float(x[idx])
    return xb.contiguous(memory_format=torch.channels_last) if cfg.train.channels_last else xb


def train_step(
    s: Session, xb: torch.Tensor, cfg: Config, max_norm: float
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One optimiser step on the batch; the loss terms and the gradient norm, left on the device."""
    lc = cfg.loss
    bf16 = cfg.train.precision == "bf16"
    with torch.autocast(xb.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
        logits, mu, log_var = s.model(xb)
    # The loss in fp32 whatever the precision: x5000 multipliers and the KL's sum need the bits.
    logits, mu, log_var = logits.float(), mu.float(), log_var.float()
    terms = vae_loss(xb, logits, mu, log_var, lc.likelihood, lc.recon_multiplier, lc.kl_multiplier)
    s.optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    # Gradients are averaged over ranks, so a NaN on any rank shows in the norm on all of them and
    # every rank stops at the same check instead of one hanging in the next all-reduce.
    norm = torch.nn.utils.clip_grad_norm_(s.model.parameters(), max_norm)
    s.optimizer.step()
    return terms, norm


def check_finite(watch: torch.Tensor, epoch: int) -> None:
    """Raise Diverged naming the first step whose loss or gradient norm (watch: (steps, 2)) is
    NaN or inf. The one host read per call is here."""
    bad = (~torch.isfinite(watch).all(1)).nonzero()  # (k, 1)
    if len(bad):
        step = int(bad[0, 0])
        loss, norm = watch[step].tolist()
        raise Diverged(
            f"non-finite loss ({loss:.4g}) or gradient norm ({norm:.4g}) at epoch {epoch + 1}, "
            f"step {step}; lower train.lr or set train.grad_clip"
        )


def train_epoch(
    s: Session, x: torch.Tensor, cfg: Config, device, rank: int = 0, world: int = 1
) -> dict[str, float]:
    """One pass over this rank's shard; returns the global batch-weighted means and images/s.

    Nothing is read back per step. The terms are summed on the device in float64 and in step
    order, so the means equal a host-side sum of `.item()`s to the bit; each step's loss and
    gradient norm stay there too, read every CHECK_EVERY steps to stop a diverged run and name
    its first bad step. The optimiser still steps after a bad one: the run is over either way.
    """
    s.model.train()
    x = x.to(device)  # a no-op when the dataset already lives there (fit: data.to_device)
    max_norm = cfg.train.grad_clip if cfg.train.grad_clip > 0 else math.inf
    batches = shard_batches(len(x), cfg.train.batch_size, cfg.train.seed, s.epoch, rank, world, device)
    sums = torch.zeros(len(TERMS), dtype=torch.float64, device=device)
    watch = torch.zeros(len(batches), 2, device=device)  # (steps, [loss, gradient norm])
    images = 0
    start = time.perf_counter()
    for step, idx in enumerate(batches):
        terms, norm = train_step(s, as_batch(x, idx, cfg), cfg, max_norm)
        watch[step] = torch.stack([terms["loss"].detach(), norm])
        sums += torch.stack([terms[k].detach() for k in TERMS]).double() * len(idx)
        images += len(idx)
        if (step + 1) % CHECK_EVERY == 0:
            check_finite(watch[: step + 1], s.epoch)
    check_finite(watch, s.epoch)
    totals = {"n": float(images), **dict(zip(TERMS, sums.tolist(), strict=True))}
    seconds = time.perf_counter() - start  # after the reads above: the device has finished
    totals = _all_reduce(totals, device)
    images_per_s = totals["n"] / seconds  # global: every rank's images in this rank's time
    return {**_means(totals), "images_per_s": images_per_s, "train_seconds": seconds}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    cfg: Config,
    device,
    rank: int = 0,
    world: int = 1,
    batch_size: int = 1000,
) -> dict[str, float]:
    """Test-set loss, terms and ELBO (nats/image), with fixed noise so the numbers are repeatable.
    Always fp32: test numbers stay comparable between precisions."""
    model.eval()
    m, lc = unwrap(model), cfg.loss
    x = x.to(device)
    g = torch.Generator().manual_seed(12345)  # on the CPU: the same noise on every device
    sums = torch.zeros(len(EVAL_TERMS), dtype=torch.float64, device=device)
    images = 0
    for idx in torch.arange(rank, len(x), world, device=device).split(batch_size):
        xb = as_batch(x, idx, cfg)
        mu, log_var = m.encode(xb)
        eps = torch.randn(mu.shape, generator=g).to(device)
        logits = m.decode_logits(m.reparameterize(mu, log_var, eps))
        terms = vae_loss(xb, logits, mu, log_var, lc.likelihood, lc.recon_multiplier, lc.kl_multiplier)
        sums += torch.stack([terms[k] for k in EVAL_TERMS]).double() * len(idx)
        images += len(idx)
    totals = {"n": float(images), **dict(zip(EVAL_TERMS, sums.tolist(), strict=True))}
    return {f"test_{k}": v for k, v in _means(_all_reduce(totals, device)).items()}


def step_scheduler(s: Session, test_loss: float) -> None:
    if isinstance(s.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        s.scheduler.step(test_loss)
    elif s.scheduler is not None:
        s.scheduler.step()


def run_epoch(s: Session, data: FashionMNIST, cfg: Config, device, rank: int = 0, world: int = 1) -> dict:
    """Train one epoch, evaluate, step the scheduler; append and return the metrics row."""
    lr = s.optimizer.param_groups[0]["lr"]
    row = {"epoch": s.epoch + 1, "lr": lr}
    row.update(train_epoch(s, data.train_x, cfg, device, rank, world))
    start = time.perf_counter()
    row.update(evaluate(s.model, data.test_x, cfg, device, rank, world))
    row["eval_seconds"] = time.perf_counter() - start
    step_scheduler(s, row["test_loss"])
    s.epoch += 1
    s.history.append(row)
    return row
