"""Training: sharded batches, one epoch, evaluation, checkpoints, and the Ray-free `fit` loop.

The pieces are separate so the Ray worker (vaecore.worker) can wrap the model in DDP and
report to Ray while reusing exactly the same epoch, evaluation and checkpoint code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from vaecore import runs
from vaecore.config import Config, ConfigError, diff
from vaecore.data import FashionMNIST, to_device, to_float
from vaecore.losses import vae_loss
from vaecore.model import build

log = logging.getLogger(__name__)


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


def set_threads(cfg: Config) -> int:
    n = cfg.train.threads or cfg.resources.cpus_per_worker or 1
    torch.set_num_threads(n)
    return n


# --- building -----------------------------------------------------------------------------------


def make_scheduler(cfg: Config, opt: torch.optim.Optimizer):
    t = cfg.train
    if t.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=t.lr_factor, patience=t.lr_patience)
    if t.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t.epochs)
    if t.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=t.lr_step, gamma=t.lr_factor)
    return None


def world_size() -> int:
    """Processes in torch.distributed's group; 1 when there is none."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def new_session(
    cfg: Config,
    device: torch.device | str = "cpu",
    rank: int = 0,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
) -> Session:
    """Seeded model, Adam and scheduler. `wrap` (e.g. DDP) is applied after moving to device, and
    only when more than one process trains: alone, there is nothing to average."""
    torch.manual_seed(cfg.train.seed)  # same initial weights on every rank
    model = build(cfg.model.arch, cfg.model.latent_dim).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev)  # what Ray's prepare_model does, also when it is not called
    model = wrap(model) if wrap and world_size() > 1 else model
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    torch.manual_seed(cfg.train.seed * 1000 + rank)  # different reparameterisation noise per rank
    return Session(model, opt, make_scheduler(cfg, opt))


def rng_state(device) -> dict:
    """This process's random state: the CPU generator, and the GPU's when training on one."""
    out = {"cpu": torch.get_rng_state()}
    if torch.device(device).type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def gather_rng(device) -> list[dict]:
    """Every rank's random state in rank order; every rank must call it (an all-gather)."""
    mine = rng_state(device)
    if not (dist.is_available() and dist.is_initialized()):
        return [mine]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, mine)
    return out


def state_dict(s: Session, cfg: Config, rng: list[dict]) -> dict:
    """A checkpoint: enough to resume exactly (each rank's random state from gather_rng), plus
    the config, the code revision and versions for provenance."""
    return {
        "model": unwrap(s.model).state_dict(),
        "optimizer": s.optimizer.state_dict(),
        "scheduler": s.scheduler.state_dict() if s.scheduler else None,
        "epoch": s.epoch,
        "history": s.history,
        "rng": rng,
        "config": asdict(cfg),
        "git": runs.git_revision(),
        "versions": runs.versions(),
    }


def load_state(s: Session, state: dict, cfg: Config, device="cpu", rank: int = 0) -> None:
    """Resume from a checkpoint written for this same config; a different one is refused, except
    for more epochs (train.epochs), which continue the run where it stopped."""
    changed = [c for c in diff(state["config"], asdict(cfg)) if not c.startswith("train.epochs:")]
    if changed:
        raise ConfigError(
            f"the checkpoint was trained with a different config ({'; '.join(changed[:3])}); "
            f"resume with the config it was trained with, or start a new run in another folder"
        )
    unwrap(s.model).load_state_dict(state["model"])
    s.optimizer.load_state_dict(state["optimizer"])
    if s.scheduler and state["scheduler"]:
        s.scheduler.load_state_dict(state["scheduler"])
    s.epoch, s.history = state["epoch"], list(state["history"])
    rng = state["rng"][rank]  # a different world size is a different config, refused above
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], device)


