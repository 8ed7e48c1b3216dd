"""Gallery page data for one run's page and for the two-run compare page (plain dicts, pre-formatted text)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from vaecore import catalog
from vaecore.gallery.format import (
    DASH,
    fmt,
    fmt_param,
    fmt_seconds,
    image,
    label,
    metric,
    number,
    trial_url,
)

HISTORY = [
    ("epoch", "{:.0f}"),
    ("lr", "{:.1e}"),
    ("loss", "{:.2f}"),
    ("test_loss", "{:.2f}"),
    ("test_elbo", "{:.2f}"),
    ("test_mse", "{:.4f}"),
    ("test_kl", "{:.2f}"),
    ("images_per_s", "{:.0f}"),
    ("train_seconds", "{:.1f}"),
]


def config_rows(tree: Any, prefix: str = "") -> list[tuple[str, str]]:
    """{"model": {"latent_dim": 3}} -> [("model.latent_dim", "3")], values shown as JSON unless strings."""
    if not isinstance(tree, dict):
        return [(prefix, tree if isinstance(tree, str) else json.dumps(tree))]
    return [kv for k, v in tree.items() for kv in config_rows(v, f"{prefix}.{k}" if prefix else str(k))]


def metric_text(run: dict, x: catalog.Metric) -> str:
    """A metric as the run page shows it. A gap closed by 100% or more means the best sampler's FID
    reached the reconstructions': the decoder, not the sampler, is the limit, and the page says so."""
    value = metric(run, x.key)
    if x.key == "gap_closed" and value is not None and value >= 1.0:
        return f"all ({fmt(value, 'pct')}): it reaches the reconstructions' FID, the decoder's floor"
    return fmt(value, x.format)


def metric_rows(run: dict) -> list[tuple[str, str]]:
    rows = [(x.label, metric_text(run, x)) for x in catalog.metrics() + list(catalog.EXTRA_METRICS)]
    m = run["summary"].get("metrics") if isinstance(run["summary"].get("metrics"), dict) else {}
    for key in ("kl_per_dim", "agg_std"):
        vals = (
            [number(v) for v in m.get(key) or [] if number(v) is not None]
            if isinstance(m.get(key), list)
            else []
        )
        if vals:
            rows.append(
                (label(key), ", ".join(f"{v:.2f}" for v in vals[:16]) + (" …" if len(vals) > 16 else ""))
            )
    rows += mixture_search(m)
    names = {s.name: s.short for s in catalog.SAMPLERS}
    if m.get("best_sampler") in names:
        rows.append(("best label-free sampler", names[m["best_sampler"]]))
    dropped = m.get("best_sampler_excluded")
    for name, why in dropped.items() if isinstance(dropped, dict) else []:
        if name in names:
            rows.append((f"not best: {names[name]}", str(why)))
    clf = run["summary"].get("classifier")
    if isinstance(clf, dict):
        rows.append(("reference classifier accuracy", fmt(number(clf.get("test_accuracy")), "pct")))
    if m.get("inception_fid_note"):
        rows.append(("Inception FID", str(m["inception_fid_note"])))
    rows += [("epochs", fmt(run["epochs"], "{:.0f}")), ("train time", fmt_seconds(run["seconds"]))]
    if run.get("precision"):
        rows.append(("trained in", trained_in(run)))
    return rows


def trained_in(run: dict) -> str:
    """'bf16 (auto: timed faster on this machine)', or the precision the config asked for."""
    train = run["config"].get("train") if isinstance(run["config"], dict) else None
    auto = isinstance(train, dict) and train.get("precision") == "auto"
    return f"{run['precision']} (auto: timed faster on this machine)" if auto else run["precision"]


def coverage_rows(run: dict) -> list[dict]:
    """Each sampler (and the reconstructions) with its FID, the class entropy of its samples and
    their class histogram as bar heights in percent of the tallest; the best and the excluded marked."""
    m = run["summary"].get("metrics") if isinstance(run["summary"].get("metrics"), dict) else {}
    dropped = m.get("best_sampler_excluded") if isinstance(m.get("best_sampler_excluded"), dict) else {}
    rows = []
    for name, short, fid_key in [("recon", "reconstructions", "fid_recon")] + [
        (s.name, s.short, s.fid_key) for s in catalog.SAMPLERS
    ]:
        cov = m.get(f"coverage_{name}")
        hist = cov.get("histogram") if isinstance(cov, dict) else None
        if not isinstance(hist, list) or len(hist) != 10 or any(number(h) is None for h in hist):
            continue
        top = max(hist) or 1.0
        note = "best" if m.get("best_sampler") == name else "drops classes" if name in dropped else ""
        rows.append(
            {
                "name": short,
                "fid": fmt(number(m.get(fid_key)), "{:.1f}"),
                "entropy": fmt(number(cov.get("entropy")), "{:.2f}"),
                "bars": [{"h": round(100 * h / top), "pct": f"{100 * h:.0f}%"} for h in hist],
                "note": note,
            }
        )
    return rows


def mixture_search(m: dict) -> list[tuple[str, str]]:
    """The mixture sizes tried and each one's held-out log-likelihood, the chosen one marked."""
    scores = m.get("gmm_heldout_ll")
    if not isinstance(scores, dict):
        return []
    pairs = [(k, number(v)) for k, v in scores.items() if str(k).isdigit() and number(v) is not None]
    pairs.sort(key=lambda kv: int(kv[0]))  # summary.json's keys come back sorted as text: 1, 13, 2
    chosen = str(m.get("gmm_components", ""))
    cell = lambda k, v: f"[{k}: {v:.2f}]" if k == chosen else f"{k}: {v:.2f}"  # noqa: E731
    text = ", ".join(cell(k, v) for k, v in pairs)
    return [("mixture sizes tried: held-out nats/point, [chosen]", text)] if pairs else []


