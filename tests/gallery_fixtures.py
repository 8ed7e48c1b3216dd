"""A fabricated sweep folder in the documented layout (docs/LAYOUT.md), for the gallery tests."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaecore.runs import write_json
from vaecore.sweep import trial_name

from procs import write_sweep

GRID = {"model.latent_dim": [2, 3, 8], "loss.recon_multiplier": [1000.0, 5000.0], "train.seed": [0, 1]}
FAILED = "z8-r5000-s1"
PENDING = "z8-r1000-s1"  # trained, not post-processed: no summary.json, no artifacts
HOSTILE = 'z2-r1000-s1 <b>&"x'  # a hostile folder name: must render as text and link correctly
HOSTILE_CONFIG = "<script>alert(1)</script>"
# The scale check: 8 latents x 4 multipliers, one seed; z10 must still sort after z2.
WIDE_GRID = {
    "model.latent_dim": [2, 3, 4, 6, 8, 10, 12, 16],
    "loss.recon_multiplier": [500.0, 1000.0, 5000.0, 10000.0],
}
# Large enough to page (vaecore.gallery: 50 table rows, 48 matrix cells a page): 104 runs, one
# seed each; the matrix is 13 latents x 4 multipliers per likelihood, two pages of rows each.
PAGED_GRID = {
    "model.latent_dim": list(range(2, 15)),
    "loss.recon_multiplier": [500.0, 1000.0, 5000.0, 10000.0],
    "loss.likelihood": ["mse", "cb"],
}
ARTIFACTS = (
    "recon",
    "samples_prior",
    "samples_aggregate",
    "latent",
    "prototypes",
    "morph_additive",
    "morph_interp",
    "morph_matrix",
    "traversals",
    "curves",
)


def png(rng: np.random.Generator, rows: int, cols: int, cell: int = 28) -> bytes:
    """A grid of blurry blobs in the shape of a torchvision make_grid (2 px white padding)."""
    cy, cx, s = (rng.uniform(lo, hi, (rows, cols, 1, 1)) for lo, hi in ((9, 19), (9, 19), (3, 8)))
    yy, xx = np.mgrid[0:cell, 0:cell]
    blobs = 255 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))  # (rows, cols, cell, cell)
    img = np.full((rows, cell + 2, cols, cell + 2), 255, np.uint8)
    img[:, :cell, :, :cell] = blobs.transpose(0, 2, 1, 3)
    img = np.pad(img.reshape(rows * (cell + 2), cols * (cell + 2)), ((2, 0), (2, 0)), constant_values=255)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="png", compress_level=1)  # fast: fixtures write hundreds
    return buf.getvalue()


def make_trial(tdir: Path, name: str, params: dict, status: str, rng: np.random.Generator) -> dict:
    z, r = params["model.latent_dim"], params.get("loss.recon_multiplier", 5000.0)
    lik = params.get("loss.likelihood", "mse")
    config = {
        "model": {"arch": "compact", "latent_dim": z},
        "loss": {"likelihood": lik, "recon_multiplier": r, "kl_multiplier": 1.0},
        "train": {
            "epochs": 3,
            "batch_size": 128,
            "lr": 0.001,
            "seed": params.get("train.seed", 0),
            "note": HOSTILE_CONFIG,
        },
        "data": {"dir": "", "download": False},
        "resources": {"workers": 1},
    }
    write_json(tdir / "config.json", config)
    write_json(tdir / "params.json", params)
    epochs = 2 if status == "failed" else 3
    rows = [
        {
            "epoch": e,
            "lr": 0.001,
            "loss": 60 - 5 * e,
            "recon": 40 - 4 * e,
            "kl": 5 + z + e,
            "mse": 0.05 / e,
            "images_per_s": 800.0,
            "train_seconds": 10.0,
            "test_loss": 61 - 5 * e,
            "test_recon": 41 - 4 * e,
            "test_kl": 5 + z + e,
            "test_mse": 0.05 / e,
            "test_elbo": -30 + 2 * e - z,
        }
        for e in range(1, epochs + 1)
    ]
    (tdir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    if status == "failed":
        write_json(tdir / "status.json", {"status": "failed", "reason": "loss became NaN at epoch 3 <nan>"})
        return {
            "status": "failed",
            "reason": "loss became NaN at epoch 3 <nan>",
            "epochs": 2,
            "seconds": 20.0,
        }
    seconds = 30.0 + z
    write_json(tdir / "status.json", {"status": "completed", "reason": "", "epochs": 3, "seconds": seconds})
    for e in range(1, 4):
        (tdir / "epochs").mkdir(exist_ok=True)
        (tdir / "epochs" / f"samples_{e:03d}.png").write_bytes(png(rng, 8, 8))
    (tdir / "model.pt").write_bytes(b"not a real checkpoint")
    if name == PENDING:
        return {"status": "completed", "reason": "", "epochs": 3, "seconds": seconds}
    (tdir / "latents.npz").write_bytes(b"not real latents")
    art = tdir / "artifacts"
    art.mkdir()
    shapes = {"recon": (4, 10), "morph_matrix": (9, 10), "traversals": (z, 9), "morph_interp": (3, 9)}
    artifacts = {}
    for key in ARTIFACTS:
        if key == "samples_aggregate" and z == 8:
            continue  # a key may be absent: the page just leaves it out
        (art / f"{key}.png").write_bytes(png(rng, *shapes.get(key, (8, 8))))
        artifacts[key] = f"artifacts/{key}.png"
    kl = 4.0 + 2.5 * z + r / 1000
    s = params.get("train.seed", 0)  # seeds move two metrics a little: replicates with a known spread
    metrics = {
        "test_elbo": -25.0 - z - r / 2000 + 0.4 * s,
        "test_iwae": -23.0 - z,
        "iwae_k": 128,
        "test_mse": 0.03 / z * 1000 / r,
        "test_kl": kl,
        "kl_per_dim": [kl / z] * z,
        "active_units": min(z, 3),
        "agg_mean": [0.0] * z,
        "agg_std": [1.0] * z,
        "fid_prior": 10.0 + 3 * z + r / 1000,
        "fid_aggregate": 8.0 + z + 0.5 * s,
        "fid_recon": 4.0,
        "fid_floor": 0.9,
        "recon_accuracy": 0.6 + 0.03 * z,
        "coverage_prior": {"histogram": [0.1] * 10, "entropy": 2.2, "mean_max_prob": 0.8},
        "inception_fid": None,
        "inception_fid_note": "skipped: no weights",
    }
    write_json(
        tdir / "summary.json",
        {
            "trial": name,
            "params": params,
            "config": config,
            "inputs": "abc",
            "train": {"epochs": 3, "seconds": seconds, "images_per_s": 800.0},
            "metrics": metrics,
            "classifier": {"test_accuracy": 0.92, "key": "k"},
            "timings": {"encode": 1.0, "total": 5.0},
            "artifacts": artifacts,
        },
    )
    return {"status": "completed", "reason": "", "epochs": 3, "seconds": seconds}


def make_fake_sweep(root: Path, sweep: str = "fake") -> Path:
    """Write <root>/<sweep>/ with 12 trials: one failed, one not post-processed, one hostile name."""
    sdir = root / sweep
    rng = np.random.default_rng(0)
    trials = {}
    for values in itertools.product(*GRID.values()):
        params = dict(zip(GRID, values, strict=False))
        name = trial_name(params)
        name = HOSTILE if name == "z2-r1000-s1" else name
        status = "failed" if name == FAILED else "completed"
        trials[name] = {"params": params, **make_trial(sdir / "trials" / name, name, params, status, rng)}
    about = "A fabricated sweep <i>for tests</i>."
    write_sweep(sdir / "sweep.toml", sweep, set={"train.epochs": 3}, grid=GRID, description=about)
    write_json(
        sdir / "manifest.json",
        {
            "sweep": sweep,
            "base": "default",
            "grid": GRID,
            "set": {"train.epochs": 3},
            "created": "2026-11-25T17:00:00+00:00",
            "updated": "2026-11-25T17:30:00+00:00",
            "git": "17be183",
            "versions": {"torch": "2.14.1", "python": "3.13.0"},
            "hardware": {"nodes": 1, "cpus": 2, "gpus": 0, "gpu_names": []},
            "timings": {"ray_init_s": 3.1, "sweep_s": 250.0},
            "trials": trials,
        },
    )
    return sdir


def make_grid_sweep(root: Path, grid: dict, sweep: str = "wide") -> Path:
    """Write <root>/<sweep>/: one completed, post-processed trial per grid point (WIDE_GRID: 32).
    The manifest lists them by name (z10 before z2), so the gallery has to put them in grid order."""
    sdir, rng = root / sweep, np.random.default_rng(0)
    points = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    trials = {}
    for params in sorted(points, key=trial_name):
        name = trial_name(params)
        trials[name] = {
            "params": params,
            **make_trial(sdir / "trials" / name, name, params, "completed", rng),
        }
    write_sweep(sdir / "sweep.toml", sweep, grid=grid, description=f"{len(trials)} fabricated runs.")
    write_json(sdir / "manifest.json", {"sweep": sweep, "base": "default", "grid": grid, "trials": trials})
    return sdir


@pytest.fixture(scope="session")
def fake_sweep(tmp_path_factory) -> Path:
    """A fabricated sweep with every kind of run (failed, not post-processed, hostile name)."""
    return make_fake_sweep(tmp_path_factory.mktemp("out"))
