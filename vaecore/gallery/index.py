"""index.html's data: the header facts, the runs table (grouped by seed), plots, parallel coordinates.

With replicates (train.seed swept) every table row, plot point and parallel-coordinates line is
a group of runs that differ only in seed (vaecore.gallery.groups); without, a group is one run.
"""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import quote

from vaecore import catalog
from vaecore.gallery import groups as grp
from vaecore.gallery import matrix
from vaecore.gallery import plots as charts
from vaecore.gallery.format import (
    DASH,
    fmt,
    fmt_param,
    fmt_seconds,
    image,
    label,
    metric,
    number,
    vkey,
)
from vaecore.images import image_size

PARALLEL = ["test_elbo", "test_mse", "test_kl", "fid_prior", "recon_accuracy"]
PALETTE = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"]
# Rows of the runs table on one page (with replicates: grid points, each with its runs). All rows
# are in the page, for sorting over all of them and for reading without JavaScript; gallery.js
# shows a page at a time, and the style sheet hides the later ones before it runs.
PAGE_ROWS = 50


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


def shown_metrics(groups: list[dict]) -> list[catalog.Metric]:
    """The runs table's metric columns: an optional sampler's FID (two-stage is off by default)
    only when some run has it, since an empty column says nothing."""
    optional = {s.fid_key for s in catalog.SAMPLERS if s.option}
    runs = [r for g in groups for r in g["runs"]]
    return [
        x
        for x in catalog.metrics()
        if x.key not in optional or any(metric(r, x.key) is not None for r in runs)
    ]


def table(groups: list[dict], axes: list[dict], replicated: bool) -> dict:
    cols = [{"label": a["label"], "title": a["key"], "numeric": True} for a in axes]
    table_metrics = shown_metrics(groups)
    cols += [{"label": x.label, "title": x.key, "numeric": True} for x in table_metrics]
    cols += [
        {"label": "best sampler", "title": "label-free sampler with the lowest FID", "numeric": False},
        {"label": "epochs", "title": "epochs trained", "numeric": True},
        {"label": "train time", "title": "training wall time", "numeric": True},
    ]
    stats = {x.key: [grp.group_stat(g, x.key) for g in groups] for x in table_metrics}
    marks = {x.key: grp.verdicts(stats[x.key], x.better) for x in table_metrics if x.better}
    rows = []
    for i, g in enumerate(groups):
        if replicated:
            unit = [
                _group_row(
                    g,
                    axes,
                    {k: (stats[k][i], marks.get(k, [""] * len(groups))[i]) for k in stats},
                    table_metrics,
                )
            ]
            unit += [{**_row(r, g, axes, {}, table_metrics), "kind": "member"} for r in g["runs"]]
        else:
            unit = [_row(g["runs"][0], g, axes, {k: m[i] for k, m in marks.items()}, table_metrics)]
        rows += [{**r, "off_page": i >= PAGE_ROWS} for r in unit]  # gallery.js pages them in
    return {
        "cols": cols,
        "rows": rows,
        "replicated": replicated,
        "rule": grp.RULE,
        "page_rows": PAGE_ROWS,
        "units": len(groups),
        "unit_name": "grid points" if replicated else "runs",
    }


def _group_row(g: dict, axes: list[dict], metrics: dict, shown: list[catalog.Metric]) -> dict:
    """A grid point's row: mean ± std (n) per metric, its best sampler, summed training time."""
    cells = [_text_cell(fmt_param(g["params"].get(a["key"], DASH)), g["params"].get(a["key"])) for a in axes]
    for x in shown:
        st, mark = metrics[x.key]
        cells.append(
            {"text": grp.fmt_stat(st, x.format), "sort": _sort(st.mean if st else None), "mark": mark}
        )
    cells.append(_text_cell(best_sampler(g)))
    epochs = grp.stat([r["epochs"] for r in g["runs"] if r["epochs"] is not None])
    seconds = sum(r["seconds"] or 0 for r in g["runs"])
    cells.append(_text_cell(fmt(epochs.mean if epochs else None, "{:.0f}"), epochs.mean if epochs else None))
    cells.append(_text_cell(fmt_seconds(seconds), seconds))
    n, done = len(g["runs"]), sum(r["post_processed"] for r in g["runs"])
    return {
        "kind": "group",
        "name": g["name"],
        "href": "",
        "state": "completed" if done else g["runs"][0]["state"],
        "note": f"{n} seeds" + ("" if done == n else f" ({done} processed)"),
        "unit": g["id"],
        "cells": cells,
    }


