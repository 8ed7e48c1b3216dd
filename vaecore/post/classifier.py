"""The reference Fashion-MNIST classifier: a small CNN whose weights ship with the code, pinned by
SHA-256, used for FID and class coverage. It is never trained during a sweep;
scripts/train_classifier.py reproduces the weights (~2.5 minutes on 2 CPU cores, 92.3% test
accuracy, docs/BENCHMARKS.md).
Its 128-d penultimate layer is the feature space for the FIDs in vaecore.post.metrics: a domain
classifier sees clothing features that ImageNet's Inception-v3 does not (and needs no download).
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vaecore import runs
from vaecore.data import to_float
from vaecore.datafiles import DataError

log = logging.getLogger(__name__)

EPOCHS = 6  # measured: 4 epochs gave 91.7%, short of the 92% target
BATCH = 256  # larger batches run faster per image on CPU
LR = 3e-3  # peak of the one-cycle schedule
SEED = 0
WEIGHTS = Path(__file__).with_name("classifier.pt")  # 1.7 MB: {"model": state_dict, "info": {...}}
WEIGHTS_SHA256 = "ef1408dff0d27a586e80d74186ddfb7781d4bd73496d6a8e0273d41ffda31d66"


class Classifier(nn.Module):
    """conv32 - pool - conv64 - pool - fc128 (features) - fc10."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 128),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(128, 10))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (B, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))  # (B, 10) logits


def train(
    train_x: torch.Tensor, train_y: torch.Tensor, progress: Callable[[str], None] = print
) -> Classifier:
    """Adam with a one-cycle schedule, no augmentation (flips slowed the short schedule down)."""
    torch.manual_seed(SEED)
    model = Classifier()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    steps = EPOCHS * ((len(train_x) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)
    g = torch.Generator().manual_seed(SEED)
    model.train()
    start = time.perf_counter()
    for epoch in range(EPOCHS):
        for idx in torch.randperm(len(train_x), generator=g).split(BATCH):
            loss = F.cross_entropy(model(to_float(train_x[idx])), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        progress(
            f"classifier: epoch {epoch + 1}/{EPOCHS}, last batch loss {loss.item():.3f}, "
            f"{time.perf_counter() - start:.0f} s"
        )
    return model.eval()


@torch.no_grad()
def predict(model: Classifier, x: torch.Tensor, batch: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, 128), class probabilities (N, 10)) for uint8 or [0, 1] float images."""
    feats, probs = [], []
    for xb in x.split(batch):
        f = model.features(to_float(xb))
        feats.append(f)
        probs.append(model.head(f).softmax(1))
    return torch.cat(feats), torch.cat(probs)


def accuracy(model: Classifier, x: torch.Tensor, y: torch.Tensor) -> float:
    return (predict(model, x)[1].argmax(1) == y).float().mean().item()


def load_reference() -> tuple[Classifier, dict]:
    """The shipped reference classifier (classifier.pt beside this file), checked against its pin.

    Every user and machine measures FIDs with these same weights, so the numbers compare across
    sweeps. Returns (model, info) with info = {"key", "test_accuracy", "train_seconds", ...}.
    """
    raw = WEIGHTS.read_bytes() if WEIGHTS.is_file() else b""
    digest = hashlib.sha256(raw).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise DataError(
            f"{WEIGHTS} is missing or does not match its pinned SHA-256 ({digest[:12]}...); restore "
            f"it with `git checkout -- {WEIGHTS}`, or rebuild it with scripts/train_classifier.py"
        )
    state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    model = Classifier()
    model.load_state_dict(state["model"])
    return model.eval(), {**state["info"], "key": digest[:16]}


def save(model: Classifier, info: dict, path: Path = WEIGHTS) -> str:
    """Write new reference weights; returns their SHA-256, to be pinned in WEIGHTS_SHA256."""
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "info": info}, buf)
    runs.atomic_write_bytes(path, buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()