# --- one epoch ----------------------------------------------------------------------------------


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
        x_hat, mu, log_var = s.model(xb)
    # The loss in fp32 whatever the precision: x5000 multipliers and the KL's sum need the bits.
    x_hat, mu, log_var = x_hat.float(), mu.float(), log_var.float()
    terms = vae_loss(xb, x_hat, mu, log_var, lc.likelihood, lc.recon_multiplier, lc.kl_multiplier)
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
        x_hat = m.decode(m.reparameterize(mu, log_var, eps))
        terms = vae_loss(xb, x_hat, mu, log_var, lc.likelihood, lc.recon_multiplier, lc.kl_multiplier)
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


@torch.no_grad()
def save_epoch_samples(model: nn.Module, epoch: int, run_dir: Path, device="cpu") -> Path:
    """Decode the same 64 prior vectors after every epoch: epochs/samples_007.png (8 x 8 grid)."""
    import io

    from vaecore.post.sheets import tile

    m = unwrap(model)
    was_training = m.training
    m.eval()
    z = torch.randn(64, m.latent_dim, generator=torch.Generator().manual_seed(2024))
    grid = tile(m.decode(z.to(device)), nrow=8, pad=2, scale=1)
    m.train(was_training)
    buf = io.BytesIO()
    grid.save(buf, format="png")
    path = Path(run_dir) / "epochs" / f"samples_{epoch:03d}.png"
    runs.atomic_write_bytes(path, buf.getvalue())
    return path


def write_epoch_files(s: Session, run_dir: Path, device="cpu") -> None:
    """After the epoch's checkpoint is stored: metrics.jsonl (all epochs) and its sample grid."""
    runs.write_jsonl(Path(run_dir) / "metrics.jsonl", s.history)
    save_epoch_samples(s.model, s.epoch, run_dir, device)


def save_model(s: Session, cfg: Config, run_dir: Path) -> None:
    """The final weights and config, run_dir/model.pt: what post-processing loads."""
    runs.torch_save(
        {"model": unwrap(s.model).state_dict(), "config": asdict(cfg)}, Path(run_dir) / "model.pt"
    )


# --- the plain, single-process loop -------------------------------------------------------------


def fit(
    cfg: Config,
    data: FashionMNIST,
    run_dir: Path,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[dict], None] | None = None,
) -> dict:
    """Train one config in this process, resuming from run_dir/checkpoint.pt if it exists.

    Writes checkpoint.pt and metrics.jsonl after every epoch, model.pt and status.json at the end.
    Returns the status dict: {"status": "completed" | "failed", "reason": ..., "epochs": ...}.
    """
    run_dir = Path(run_dir)
    done = runs.read_dict(run_dir / "status.json")
    if _finished(run_dir, cfg, done):
        log.info("%s is already trained; nothing to do", run_dir)
        return done  # a finished run re-run writes nothing
    set_threads(cfg)
    data = to_device(data, device)
    s = new_session(cfg, device)
    ckpt = run_dir / "checkpoint.pt"
    if ckpt.is_file():
        load_state(s, runs.torch_load(ckpt, device), cfg, device)
        log.info("resumed %s at epoch %d", run_dir, s.epoch)
    runs.write_json(run_dir / "config.json", asdict(cfg))
    status = {"status": "completed", "reason": ""}
    try:
        while s.epoch < cfg.train.epochs:
            row = run_epoch(s, data, cfg, device)
            runs.torch_save(state_dict(s, cfg, gather_rng(device)), ckpt)
            write_epoch_files(s, run_dir, device)
            if on_epoch:
                on_epoch(row)
        save_model(s, cfg, run_dir)
    except Diverged as e:
        status = {"status": "failed", "reason": str(e)}
    status["epochs"] = s.epoch
    runs.write_json(run_dir / "status.json", status)
    return status


def _finished(run_dir: Path, cfg: Config, status: dict) -> bool:
    """Completed with this very config: model.pt is there and status.json says so."""
    old, now = runs.read_dict(run_dir / "config.json"), json.loads(json.dumps(asdict(cfg), default=str))
    return (
        status.get("status") == "completed"
        and status.get("epochs") == cfg.train.epochs
        and (run_dir / "model.pt").is_file()
        and bool(old)
        and not diff(old, now)  # a key added since, at its default, is the same config
    )
