"""The index's picture matrix: one cell per grid point over the two main swept axes, three kinds.

All three are drawn after every epoch while training (epochs/samples_NNN.png, recon_NNN.png,
prototypes_NNN.png), so every cell carries the epochs it has and the one slider moves all three
views. A sweep trained before the recon and prototype grids existed shows post-processing's
final figure for those two (no epochs: the slider leaves them alone).

A large sweep's matrix is split into pages (one per combination of the other axes, long ones
by rows too); gallery.js shows one at a time, and all of them without JavaScript.
"""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import quote

from vaecore import catalog
from vaecore.gallery.format import fmt_param, image, vkey

# (id, label on the switch, artifact key, thumbnail width in px: the wide figures need more)
KINDS = [
    ("samples", "prior samples", "samples_prior", 160),
    ("recons", "reconstructions", "recon", 320),
    ("prototypes", "class prototypes", "prototypes", 320),
]
# artifact key -> the kind of its per-epoch grid, epochs/<kind>_NNN.png
EPOCH_KIND = {"samples_prior": "samples", "recon": "recon", "prototypes": "prototypes"}
# Thumbnails on one page of the matrix (gallery.js shows one page at a time): 1,000 grid points
# are 1,000 thumbnails per kind, more than anyone compares at once or a browser wants to lay out.
PAGE_CELLS = 48


def main_axes(axes: list[dict]) -> list[dict]:
    """The two axes with the most values, in grid order (ties keep grid order)."""
    main = sorted(axes, key=lambda a: -len(a["values"]))[:2]
    return sorted(main, key=axes.index)


def matrices(groups: list[dict], axes: list[dict], note: Any) -> dict:
    """Every kind's tables (the same pages for each kind), the pages' names and the slider's range."""
    main = main_axes(axes)
    layout = pages(main, [a for a in axes if a not in main])
    by_point: dict[tuple, dict] = {}
    for g in groups:  # one lookup per cell, not a scan of all groups (1,000 cells x 1,000 groups)
        by_point.setdefault(_point(g["params"], axes), g)
    kinds = []
    for kind, lab, key, width in KINDS:

        def cell(params: dict, key: str = key, width: int = width) -> dict:
            return _cell(by_point.get(_point(params, axes)), key, width, note)

        tables = [_table(page, i, main, cell) for i, page in enumerate(layout)]
        kinds.append({"id": kind, "label": lab, "tables": tables})
    cells = [c for k in kinds for t in k["tables"] for r in t["rows"] for c in r["cells"]]
    return {
        "axes": " × ".join(a["label"] for a in main),
        "corner": _corner(main),
        "kinds": kinds,
        "pages": [page["caption"] for page in layout] if len(layout) > 1 else [],
        "page_cells": PAGE_CELLS,
        "last_epoch": max((e for c in cells for e in c["epochs"]), default=0),
    }


def _table(page: dict, i: int, main: list[dict], cell: Any) -> dict:
    """Page i's table of one kind: cell(params) draws the grid point with those values."""
    rows_ax = main[0] if main else None
    cols_ax = main[1] if len(main) > 1 else None
    col_values = cols_ax["values"] if cols_ax else [None]
    return {
        "caption": page["caption"],
        "page": i,
        "rows": [
            {
                "value": fmt_param(rv) if rows_ax else "",
                "cells": [
                    cell({**page["fixed"], **_pin(rows_ax, rv), **_pin(cols_ax, cv)}) for cv in col_values
                ],
            }
            for rv in page["rows"]
        ],
        "cols": [fmt_param(v) for v in col_values] if cols_ax else [""],
    }


def pages(main: list[dict], others: list[dict]) -> list[dict]:
    """The matrix's pages: one per combination of the other axes, its rows split evenly so that a
    page holds at most PAGE_CELLS cells. Each: the other axes' values, its row values, a caption."""
    rows_ax = main[0] if main else None
    values = rows_ax["values"] if rows_ax else [None]
    chunks = -(-len(values) // max(1, PAGE_CELLS // (len(main[1]["values"]) if len(main) > 1 else 1)))
    step = -(-len(values) // chunks)  # even chunks: 25 rows of 5 as 9, 9, 7
    out = []
    for combo in itertools.product(*[a["values"] for a in others]):
        named = [f"{a['label']} = {fmt_param(v)}" for a, v in zip(others, combo, strict=True)]
        for i in range(0, len(values), step):
            part = values[i : i + step]
            span = fmt_param(part[0]) + (f"–{fmt_param(part[-1])}" if len(part) > 1 else "")
            out.append(
                {
                    "fixed": {a["key"]: v for a, v in zip(others, combo, strict=True)},
                    "rows": part,
                    "caption": ", ".join(named + ([f"{rows_ax['label']} {span}"] if chunks > 1 else [])),
                }
            )
    return out


def _point(params: dict, axes: list[dict]) -> tuple:
    """A grid point's place: its value on every swept axis, compared by meaning (vkey)."""
    return tuple(vkey(params.get(a["key"])) for a in axes)


def _corner(main: list[dict]) -> str:
    """The corner cell's text, for screen readers: a header cell must not be empty."""
    return (
        " by ".join(f"{a['label']} ({side})" for a, side in zip(main, ("rows", "columns"), strict=False))
        or "run"
    )


def _pin(axis: dict | None, value: Any) -> dict:
    return {axis["key"]: value} if axis else {}


def _cell(group: dict | None, key: str, width: int, note: Any) -> dict:
    """A grid point's thumbnail (its first seed with pictures), its link and the epochs it has."""
    if group is None:
        return {"href": "", "name": "", "img": None, "note": "no run", "unit": "", "epochs": []}
    runs = group["runs"]
    run = next((r for r in runs if r["artifacts"] or r["frames"]), runs[0])
    rel, epochs = run["artifacts"].get(key), []
    per_epoch = run.get("epoch_images", {}).get(EPOCH_KIND[key]) or []
    if per_epoch:
        # The bare grids written per epoch (the same prior vectors, test images and class subsets
        # in every run) stay readable as thumbnails; the titled post-processing figures do not.
        # The page carries only their epoch numbers: gallery.js swaps the _NNN in the src, where
        # a list of paths grew with epochs x grid points (15 epochs: ~1 KB a cell).
        epochs = [int(f[-7:-4]) for f in per_epoch]  # epochs/<kind>_NNN.png, as epoch_images lists
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
        "epochs": epochs,
    }
