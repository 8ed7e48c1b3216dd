"""Gallery index page data: the header facts and the sample matrices, plus the views in gallery_views."""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import quote

from vaecore.gallery_views import (
    DASH,
    TITLES,
    fmt_param,
    fmt_seconds,
    image,
    number,
    parallel,
    plots,
    run_note,
    swept_axes,
    table,
    vkey,
)


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
