"""The reference Fashion-MNIST classifier: a small CNN trained once, cached, used for FID and coverage.

Measured on 2 shared CPU cores: ~2 minutes to train, ~92.5% test accuracy (docs/BENCHMARKS.md).
Its 128-d penultimate layer is the feature space for the FIDs in vaecore.post.metrics: a domain
classifier sees clothing features that ImageNet's Inception-v3 does not (and needs no download).
"""

from __future__ import annotations

import hashlib
import inspect
import io
import logging
import time

import torch
import torch.nn.functional as F
from torch import nn

from vaecore import runs
from vaecore.data import to_float

log = logging.getLogger(__name__)

EPOCHS = 6  # measured: 4 epochs gave 91.7%, short of the 92% target
BATCH = 256  # larger batches run faster per image on CPU
LR = 3e-3  # peak of the one-cycle schedule
SEED = 0


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


def cache_key(train_x: torch.Tensor, train_y: torch.Tensor) -> str:
    """Hash of the network's and the training's code and settings plus the training data.

    Only the code that decides the weights is hashed, so editing a comment elsewhere does not retrain.
    """
    code = inspect.getsource(Classifier) + inspect.getsource(train) + repr((EPOCHS, BATCH, LR, SEED))
    h = hashlib.sha256(code.encode())
    h.update(train_x.contiguous().numpy().tobytes())
    h.update(train_y.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def train(train_x: torch.Tensor, train_y: torch.Tensor) -> Classifier:
    """Adam with a one-cycle schedule, no augmentation (flips slowed the short schedule down)."""
    torch.manual_seed(SEED)
    model = Classifier()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    steps = EPOCHS * ((len(train_x) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)
    g = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(EPOCHS):
        for idx in torch.randperm(len(train_x), generator=g).split(BATCH):
            loss = F.cross_entropy(model(to_float(train_x[idx])), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
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


def load_or_train(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor
) -> tuple[Classifier, dict]:
    """The cached classifier for this code and data, training (and caching) it on a miss.

    Returns (model, info) with info = {"key", "test_accuracy", "train_seconds", "cached"}.
    """
    key = cache_key(train_x, train_y)
    path = runs.cache_dir() / f"classifier-{key}.pt"
    if path.is_file():
        try:
            state = runs.torch_load(path)
            model = Classifier()
            model.load_state_dict(state["model"])
            return model.eval(), {**state["info"], "cached": True}
        except Exception as e:  # a corrupt cache file is retrained, not fatal
            log.warning("classifier cache %s unreadable (%s); retraining", path, e)
    start = time.perf_counter()
    model = train(train_x, train_y)
    info = {
        "key": key,
        "test_accuracy": round(accuracy(model, test_x, test_y), 4),
        "train_seconds": round(time.perf_counter() - start, 1),
        "train_images": len(train_x),
    }
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "info": info}, buf)
    runs.atomic_write_bytes(path, buf.getvalue())
    return model, {**info, "cached": False}