def _row(run: dict, group: dict, axes: list[dict], marks: dict, shown: list[catalog.Metric]) -> dict:
    cells = [
        _text_cell(fmt_param(run["params"].get(a["key"], DASH)), run["params"].get(a["key"])) for a in axes
    ]
    for x in shown:
        v = metric(run, x.key)
        cells.append({"text": fmt(v, x.format), "sort": _sort(v), "mark": marks.get(x.key, "")})
    cells.append(_text_cell(best_sampler({"runs": [run]})))
    cells.append(_text_cell(fmt(run["epochs"], "{:.0f}"), run["epochs"]))
    cells.append(_text_cell(fmt_seconds(run["seconds"]), run["seconds"]))
    return {
        "kind": "run",
        "name": run["name"],
        "href": "runs/" + quote(run["page"]),
        "state": run["state"],
        "note": run_note(run),
        "unit": group["id"],
        "cells": cells,
    }


def _text_cell(text: str, sort: Any = None) -> dict:
    return {
        "text": text,
        "sort": _sort(sort) if sort is not None else ("" if text == DASH else text),
        "mark": "",
    }


def best_sampler(group: dict) -> str:
    """'2-stage VAE (31.2)': the catalogue's best sampler on the group's mean FIDs and class
    entropies (a sampler that drops classes is passed over)."""
    mean = lambda key: st.mean if (st := grp.group_stat(group, key)) else None  # noqa: E731
    means = {s.name: mean(s.fid_key) for s in catalog.SAMPLERS}
    entropies = {s.name: mean(f"{s.coverage_key}.entropy") for s in catalog.SAMPLERS}
    best = catalog.best_sampler(means, entropies, mean("coverage_recon.entropy"))
    return DASH if best is None else f"{catalog.sampler(best).short} ({means[best]:.1f})"


def _sort(v: Any) -> str:
    return "" if v is None else fmt_param(v)


def run_note(run: dict) -> str:
    if run["state"] == "failed":
        return "failed: " + (run["reason"] or "no reason recorded")
    if run["state"] in ("pending", "running"):
        return f"{run['state']}: {epochs_done(run)}"
    return "" if run["post_processed"] else "not post-processed"


def epochs_done(run: dict) -> str:
    """'epoch 3/10': epochs in metrics.jsonl against the config's train.epochs."""
    train = run["config"].get("train") if isinstance(run["config"].get("train"), dict) else {}
    total = number(train.get("epochs"))
    return f"epoch {len(run['history'])}/{total:.0f}" if total else f"epoch {len(run['history'])}"


def in_progress(runs: list[dict]) -> list[dict]:
    """Runs still training or waiting, each with its latest epoch's sample grid (the newest frame)."""
    out = []
    for r in runs:
        if r["state"] not in ("running", "pending"):
            continue
        frame = r["frames"][-1] if r["frames"] else None
        alt = f"{r['name']}: prior samples after the latest epoch"
        out.append(
            {
                "name": r["name"],
                "href": "runs/" + quote(r["page"]),
                "state": r["state"],
                "epochs": epochs_done(r),
                "img": image(r, frame, "", alt, width=(r["sizes"].get(frame) or (232,))[0])
                if frame
                else None,
            }
        )
    return out


def plots(groups: list[dict], axes: list[dict]) -> list[dict]:
    """Rate-distortion and FID per axis; with replicates, points are group means with ±1 std bars."""
    out = [p for p in (_rate_distortion_plot(groups, axes), _fid_by_axis_plot(groups, axes)) if p]
    for p in out:
        w, h = image_size(p["png"])
        p["w"], p["h"] = round(w * 2 / 3), round(h * 2 / 3)  # drawn at 150 dpi, shown at 100
        p["pixelated"] = False
    return out


def _rate_distortion_plot(groups: list[dict], axes: list[dict]) -> dict | None:
    pts, lines = rate_distortion_points(groups, axes)
    if not pts:
        return None
    return {
        "src": "plots/rate_distortion.png",
        "png": charts.rate_distortion(pts, lines),
        "alt": "Rate-distortion: test KL against reconstruction MSE, one point per grid point, "
        "colour = FID of prior samples" + (f"; {lines}" if lines else ""),
    }


