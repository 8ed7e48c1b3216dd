"""The index's picture matrix: one cell per grid point over the two main swept axes, three kinds.

Prior samples exist per epoch (epochs/samples_NNN.png, written while training), so their cells
carry every epoch's file for the one slider; reconstructions and class prototypes are rendered
once, by post-processing, so those cells show the final epoch only (the page says so).
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
    epochs = [
        e for k in kinds[:1] for t in k["tables"] for r in t["rows"] for c in r["cells"] for e in c["epochs"]
    ]
    return {
        "axes": " × ".join(a["label"] for a in main),
        "kinds": kinds,
        "last_epoch": max(epochs, default=0),
    }


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
    if key == "samples_prior" and run["frames"]:
        # The bare 8 x 8 grids written per epoch (the same prior vectors in every run of one latent
        # size) stay readable as thumbnails; the titled 10 x 10 figure does not.
        frames = [(_epoch(f, i), trial_url(run, f, "")) for i, f in enumerate(run["frames"])]
        rel = run["frames"][-1]
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
