"""Gallery page data: formatting, the runs table, plots, parallel coordinates (plain dicts)."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any
from urllib.parse import quote

from vaecore import gallery_plots

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
    ("recon_accuracy", "recon acc.", "max", "pct"),
]
EXTRA_METRICS = [
    ("fid_recon", "FID reconstructions", "{:.1f}"),
    ("fid_floor", "FID floor (test vs test)", "{:.2f}"),
    ("iwae_k", "IWAE samples k", "{:.0f}"),
]
PARALLEL = ["test_elbo", "test_mse", "test_kl", "fid_prior", "recon_accuracy"]
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
]
COMPARE = ["samples_prior", "samples_aggregate", "recon", "latent", "prototypes", "morph_matrix", "curves"]
TITLES = {k: t for k, t, _ in FIGURES} | {
    "samples_prior": "Prior samples",
    "samples_aggregate": "Aggregate-posterior samples",
}
PALETTE = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"]


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


def swept_axes(sweep: dict) -> list[dict]:
    """Swept keys in grid order (then any other key that varies), each with its values in grid order."""
    grid = sweep["grid"]
    keys = list(grid) + sorted({k for r in sweep["runs"] for k in r["params"]} - set(grid))
    axes = []
    for key in keys:
        values = list(grid.get(key) or []) if isinstance(grid.get(key), list) else []
        seen = {vkey(v) for v in values}
        extra = {vkey(r["params"][key]): r["params"][key] for r in sweep["runs"] if key in r["params"]}
        values += [v for k, v in sorted(extra.items()) if k not in seen]
        if len(values) > 1:
            axes.append({"key": key, "label": label(key), "values": values})
    return axes


def table(sweep: dict, axes: list[dict]) -> dict:
    cols = [{"label": a["label"], "title": a["key"], "numeric": True} for a in axes]
    cols += [{"label": lab, "title": key, "numeric": True} for key, lab, _, _ in METRICS]
    cols += [
        {"label": "epochs", "title": "epochs trained", "numeric": True},
        {"label": "train time", "title": "training wall time", "numeric": True},
    ]
    best = {}
    for key, _, better, _ in METRICS:
        vals = [v for r in sweep["runs"] if (v := metric(r, key)) is not None]
        if better and len(vals) > 1:
            best[key] = max(vals) if better == "max" else min(vals)
    rows = []
    for run in sweep["runs"]:
        cells = [
            {
                "text": fmt_param(run["params"].get(a["key"], DASH)),
                "sort": _sort(run["params"].get(a["key"])),
                "best": False,
            }
            for a in axes
        ]
        for key, _, _, spec in METRICS:
            v = metric(run, key)
            cells.append(
                {"text": fmt(v, spec), "sort": _sort(v), "best": v is not None and best.get(key) == v}
            )
        cells.append({"text": fmt(run["epochs"], "{:.0f}"), "sort": _sort(run["epochs"]), "best": False})
        cells.append({"text": fmt_seconds(run["seconds"]), "sort": _sort(run["seconds"]), "best": False})
        rows.append(
            {
                "name": run["name"],
                "href": "runs/" + quote(run["page"]),
                "state": run["state"],
                "note": run_note(run),
                "cells": cells,
            }
        )
    return {"cols": cols, "rows": rows}


def _sort(v: Any) -> str:
    return "" if v is None else fmt_param(v)


def run_note(run: dict) -> str:
    if run["state"] == "failed":
        return "failed: " + (run["reason"] or "no reason recorded")
    if run["state"] == "pending":
        return "pending"
    return "" if run["post_processed"] else "not post-processed"


def plots(sweep: dict, axes: list[dict]) -> list[dict]:
    runs = [
        r for r in sweep["runs"] if metric(r, "test_kl") is not None and metric(r, "test_mse") is not None
    ]
    out = []
    if runs:
        pts = [
            {
                "kl": metric(r, "test_kl"),
                "mse": metric(r, "test_mse"),
                "fid": metric(r, "fid_prior"),
                "label": r["name"],
            }
            for r in runs
        ]
        out.append(
            {
                "src": "plots/rate_distortion.png",
                "png": gallery_plots.rate_distortion(pts),
                "alt": "Rate-distortion: test KL against reconstruction MSE, one point per run, colour = FID",
            }
        )
    if axes and any(metric(r, "fid_prior") is not None for r in sweep["runs"]):
        specs = [
            {
                "label": a["label"],
                "values": [fmt_param(v) for v in a["values"]],
                "runs": [
                    {
                        "value": fmt_param(r["params"][a["key"]]),
                        "fid_prior": metric(r, "fid_prior"),
                        "fid_aggregate": metric(r, "fid_aggregate"),
                    }
                    for r in sweep["runs"]
                    if a["key"] in r["params"]
                ],
            }
            for a in axes
        ]
        out.append(
            {
                "src": "plots/fid_by_axis.png",
                "png": gallery_plots.fid_by_axis(specs),
                "alt": "FID of prior and aggregate-posterior samples against each swept hyperparameter",
            }
        )
    for p in out:
        w, h = _png_size(p["png"])
        p["w"], p["h"] = round(w * 2 / 3), round(h * 2 / 3)  # drawn at 150 dpi, shown at 100
        p["pixelated"] = False
    return out


def _png_size(data: bytes) -> tuple[int, int]:
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")  # the IHDR chunk


def parallel(sweep: dict, axes: list[dict]) -> dict | None:
    runs = [r for r in sweep["runs"] if all(metric(r, k) is not None for k in PARALLEL)]
    if len(runs) < 2:
        return None
    cols, values = [], {r["name"]: [] for r in runs}
    for a in axes:
        pos = {vkey(v): i / max(len(a["values"]) - 1, 1) for i, v in enumerate(a["values"])}
        cols.append(
            {"label": a["label"], "top": fmt_param(a["values"][-1]), "bottom": fmt_param(a["values"][0])}
        )
        for r in runs:
            values[r["name"]].append(pos.get(vkey(r["params"].get(a["key"])), 0.0))
    best: dict[str, list[str]] = {}
    for key, lab, better, spec in (m for m in METRICS if m[0] in PARALLEL):
        vals = [metric(r, key) for r in runs]
        lo, hi = min(vals), max(vals)
        up = better != "min"  # better values at the top, so the best lines run high
        cols.append(
            {
                "label": lab + (" ↑" if better else ""),
                "top": fmt(hi if up else lo, spec),
                "bottom": fmt(lo if up else hi, spec),
            }
        )
        for r, v in zip(runs, vals, strict=False):
            t = (v - lo) / (hi - lo) if hi > lo else 0.5
            values[r["name"]].append(t if up else 1 - t)
        if better:
            winner = (max if better == "max" else min)(runs, key=lambda r: metric(r, key))
            best.setdefault(winner["name"], []).append(lab)
    colors = dict(zip(best, itertools.cycle(PALETTE)))
    lines = [
        {
            "name": r["name"],
            "values": values[r["name"]],
            "best": r["name"] in best,
            "color": colors.get(r["name"], "#9aa3ad"),
            "why": ", ".join(best.get(r["name"], [])),
        }
        for r in runs
    ]
    svg = gallery_plots.parallel_coords(cols, lines)
    svg["legend"] = [ln for ln in lines if ln["best"]]
    return svg
