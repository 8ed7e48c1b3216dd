"""What every gallery page shares: number formats and image attributes (the names and titles of
samplers, metrics and figures are in vaecore.catalog)."""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import quote

DASH = "–"


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
    """A number from summary.json's metrics; "coverage_gmm.entropy" reads inside a table."""
    m = run["summary"].get("metrics")
    for part in key.split("."):
        m = m.get(part) if isinstance(m, dict) else None
    return number(m)


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