def rate_distortion_points(groups: list[dict], axes: list[dict]) -> tuple[list[dict], str]:
    """The plot's points (each on the line of its other axes' values, ordered along the sample
    matrix's column axis) and what a line is, in words ("" without lines)."""
    st = grp.group_stat
    have = [g for g in groups if st(g, "test_kl") and st(g, "test_mse")]
    main = matrix.main_axes(axes)
    along = main[1] if len(main) > 1 else None  # the sample matrix's column axis
    others = [a for a in axes if a is not along] if along else []
    pts = [
        {"kl": st(g, "test_kl"), "mse": st(g, "test_mse"), "fid": st(g, "fid_prior"), "label": g["name"]}
        | _series_of(g, others, along)
        for g in have
    ]
    named = ", ".join(a["label"] for a in others)
    if along is None:
        return pts, ""
    words = any(number(v) is None for v in along["values"])
    order = " then ".join(fmt_param(v) for v in along["values"]) if words else f"{along['label']} rising"
    return pts, f"a line joins the runs of one {named}, {order} along it"


def _series_of(group: dict, others: list[dict], along: dict | None) -> dict:
    """The point's line on the rate-distortion plot (its values of the other axes) and its place on it."""
    if along is None or along["key"] not in group["params"]:
        return {}
    v = group["params"][along["key"]]
    n = number(v)
    return {
        "series": ", ".join(f"{a['label']} {fmt_param(group['params'].get(a['key'], DASH))}" for a in others),
        "order": (n is None, n or 0.0, [vkey(x) for x in along["values"]].index(vkey(v))),
    }


def _fid_by_axis_plot(groups: list[dict], axes: list[dict]) -> dict | None:
    if not axes or not any(grp.group_stat(g, "fid_prior") for g in groups):
        return None
    return {
        "src": "plots/fid_by_axis.png",
        "png": charts.fid_by_axis([_fid_panel(groups, a) for a in axes]),
        "alt": "FID of each sampler's images against each swept hyperparameter",
    }


def _fid_panel(groups: list[dict], axis: dict) -> dict:
    """One swept axis: every sampler that has an FID is a series, each group a point at its value."""
    st = grp.group_stat
    return {
        "label": axis["label"],
        "values": [fmt_param(v) for v in axis["values"]],
        "series": [(s.name, s.short) for s in catalog.SAMPLERS if any(st(g, s.fid_key) for g in groups)],
        "runs": [
            {"value": fmt_param(g["params"][axis["key"]])}
            | {s.name: st(g, s.fid_key) for s in catalog.SAMPLERS}
            for g in groups
            if axis["key"] in g["params"]
        ],
    }


def parallel(groups: list[dict], axes: list[dict]) -> dict | None:
    """One line per group (its means); a line is coloured where its group is best beyond the noise."""
    means = {g["id"]: {k: s.mean for k in PARALLEL if (s := grp.group_stat(g, k))} for g in groups}
    units = [g for g in groups if len(means[g["id"]]) == len(PARALLEL)]
    if len(units) < 2:
        return None
    cols, values = _axis_columns(units, axes)
    best: dict[str, list[str]] = {}  # group id -> the metrics it is best at
    for x in (x for x in catalog.metrics() if x.key in PARALLEL):
        col, places = _metric_column(x, [means[g["id"]][x.key] for g in units])
        cols.append(col)
        for g, t in zip(units, places, strict=True):
            values[g["id"]].append(t)
        if x.better:
            marks = grp.verdicts([grp.group_stat(g, x.key) for g in units], x.better)
            for g, mark in zip(units, marks, strict=True):
                if mark == "best":
                    best.setdefault(g["id"], []).append(x.label)
    return _parallel_svg(cols, units, values, best)


def _axis_columns(units: list[dict], axes: list[dict]) -> tuple[list[dict], dict[str, list[float]]]:
    """A column per swept axis, its values spread evenly upwards; each group's place on each."""
    cols, values = [], {g["id"]: [] for g in units}
    for a in axes:
        pos = {vkey(v): i / max(len(a["values"]) - 1, 1) for i, v in enumerate(a["values"])}
        cols.append(
            {"label": a["label"], "top": fmt_param(a["values"][-1]), "bottom": fmt_param(a["values"][0])}
        )
        for g in units:
            values[g["id"]].append(pos.get(vkey(g["params"].get(a["key"])), 0.0))
    return cols, values