def history(run: dict) -> dict:
    cols = [k for k, _ in HISTORY if any(k in row for row in run["history"])]
    rows = [[fmt(number(row.get(k)), spec) for k, spec in HISTORY if k in cols] for row in run["history"]]
    return {"cols": [c.replace("_", " ") for c in cols], "rows": rows}


def figures(run: dict, root: str) -> list[dict]:
    """Sections in reading order; keys the post-processing did not write are simply not shown."""
    arts = run["artifacts"]
    known = {f.key for f in catalog.FIGURES} | {s.artifact for s in catalog.SAMPLERS}
    shown = [s for s in catalog.SAMPLERS if s.artifact in arts]
    out = [_samples_section(run, shown, root)] if shown else []
    specs = list(catalog.FIGURES) + [catalog.Figure(k, label(k)) for k in sorted(arts) if k not in known]
    for f in specs:
        if f.key in arts:
            out.append(
                {
                    "title": f.title,
                    "note": f.note,
                    "captions": [],
                    "images": [image(run, arts[f.key], root, f"{f.title} of {run['name']}")],
                }
            )
    return out


def _samples_section(run: dict, shown: list[catalog.Sampler], root: str) -> dict:
    """Every sampler's picture side by side, each captioned with its FID."""
    return {
        "title": "Samples from each sampler",
        "note": "the same z seeds for the same latent size; FID on the reference classifier's "
        "features, lower is better",
        "images": [
            image(run, run["artifacts"][s.artifact], root, f"{s.title} of {run['name']}") for s in shown
        ],
        "captions": [f"{s.title}: FID {fmt(metric(run, s.fid_key), '{:.1f}')}" for s in shown],
    }


def run_context(sweep: dict, run: dict, prev: dict | None, nxt: dict | None) -> dict:
    root = "../"
    frames = [
        {
            "epoch": int(f[-7:-4]) if f[-7:-4].isdigit() else i + 1,
            "img": image(run, f, root, f"Prior samples after epoch {i + 1} of {run['name']}"),
        }
        for i, f in enumerate(run["frames"])
    ]
    return {
        "title": run["name"],
        "root": root,
        "sweep": sweep["name"],
        "run": {
            "name": run["name"],
            "state": run["state"],
            "reason": run["reason"],
            "post_processed": run["post_processed"],
            "params": [(label(k), k, fmt_param(v)) for k, v in run["params"].items()],
            "metrics": metric_rows(run),
            "coverage": coverage_rows(run),
            "config": config_rows(run["config"]),
            "history": history(run),
            "frames": frames,
            "figures": figures(run, root),
            "downloads": [{"href": trial_url(run, f, root), "name": f} for f in run["downloads"]],
        },
        "prev": _link(prev),
        "next": _link(nxt),
        "frames_json": json.dumps(
            [{"src": f["img"]["src"], "alt": f["img"]["alt"], "epoch": f["epoch"]} for f in frames]
        ),
        "compare_href": "../compare.html?a=" + quote(run["name"], safe=""),
    }


def _link(run: dict | None) -> dict | None:
    return {"href": quote(run["page"]), "name": run["name"]} if run else None


def compare_data(sweep: dict) -> dict:
    """The JSON index the compare page reads: per run its numbers and picture paths (relative to gallery/)."""
    runs, titles = [], catalog.titles()
    for run in sweep["runs"]:
        imgs = [
            {
                "key": k,
                "title": titles[k],
                **image(run, run["artifacts"][k], "", f"{titles[k]} of {run['name']}"),
            }
            for k in catalog.compare()
            if k in run["artifacts"]
        ]
        runs.append(
            {
                "name": run["name"],
                "page": "runs/" + quote(run["page"]),
                "state": run["state"],
                "reason": run["reason"],
                "params": [[label(k), fmt_param(v)] for k, v in run["params"].items()],
                "metrics": [list(r) for r in metric_rows(run)],
                "images": imgs,
            }
        )
    return {"sweep": sweep["name"], "runs": runs}


def compare_view(a: dict, b: dict) -> dict:
    """Two runs' numbers as aligned rows and their pictures as pairs (gallery.js builds the same shape)."""
    rows, seen = [], set()
    for part in ("params", "metrics"):
        va, vb = dict(a[part]), dict(b[part])
        for lab in [k for k, _ in a[part]] + [k for k, _ in b[part] if k not in va]:
            if lab not in seen:
                seen.add(lab)
                rows.append([lab, va.get(lab, DASH), vb.get(lab, DASH)])
    ia, ib = ({i["key"]: i for i in r["images"]} for r in (a, b))
    titles = catalog.titles()
    pairs = [
        {"title": titles[k], "cells": [ia.get(k), ib.get(k)]} for k in catalog.compare() if k in ia or k in ib
    ]
    return {"head": [a, b], "rows": rows, "pairs": pairs}


def compare_context(sweep: dict, data: dict) -> dict:
    """Server-side first view (two runs) so the page reads without JavaScript; the script swaps runs."""
    runs = data["runs"]
    done = [r for r in runs if r["images"]] or runs
    shown = (done[:2] * 2)[:2] if done else []
    pickers = [
        {
            "slot": slot,
            "label": lab,
            "options": [
                {"name": r["name"], "selected": bool(shown) and r["name"] == shown[i]["name"]} for r in runs
            ],
        }
        for i, (slot, lab) in enumerate((("a", "left"), ("b", "right")))
    ]
    return {
        "title": "compare",
        "root": "",
        "sweep": sweep["name"],
        "pickers": pickers,
        "view": compare_view(*shown) if shown else {"head": [], "rows": [], "pairs": []},
    }
