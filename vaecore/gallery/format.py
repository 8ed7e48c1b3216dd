"""What every gallery page shares: metric names and titles, number formats, image attributes."""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import quote

DASH = "–"
# (key, label, better: "max" | "min" | None, format). Keys come from summary.json "metrics".
METRICS = [
    ("test_elbo", "test ELBO", "max", "{:.2f}"),
    ("test_iwae", "IWAE", "max", "{:.2f}"),
    ("test_mse", "recon MSE", "min", "{:.4f}"),
    ("test_kl", "KL", None, "{:.2f}"),
    ("active_units", "active units", "max", "{:.0f}"),
    ("fid_prior", "FID prior", "min", "{:.1f}"),
    ("fid_aggregate", "FID agg. post.", "min", "{:.1f}"),
    ("fid_gmm", "FID mixture", "min", "{:.1f}"),
    ("fid_two_stage", "FID 2-stage", "min", "{:.1f}"),
    ("recon_accuracy", "recon acc.", "max", "pct"),
]
# Samplers in the order pages show them: key, short name, title. The first four never see a label.
SAMPLERS = [
    ("prior", "N(0, I)", "Prior samples"),
    ("aggregate", "aggregate Gaussian", "Aggregate-posterior samples"),
    ("gmm", "mixture", "Mixture samples (no labels)"),
    ("two_stage", "2-stage VAE", "Two-stage VAE samples"),
    ("mixture", "class mixture", "Class-started mixture samples (uses labels)"),
]
LABEL_FREE = ("prior", "aggregate", "gmm", "two_stage")
EXTRA_METRICS = [
    ("gap_closed", "prior-to-recon FID gap closed by the best sampler", "pct"),
    ("gmm_components", "mixture components (held-out choice)", "{:.0f}"),
    ("two_stage_val_loss", "2-stage held-out loss (nats/vector)", "{:.2f}"),
    ("fid_recon", "FID reconstructions", "{:.1f}"),
    ("fid_floor", "FID floor (test vs test)", "{:.2f}"),
    ("iwae_k", "IWAE samples k", "{:.0f}"),
]
FIGURES = [
    ("curves", "Training curves", ""),
    ("recon", "Reconstructions", "test images above, reconstructions below"),
    ("latent", "Latent space", "test set means coloured by class"),
    ("latent_gif", "Latent space, rotating", ""),
    ("prototypes", "Class prototypes", "decoded class means"),
    ("morph_additive", "Additive morphs", "v_A + alpha * v_B, as in the seed"),
    ("morph_interp", "Interpolation strips", "(1 - alpha) v_A + alpha v_B"),
    ("morph_matrix", "All 45 class pairs", ""),
    ("traversals", "Latent traversals", "one row per dimension"),
    ("two_stage_loss", "Two-stage VAE training", "the second VAE's loss on the train-set latents"),
]
COMPARE = [
    "samples_prior",
    "samples_aggregate",
    "samples_gmm",
    "samples_two_stage",
    "recon",
    "latent",
    "prototypes",
    "morph_matrix",
    "curves",
]
TITLES = {k: t for k, t, _ in FIGURES} | {f"samples_{k}": t for k, _, t in SAMPLERS}


def number(value: Any) -> float | None:
    """A finite number, or None for anything else (strings, bools, NaN, missing)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def fmt(value: Any, spec: str = "{:.4g}") -> str:
    if value is None:
        return DASH
    return f"{100 * value:.1f}%" if spec == "pct" else spec.format(value)


def fmt_param(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return DASH
    h, rest = divmod(int(round(s)), 3600)
    return (
        f"{h}h {rest // 60:02d}m" if h else f"{rest // 60}m {rest % 60:02d}s" if rest >= 60 else f"{s:.1f}s"
    )


def vkey(value: Any) -> str:
    """Grid values compare by meaning: 1000 and 1000.0 are the same point."""
    n = number(value)
    return repr(n) if n is not None else json.dumps(value, sort_keys=True)


def label(key: str) -> str:
    return key.rsplit(".", 1)[-1].replace("_", " ")


def metric(run: dict, key: str) -> float | None:
    m = run["summary"].get("metrics")
    return number(m.get(key)) if isinstance(m, dict) else None


def trial_url(run: dict, rel: str, root: str) -> str:
    return f"{root}../trials/{quote(run['name'])}/{quote(rel)}"


def image(run: dict, rel: str, root: str, alt: str, width: int | None = None) -> dict:
    """An <img>'s attributes; small pixel grids are shown at an integer zoom so they stay crisp."""
    w, h = run["sizes"].get(rel) or (256, 256)
    if width:
        w, h = width, max(1, round(h * width / w))
    elif w <= 400:
        zoom = max(1, round(480 / w))
        w, h = w * zoom, h * zoom
    return {"src": trial_url(run, rel, root), "w": w, "h": h, "alt": alt, "pixelated": not width and w < 1000}
