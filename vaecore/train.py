"""Training: the session (model, Adam, scheduler), checkpoints, the epoch files, the one loop.

`train_loop` is the loop for the plain run (`fit`, `jobs.train`) and for every Ray worker: a
Reporter says where its checkpoints go and where its progress is sent (LocalReporter here; the
Ray ones in vaecore/worker.py), so resuming, checkpointing and the epoch files are written once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import nn

from vaecore import images, latent, layout, precision, runs
from vaecore.config import Config, ConfigError, diff, digest
from vaecore.data import FashionMNIST, to_device
from vaecore.epoch import (
    Diverged,
    Session,
    as_batch,
    check_replicas,
    gather,
    run_epoch,
    shard_indices,
    unwrap,
)
from vaecore.model import build, torch_load, torch_save

log = logging.getLogger(__name__)


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
    """Every rank's random state in rank order (for exact resumes)."""
    return gather(rng_state(device), device)


def state_dict(s: Session, cfg: Config, rng: list[dict], chosen: str) -> dict:
    """A checkpoint: enough to resume exactly (each rank's random state from gather_rng, the
    precision it trains in), plus the config, the code revision and versions for provenance."""
    return {
        "precision": chosen,
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


EPOCH_SAMPLES, EPOCH_SEED = 64, 2024  # the same 64 prior vectors decoded after every epoch
EPOCH_PROTOTYPE_IMAGES = 100  # train images per class whose mean posterior is the epoch's prototype


def first_per_class(y: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the first n images of each class, class by class: fixed, whatever the epoch."""
    return torch.cat([(y == c).nonzero().flatten()[:n] for c in range(10)])


@torch.no_grad()
def save_epoch_figures(
    model: nn.Module, epoch: int, trial: layout.Trial, ds: FashionMNIST, cfg: Config
) -> None:
    """The same three pictures after every epoch, in epochs/: samples_NNN.png (the 64 prior
    vectors, 8 x 8), recon_NNN.png (the first test image of each class above its reconstruction)
    and prototypes_NNN.png (each class's mean posterior over its first 100 train images, decoded)."""
    m = unwrap(model)
    was_training = m.training
    m.eval()
    device = next(m.parameters()).device
    x = as_batch(ds.test_x, first_per_class(ds.test_y, 1), cfg)  # (10, 1, 28, 28)
    seen = first_per_class(ds.train_y, EPOCH_PROTOTYPE_IMAGES)
    means = latent.class_means(m.encode(as_batch(ds.train_x, seen, cfg))[0], ds.train_y[seen])
    z = latent.prior_z(EPOCH_SAMPLES, m.latent_dim, EPOCH_SEED).to(device)
    pictures = {
        "samples": (m.decode(z), 8),
        "recon": (torch.cat([x.float(), m.decode(m.encode(x)[0])]), 10),
        "prototypes": (m.decode(means), 10),
    }
    m.train(was_training)
    for kind, (batch, nrow) in pictures.items():  # all 256 grays: the epoch grids are small
        images.write_gray(images.tile(batch, nrow=nrow, pad=2, scale=1), trial.epoch_image(kind, epoch), None)


def write_epoch_files(s: Session, trial: layout.Trial, ds: FashionMNIST, cfg: Config) -> None:
    """After the epoch's checkpoint is stored: metrics.jsonl (all epochs) and its pictures."""
    trial.write_history(s.history)
    save_epoch_figures(s.model, s.epoch, trial, ds, cfg)


def save_model(s: Session, cfg: Config, trial: layout.Trial) -> None:
    """The final weights and config, model.pt: what post-processing loads."""
    torch_save({"model": unwrap(s.model).state_dict(), "config": asdict(cfg)}, trial.file("model"))


# --- the one loop -------------------------------------------------------------------------------


class Reporter:
    """Where one training run keeps its checkpoints and sends its progress. These defaults do
    nothing; LocalReporter (below) and the Ray reporters (vaecore/worker.py) fill them in."""

    def resume(self, device) -> dict | None:
        """The newest checkpoint's state to resume from, or None to start afresh."""
        return None

    def started(self, epoch: int) -> None:
        """Called once the model is built and resumed (epoch: epochs already done)."""

    def save(self, state: dict | None, row: dict) -> None:
        """Store the epoch's checkpoint (state is None on ranks other than 0), before our files."""

    def report(self, row: dict) -> None:
        """After the epoch's files are written: tell whoever watches."""


class Outcome(NamedTuple):
    diverged: str  # why training stopped early (NaN/inf); "" when every epoch ran
    epochs: int  # epochs completed
    precision: str  # what it trained in: train.precision, "auto" resolved (vaecore.precision)
    ranks: list[dict]  # each rank's images an epoch, final weights digest and loss (check_replicas)


def train_loop(
    cfg: Config,
    ds: FashionMNIST,
    trial: layout.Trial,
    reporter: Reporter,
    device: torch.device | str = "cpu",
    rank: int = 0,
    world: int = 1,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
) -> Outcome:
    """Train one config from its newest checkpoint to cfg.train.epochs: the plain run's loop and
    every Ray worker's. Rank 0 writes the trial's files; a diverged run writes diverged.json."""
    set_threads(cfg)
    ds = to_device(ds, device)  # uint8, 55 MB at most: batches are indexed there, no copy per step
    state = reporter.resume(device)
    chosen = precision.choose(cfg, device, world, kept=(state or {}).get("precision"))
    run = precision.as_trained(cfg, chosen)  # what trains; cfg (as asked) is what checkpoints compare
    s = new_session(run, device, rank, wrap)
    if state:
        load_state(s, state, cfg, device, rank)
    reporter.started(s.epoch)
    try:
        while s.epoch < cfg.train.epochs:
            row = run_epoch(s, ds, run, device, rank, world)
            rng = gather_rng(device)  # every rank's random state (an all-gather): exact resumes
            reporter.save(state_dict(s, cfg, rng, chosen) if rank == 0 else None, row)
            if rank == 0:  # after the checkpoint: an epoch in metrics.jsonl is never lost by a crash
                write_epoch_files(s, trial, ds, run)
            reporter.report(row)
    except Diverged as e:
        # Every rank sees the same non-finite gradients (they are averaged), so all stop here.
        # Retrying from the checkpoint would diverge again: this is a result, not a crash.
        if rank == 0:
            runs.write_json(trial.file("diverged"), {"reason": str(e), "epoch": s.epoch + 1})
        return Outcome(str(e), s.epoch, chosen, [])
    ranks = check_replicas(s, len(shard_indices(len(ds.train_x), cfg.train.seed, 0, rank, world)), device)
    if rank == 0:
        save_model(s, cfg, trial)
    return Outcome("", s.epoch, chosen, ranks)


class LocalReporter(Reporter):
    """The plain run's: checkpoint.pt in the run folder, progress to an optional callback."""

    def __init__(self, trial: layout.Trial, on_epoch: Callable[[dict], None] | None = None):
        self.trial, self.on_epoch = trial, on_epoch

    def resume(self, device) -> dict | None:
        path = self.trial.file("checkpoint")
        return torch_load(path, device) if path.is_file() else None

    def started(self, epoch: int) -> None:
        if epoch:
            log.info("resumed %s at epoch %d", self.trial.path, epoch)

    def save(self, state: dict | None, row: dict) -> None:
        torch_save(state, self.trial.file("checkpoint"))

    def report(self, row: dict) -> None:
        if self.on_epoch:
            self.on_epoch(row)


def fit(
    cfg: Config,
    data: FashionMNIST,
    run_dir: Path,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[dict], None] | None = None,
) -> dict:
    """Train one config in this process (no Ray), resuming from run_dir/checkpoint.pt if it exists.

    A run already completed with this config writes nothing. Returns status.json's contents.
    """
    trial = layout.Trial(run_dir)
    cfg_dict = json.loads(json.dumps(asdict(cfg), default=str))
    if trial.completed(cfg_dict):
        log.info("%s is already trained; nothing to do", run_dir)
        return trial.status().to_dict()
    trial.mark_running()
    trial.write_config(asdict(cfg))
    start = time.time()
    out = train_loop(cfg, data, trial, LocalReporter(trial, on_epoch), device)
    seconds, key = time.time() - start, digest(asdict(cfg))
    status = trial.outcome("", seconds, config_digest=key, precision=out.precision)
    trial.write_status(status)
    return status.to_dict()
