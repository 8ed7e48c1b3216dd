"""index.html's data: the header facts, the runs table, the plots, parallel coordinates, sample matrices."""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import quote

from vaecore.gallery import plots as charts
from vaecore.gallery.format import (
    DASH,
    METRICS,
    TITLES,
    fmt,
    fmt_param,
    fmt_seconds,
    image,
    label,
    metric,
    number,
    vkey,
)

PARALLEL = ["test_elbo", "test_mse", "test_kl", "fid_prior", "recon_accuracy"]
PALETTE = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"]


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
                "png": charts.rate_distortion(pts),
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
                "png": charts.fid_by_axis(specs),
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
    svg = charts.parallel_coords(cols, lines)
    svg["legend"] = [ln for ln in lines if ln["best"]]
    return svg


def matrices(sweep: dict, axes: list[dict], kind: str) -> list[dict]:
    """Thumbnails on the two axes with the most values; one matrix per combination of the other axes."""
    main = sorted(axes, key=lambda a: -len(a["values"]))[:2]  # stable: ties keep grid order
    main.sort(key=axes.index)
    rows_ax = main[0] if main else None
    cols_ax = main[1] if len(main) > 1 else None
    others = [a for a in axes if a not in main]
    groups = []
    for combo in itertools.product(*[a["values"] for a in others]):
        fixed = {a["key"]: vkey(v) for a, v in zip(others, combo, strict=False)}
        caption = ", ".join(f"{a['label']} = {fmt_param(v)}" for a, v in zip(others, combo, strict=False))
        rows = []
        for rv in rows_ax["values"] if rows_ax else [None]:
            cells = [
                _cell(sweep, {**fixed, **_pin(rows_ax, rv), **_pin(cols_ax, cv)}, kind)
                for cv in (cols_ax["values"] if cols_ax else [None])
            ]
            rows.append({"value": fmt_param(rv) if rows_ax else "", "cells": cells})
        groups.append(
            {
                "caption": caption,
                "rows": rows,
                "cols": [fmt_param(v) for v in cols_ax["values"]] if cols_ax else [""],
            }
        )
    return groups


def _pin(axis: dict | None, value: Any) -> dict:
    return {axis["key"]: vkey(value)} if axis else {}


def _cell(sweep: dict, want: dict, kind: str) -> dict:
    match = [r for r in sweep["runs"] if all(vkey(r["params"].get(k)) == v for k, v in want.items())]
    if not match:
        return {"href": "", "name": "", "img": None, "note": "no run"}
    run = match[0]
    rel = run["artifacts"].get(kind)
    if kind == "samples_prior" and run["frames"]:
        # The last epoch's bare 8 x 8 grid (the same prior vectors in every run of one latent
        # size) stays readable as a thumbnail; the titled 10 x 10 figure does not.
        rel = run["frames"][-1]
    note = run_note(run) or ("" if rel else "no picture")
    img = image(run, rel, "", f"{TITLES[kind]} of {run['name']}", width=160) if rel else None
    return {"href": "runs/" + quote(run["page"]), "name": run["name"], "img": img, "note": note}


def index_context(sweep: dict) -> dict:
    m, runs = sweep["manifest"], sweep["runs"]
    axes = swept_axes(sweep)
    count = {s: sum(r["state"] == s for r in runs) for s in ("completed", "failed", "pending")}
    unprocessed = sum(r["state"] == "completed" and not r["post_processed"] for r in runs)
    hw = m.get("hardware") if isinstance(m.get("hardware"), dict) else {}
    gpus = ", ".join(map(str, hw.get("gpu_names") or []))
    timings = m.get("timings") if isinstance(m.get("timings"), dict) else {}
    versions = m.get("versions") if isinstance(m.get("versions"), dict) else {}
    facts = [
        ("description", str(m.get("description") or sweep["description"] or DASH)),
        ("dataset", _dataset(runs)),
        ("base config", str(m.get("base") or DASH)),
        (
            "runs",
            f"{len(runs)}: {count['completed']} completed, {count['failed']} failed, "
            f"{count['pending']} pending" + (f" ({unprocessed} not post-processed)" if unprocessed else ""),
        ),
        ("total training time", fmt_seconds(sum(r["seconds"] or 0 for r in runs))),
        ("sweep wall time", fmt_seconds(number(timings.get("sweep_s")))),
        (
            "hardware",
            f"{hw.get('nodes', '?')} node(s), {hw.get('cpus', '?')} CPUs, {hw.get('gpus', 0)} GPUs"
            + (f" ({gpus})" if gpus else ""),
        ),
        ("versions", ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) or DASH),
        ("git revision", str(m.get("git") or DASH)),
        ("overrides", ", ".join(f"{k}={fmt_param(v)}" for k, v in (m.get("set") or {}).items()) or DASH),
        ("built from inputs as of", sweep["inputs_time"]),
    ]
    return {
        "title": sweep["name"],
        "root": "",
        "sweep": sweep["name"],
        "facts": facts,
        "table": table(sweep, axes),
        "plots": plots(sweep, axes),
        "parallel": parallel(sweep, axes),
        "samples": matrices(sweep, axes, "samples_prior"),
        "recons": matrices(sweep, axes, "recon"),
        "matrix_axes": " × ".join(a["label"] for a in sorted(axes, key=lambda a: -len(a["values"]))[:2]),
    }


def _dataset(runs: list[dict]) -> str:
    data = next((r["config"].get("data") for r in runs if isinstance(r["config"].get("data"), dict)), {})
    per_class = number(data.get("train_per_class"))
    return "Fashion-MNIST" + (f" ({per_class:.0f} training images per class)" if per_class else "")