def _metric_column(x: catalog.Metric, vals: list[float]) -> tuple[dict, list[float]]:
    """A metric's column and each value's place on it (0..1): better values at the top, so the best
    lines run high."""
    lo, hi = min(vals), max(vals)
    up = x.better != "min"
    col = {
        "label": x.label + (" ↑" if x.better else ""),
        "top": fmt(hi if up else lo, x.format),
        "bottom": fmt(lo if up else hi, x.format),
    }
    places = [(v - lo) / (hi - lo) if hi > lo else 0.5 for v in vals]
    return col, places if up else [1 - t for t in places]


def _parallel_svg(cols: list[dict], units: list[dict], values: dict, best: dict[str, list[str]]) -> dict:
    colors = dict(zip(best, itertools.cycle(PALETTE)))
    lines = [
        {
            "name": g["name"],
            "unit": g["id"],
            "values": values[g["id"]],
            "best": g["id"] in best,
            "color": colors.get(g["id"], "#9aa3ad"),
            "why": ", ".join(best.get(g["id"], [])),
        }
        for g in units
    ]
    svg = charts.parallel_coords(cols, lines)
    svg["legend"] = [ln for ln in lines if ln["best"]]
    return svg


def groups_and_axes(sweep: dict) -> tuple[list[dict], list[dict], bool]:
    """The index's units (seed replicates folded into one group), the axes they differ along
    (the seed not among them) and whether the seed was swept."""
    axes = swept_axes(sweep)
    replicated = any(a["key"] == grp.SEED for a in axes)
    groups = grp.group_runs(sweep["runs"]) if replicated else _single_runs(sweep["runs"])
    return groups, [a for a in axes if a["key"] != grp.SEED], replicated


def index_context(sweep: dict) -> dict:
    groups, axes, replicated = groups_and_axes(sweep)
    return {
        "title": sweep["name"],
        "root": "",
        "sweep": sweep["name"],
        "facts": facts(sweep, groups, replicated),
        "table": table(groups, axes, replicated),
        "training": in_progress(sweep["runs"]),
        "plots": plots(groups, axes),
        "parallel": parallel(groups, axes),
        "matrix": matrix.matrices(groups, axes, run_note),
    }


def _single_runs(runs: list[dict]) -> list[dict]:
    """Without replicates every run is a group of its own."""
    return [
        {"id": f"u{i}", "name": r["name"], "params": r["params"], "runs": [r]} for i, r in enumerate(runs)
    ]


def facts(sweep: dict, groups: list[dict], replicated: bool) -> list[tuple[str, str]]:
    """The index's header: what was swept on what, how the runs stand, and where they ran."""
    m, runs = sweep["manifest"], sweep["runs"]
    hw = m.get("hardware") if isinstance(m.get("hardware"), dict) else {}
    gpus = ", ".join(map(str, hw.get("gpu_names") or []))
    timings = m.get("timings") if isinstance(m.get("timings"), dict) else {}
    versions = m.get("versions") if isinstance(m.get("versions"), dict) else {}
    seeds = max(len(g["runs"]) for g in groups) if replicated else 0
    return [
        ("description", str(m.get("description") or sweep["description"] or DASH)),
        ("dataset", _dataset(runs)),
        ("base config", str(m.get("base") or DASH)),
        ("runs", _run_counts(runs)),
        *([("replicates", f"{seeds} seeds per grid point (train.seed)")] if replicated else []),
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


def _run_counts(runs: list[dict]) -> str:
    """'12: 10 completed, 1 failed, 1 pending (2 not post-processed)'."""
    count = {s: sum(r["state"] == s for r in runs) for s in ("completed", "failed", "running", "pending")}
    unprocessed = sum(r["state"] == "completed" and not r["post_processed"] for r in runs)
    return (
        f"{len(runs)}: {count['completed']} completed, {count['failed']} failed, "
        + (f"{count['running']} running, " if count["running"] else "")
        + f"{count['pending']} pending"
        + (f" ({unprocessed} not post-processed)" if unprocessed else "")
    )


def _dataset(runs: list[dict]) -> str:
    data = next((r["config"].get("data") for r in runs if isinstance(r["config"].get("data"), dict)), {})
    per_class = number(data.get("train_per_class"))
    return "Fashion-MNIST" + (f" ({per_class:.0f} training images per class)" if per_class else "")
