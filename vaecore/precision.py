"""Training's precision, measured rather than guessed: train.precision = "auto".

On CPUs with bf16 units (AVX-512 bf16, AMX) and on recent GPUs the compact VAE trains 2-2.5x faster
in bf16 autocast with channels_last than in fp32 (docs/BENCHMARKS.md); elsewhere bf16 is emulated
and slower. "auto" times a few training steps both ways on the device at hand, once per process
for each model shape, batch and device, and keeps bf16 (with channels_last) only when it is at
least FASTER_BY faster. The loss, the weights and evaluation stay fp32 either way (vaecore.epoch).

The choice is the trial's: it goes into its checkpoints, a resumed run keeps it (so the resumed
epochs equal an uninterrupted run's), every DDP rank takes rank 0's, and status.json records it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace

import torch
import torch.distributed as dist

from vaecore import epoch
from vaecore.config import Config
from vaecore.model import build

FASTER_BY = 1.15  # bf16 is chosen only when a timed run is at least this much faster
TIMED_STEPS = 2  # per round and precision, after one untimed warm-up step each
ROUNDS = 3  # rounds, fp32 and bf16 interleaved; each keeps its best: a neighbour's burst (another
# trial's post-processing on the same cores) slowed one 3-step bf16 timing enough that a demo
# trial chose fp32 and trained at half speed (298 s against 157 s)

_CHOSEN: dict[tuple, str] = {}  # what was measured, once per process: training's and post-processing's


def faster(key: tuple, timers: Callable[[], dict[str, Callable[[], float]]], rounds: int = ROUNDS) -> str:
    """'bf16' or 'fp32', measured once per process for `key`: timers() gives each precision a
    function returning its rate; they run `rounds` times interleaved, each keeps its best, and
    bf16 wins only at FASTER_BY or more. Training (below) and post-processing's inference
    (vaecore/post/precision.py) both choose here."""
    if key not in _CHOSEN:
        timed = timers()
        rates = dict.fromkeys(timed, 0.0)
        for _ in range(rounds):
            for c, timer in timed.items():
                rates[c] = max(rates[c], timer())
        _CHOSEN[key] = "bf16" if rates["bf16"] >= FASTER_BY * rates["fp32"] else "fp32"
    return _CHOSEN[key]


def as_trained(cfg: Config, choice: str) -> Config:
    """cfg as it trains: a concrete precision; bf16 runs with channels_last (they were timed together)."""
    channels_last = cfg.train.channels_last or choice == "bf16"
    return replace(cfg, train=replace(cfg.train, precision=choice, channels_last=channels_last))


def choose(cfg: Config, device, world: int = 1, kept: str | None = None) -> str:
    """'fp32' or 'bf16' for this run: the config's own choice; for "auto" the checkpoint's (kept),
    else rank 0's measurement, shared with the other ranks."""
    if cfg.train.precision != "auto":
        return cfg.train.precision
    choice = kept or (measure(cfg, device, world) if _rank() == 0 else "")
    if world > 1 and dist.is_available() and dist.is_initialized():
        box = [choice]
        dist.broadcast_object_list(box, src=0)
        choice = box[0]
    return choice


def measure(cfg: Config, device, world: int = 1) -> str:
    """The faster precision for this model at this rank's batch on this device (cached)."""
    batch = max(1, cfg.train.batch_size // world)

    def timers() -> dict:
        return {c: _stepper(as_trained(cfg, c), device, batch) for c in ("fp32", "bf16")}

    with torch.random.fork_rng(devices=[torch.device(device)] if _cuda(device) else []):
        return faster(("train", cfg.model.arch, cfg.model.latent_dim, batch, str(device)), timers)


def _stepper(cfg: Config, device, batch: int):
    """A model at this config, warmed up by one step; returns a function timing TIMED_STEPS steps
    (steps per second). Run under fork_rng: timing does not change the run's weights or noise."""
    torch.manual_seed(0)
    model = build(cfg.model.arch, cfg.model.latent_dim).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    s = epoch.Session(model, torch.optim.Adam(model.parameters(), lr=cfg.train.lr), None)
    x = torch.rand(batch, 1, 28, 28, device=device)
    x = x.contiguous(memory_format=torch.channels_last) if cfg.train.channels_last else x
    epoch.train_step(s, x, cfg, math.inf)

    def rate() -> float:
        _sync(device)
        start = time.perf_counter()
        for _ in range(TIMED_STEPS):
            epoch.train_step(s, x, cfg, math.inf)
        _sync(device)
        return TIMED_STEPS / (time.perf_counter() - start)

    return rate


def _cuda(device) -> bool:
    return torch.device(device).type == "cuda"


def _sync(device) -> None:
    if _cuda(device):
        torch.cuda.synchronize(device)


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
