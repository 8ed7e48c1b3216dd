"""The index's picture matrix: one cell per grid point over the two main swept axes, three kinds.

All three are drawn after every epoch while training (epochs/samples_NNN.png, recon_NNN.png,
prototypes_NNN.png), so every cell carries each epoch's file and the one slider moves all three
views. A sweep trained before the recon and prototype grids existed shows post-processing's
final figure for those two (no frames: the slider leaves them alone).
"""

from __future__ import annotations

import itertools
import json
from typing import Any
from urllib.parse import quote

from vaecore import catalog
from vaecore.gallery.format import fmt_param, image, trial_url, vkey

# (id, label on the switch, artifact key, thumbnail width in px: the wide figures need more)
KINDS = [
    ("samples", "prior samples", "samples_prior", 160),
    ("recons", "reconstructions", "recon", 320),
    ("prototypes", "class prototypes", "prototypes", 320),
]
# artifact key -> the kind of its per-epoch grid, epochs/<kind>_NNN.png
EPOCH_KIND = {"samples_prior": "samples", "recon": "recon", "prototypes": "prototypes"}


def main_axes(axes: list[dict]) -> list[dict]:
    """The two axes with the most values, in grid order (ties keep grid order)."""
    main = sorted(axes, key=lambda a: -len(a["values"]))[:2]
    return sorted(main, key=axes.index)


def matrices(groups: list[dict], axes: list[dict], note: Any) -> dict:
    """Every kind's tables (one per combination of the other axes) and the slider's epoch range."""
    main = main_axes(axes)
    rows_ax = main[0] if main else None
    cols_ax = main[1] if len(main) > 1 else None
    others = [a for a in axes if a not in main]
    kinds = []
    for kind, lab, key, width in KINDS:
        tables = []
        for combo in itertools.product(*[a["values"] for a in others]):
            fixed = {a["key"]: vkey(v) for a, v in zip(others, combo, strict=False)}
            rows = [
                {
                    "value": fmt_param(rv) if rows_ax else "",
                    "cells": [
                        _cell(groups, {**fixed, **_pin(rows_ax, rv), **_pin(cols_ax, cv)}, key, width, note)
                        for cv in (cols_ax["values"] if cols_ax else [None])
                    ],
                }
                for rv in (rows_ax["values"] if rows_ax else [None])
            ]
            tables.append(
                {
                    "caption": ", ".join(
                        f"{a['label']} = {fmt_param(v)}" for a, v in zip(others, combo, strict=False)
                    ),
                    "rows": rows,
                    "cols": [fmt_param(v) for v in cols_ax["values"]] if cols_ax else [""],
                }
            )
        kinds.append({"id": kind, "label": lab, "tables": tables})
    cells = [c for k in kinds for t in k["tables"] for r in t["rows"] for c in r["cells"]]
    epochs = [e for c in cells for e in c["epochs"]]
    return {
        "axes": " × ".join(a["label"] for a in main),
        "corner": _corner(main),
        "kinds": kinds,
        "last_epoch": max(epochs, default=0),
    }


def _corner(main: list[dict]) -> str:
    """The corner cell's text, for screen readers: a header cell must not be empty."""
    return (
        " by ".join(f"{a['label']} ({side})" for a, side in zip(main, ("rows", "columns"), strict=False))
        or "run"
    )


def _pin(axis: dict | None, value: Any) -> dict:
    return {axis["key"]: vkey(value)} if axis else {}


def _cell(groups: list[dict], want: dict, key: str, width: int, note: Any) -> dict:
    match = [g for g in groups if all(vkey(g["params"].get(k)) == v for k, v in want.items())]
    empty = {"href": "", "name": "", "img": None, "note": "no run", "unit": "", "frames": "[]", "epochs": []}
    if not match:
        return empty
    group = match[0]
    runs = group["runs"]
    run = next((r for r in runs if r["artifacts"] or r["frames"]), runs[0])  # the first seed with pictures
    rel, frames = run["artifacts"].get(key), []
    per_epoch = run.get("epoch_images", {}).get(EPOCH_KIND[key]) or []
    if per_epoch:
        # The bare grids written per epoch (the same prior vectors, test images and class subsets
        # in every run) stay readable as thumbnails; the titled post-processing figures do not.
        frames = [(_epoch(f, i), trial_url(run, f, "")) for i, f in enumerate(per_epoch)]
        rel = per_epoch[-1]
    text = note(run) or ("" if rel else "no picture")
    if len(runs) > 1:
        text = f"seed {run['params'].get('train.seed', '?')} of {len(runs)} runs" + (
            f"; {text}" if text else ""
        )
    alt = f"{catalog.titles()[key]} of {run['name']}"
    return {
        "href": "runs/" + quote(run["page"]),
        "name": group["name"],
        "img": image(run, rel, "", alt, width=width) if rel else None,
        "note": text,
        "unit": group["id"],
        "frames": json.dumps(frames),
        "epochs": [e for e, _ in frames],
    }


def _epoch(rel: str, i: int) -> int:
    digits = rel[-7:-4]  # epochs/samples_NNN.png
    return int(digits) if digits.isdigit() else i + 1
