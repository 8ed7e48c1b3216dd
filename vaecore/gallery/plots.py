"""Gallery pictures: rate-distortion and FID-per-axis plots (matplotlib PNG), parallel-coordinates SVG."""

from __future__ import annotations

import io
import textwrap

from vaecore import catalog

# Matplotlib writes its version into PNGs by default; dropping it keeps rebuilds byte-identical.
PNG_META = {"Software": None}
DPI = 150  # pages show plots at 2/3 of their pixel size: crisp on high-density screens
POINT_LABELS = 8  # the most points that each get a name on the rate-distortion plot before they blot
LINE_LABELS = 12  # the most lines named there: 200 names (1,000 grid points) blot and took 1 s to place


def _figure(width: float, height: float):
    from vaecore.plotting import plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=DPI, layout="constrained")
    return plt, fig, ax


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata=PNG_META)
    plt.close(fig)
    return buf.getvalue()


def _place_labels(fig, ax, xs: list[float], ys: list[float], labels: list[str]) -> None:
    """Put each label at the first of a few offsets that overlaps no earlier label and stays inside
    the axes (greedy, good enough)."""
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed = []
    offsets = [
        (6, 4, "left"),
        (6, -12, "left"),
        (-6, 4, "right"),
        (-6, -12, "right"),
        (0, 10, "center"),
        (0, -18, "center"),
        (12, 14, "left"),
        (-12, -22, "right"),
    ]
    for x, y, text in zip(xs, ys, labels, strict=False):
        for dx, dy, ha in offsets:
            ann = ax.annotate(
                text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, fontsize=7.5, color="#333"
            )
            box = ann.get_window_extent(renderer).expanded(1.05, 1.1)
            inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
            if inside and not any(box.overlaps(other) for other in placed):
                placed.append(box)
                break
            ann.remove()
        else:  # nowhere free: keep the first spot, small overlaps beat a missing label
            ann = ax.annotate(
                text, (x, y), xytext=offsets[0][:2], textcoords="offset points", fontsize=7.5, color="#333"
            )
            placed.append(ann.get_window_extent(renderer))


def rate_distortion(points: list[dict], lines: str = "") -> bytes:
    """The rate-distortion PNG (rate_distortion_figure, drawn)."""
    plt, fig, _ = rate_distortion_figure(points, lines)
    return _png(plt, fig)


def rate_distortion_figure(points: list[dict], lines: str = ""):
    """KL (rate) against MSE (distortion), a point per grid point, colour = prior-sample FID.

    Values are groups.Stat (mean, std, n); points with n > 1 get ±1 std error bars on both axes.
    Points with the same "series" are joined in their "order" (lines: what a line is, for the
    title). Up to POINT_LABELS points each get their label; more would blot, so then each line
    gets its series name once, at its first point. Returns (pyplot, figure, axes).
    """
    plt, fig, ax = _figure(7.2, 4.6)
    xs = [p["kl"].mean for p in points]
    ys = [p["mse"].mean for p in points]
    series = _series(points)
    for members in series.values():
        ax.plot(
            [p["kl"].mean for p in members], [p["mse"].mean for p in members], color="#9aa3ad", lw=1, zorder=1
        )
    named = len(points) > POINT_LABELS and series  # then a name per line, not per point
    firsts = _spread([(name, m[0]) for name, m in series.items()], LINE_LABELS)
    some = f" ({len(firsts)} of {len(series)} named)" if len(firsts) < len(series) else ""
    titles = [
        _error_bars(ax, points),
        f"{lines}{', from the named end' + some if named else ''}" if series else "",
    ]
    # wrapped: a line's description over 4 axes ran past both edges of the figure
    ax.set_title("\n".join(textwrap.fill(t, 90) for t in titles if t), fontsize=8)
    _fid_colored_points(fig, ax, xs, ys, [p["fid"].mean if p["fid"] else None for p in points])
    if len(ys) > 1 and min(ys) > 0 and max(ys) / min(ys) > 20:
        _log_y(ax)
    ax.set_xlabel("rate: test KL(q(z|x) || p(z)) [nats]")
    ax.set_ylabel("distortion: test reconstruction MSE")
    ax.grid(True, color="#e5e5e5", zorder=0)
    fig.canvas.draw()  # fixes the axis limits so label boxes are measured where they will be
    if not named:
        _place_labels(fig, ax, xs, ys, [p["label"] for p in points])
    else:
        _place_labels(
            fig, ax, *([p[k].mean for _, p in firsts] for k in ("kl", "mse")), [n for n, _ in firsts]
        )
    return plt, fig, ax


def _spread(items: list, k: int) -> list:
    """At most k of the items, evenly spread from the first to the last."""
    if len(items) <= k:
        return items
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)]


def _series(points: list[dict]) -> dict[str, list[dict]]:
    """Points grouped by their "series" (none: no lines), each group in its "order"; lone points dropped."""
    out: dict[str, list[dict]] = {}
    for p in points:
        if p.get("series"):
            out.setdefault(p["series"], []).append(p)
    return {k: sorted(v, key=lambda p: p["order"]) for k, v in out.items() if len(v) > 1}


def _error_bars(ax, points: list[dict]) -> str:
    """±1 std bars on the points with replicates; returns the title that says so ("" for none)."""
    bars = [p for p in points if p["kl"].n > 1]
    if not bars:
        return ""
    ax.errorbar(
        [p["kl"].mean for p in bars],
        [p["mse"].mean for p in bars],
        xerr=[p["kl"].std for p in bars],
        yerr=[p["mse"].std for p in bars],
        fmt="none",
        ecolor="#555",
        elinewidth=0.9,
        capsize=2.5,
        zorder=2,
    )
    ns = sorted({p["kl"].n for p in bars})
    seeds = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
    return f"mean ± 1 std over {seeds} seeds per grid point"


def _log_y(ax) -> None:
    """A log y axis labelled 1, 2 and 5 in each decade as plain numbers: the default labels are
    TeX-like math, which plotting.py turns off (text.parse_math), so they would print as source."""
    from matplotlib import ticker

    ax.set_yscale("log")
    plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))


def _fid_colored_points(fig, ax, xs: list[float], ys: list[float], fids: list[float | None]) -> None:
    """The points coloured by FID (no FID: the colour map's "bad" colour) and the colour bar."""
    known = [f for f in fids if f is not None]
    sc = ax.scatter(
        xs,
        ys,
        c=[f if f is not None else float("nan") for f in fids],
        cmap="viridis_r",
        s=36,
        edgecolors="#222",
        linewidths=0.5,
        vmin=min(known, default=0),
        vmax=max(known, default=1),
        plotnonfinite=True,
        zorder=3,
    )
    if known:
        fig.colorbar(sc, ax=ax, label="FID of prior samples (lower is better)")


def fid_by_axis(axes: list[dict]) -> bytes:
    """One panel per swept axis: each sampler's FID at each value (group means, ±1 std bars)."""
    from vaecore.plotting import plt

    n = max(len(axes), 1)
    fig, subs = plt.subplots(
        1, n, figsize=(3.4 * n + 0.8, 3.2), dpi=DPI, layout="constrained", squeeze=False, sharey=True
    )
    for ax, spec in zip(subs[0], axes, strict=False):
        ticks = spec["values"]
        pos = {v: i for i, v in enumerate(ticks)}
        width = len(spec["series"])
        for s, (key, name) in enumerate(spec["series"]):
            pts = [(pos[r["value"]], r[key]) for r in spec["runs"] if r[key] is not None]
            if pts:
                _fid_series(ax, pts, len(ticks), key, name, 0.09 * (s - (width - 1) / 2))
        ax.set_xticks(range(len(ticks)), [str(t) for t in ticks])
        ax.set_xlim(-0.5, len(ticks) - 0.5)
        ax.set_xlabel(spec["label"])
        ax.grid(True, axis="y", color="#e5e5e5", zorder=0)
    subs[0][0].set_ylabel("FID (lower is better)")
    handles, labels = subs[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=7, frameon=False)  # off the data
    return _png(plt, fig)


def _fid_series(ax, pts: list[tuple[int, object]], ticks: int, key: str, name: str, jitter: float) -> None:
    """One sampler's FIDs (tick index, groups.Stat): a marker with ±1 std per group, shifted by
    jitter to keep the series apart, and a line through the means at each tick."""
    known = {r.name: r for r in catalog.SAMPLERS}
    marker, color = known[key].style if key in known else catalog.Sampler.style
    ax.errorbar(
        [x + jitter for x, _ in pts],
        [st.mean for _, st in pts],
        yerr=[st.std for _, st in pts],
        fmt=marker,
        ms=4.5,
        color=color,
        label=name,
        alpha=0.85,
        elinewidth=0.8,
        capsize=2,
        zorder=3,
    )
    means = [
        (i, sum(st.mean for x, st in pts if x == i) / n_i)
        for i in range(ticks)
        if (n_i := sum(1 for x, _ in pts if x == i))
    ]
    ax.plot([m[0] + jitter for m in means], [m[1] for m in means], color=color, lw=1, zorder=2)


def parallel_coords(axes: list[dict], runs: list[dict], width: int = 1100, height: int = 330) -> dict:
    """Inline-SVG geometry: a vertical axis per column, a polyline per run (values in 0..1, 1 = top)."""
    left, right, top, bottom = 64, 64, 46, 34
    step = (width - left - right) / max(len(axes) - 1, 1)
    xs = [left + i * step for i in range(len(axes))]
    lines = []
    for run in runs:
        pts = [(x, top + (1 - v) * (height - top - bottom)) for x, v in zip(xs, run["values"], strict=False)]
        lines.append({**run, "points": " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)})
    lines.sort(key=lambda r: r["best"])  # best runs drawn last, on top
    cols = [
        {**a, "x": f"{x:.1f}", "y_top": top, "y_bottom": height - bottom}
        for a, x in zip(axes, xs, strict=False)
    ]
    return {"width": width, "height": height, "axes": cols, "lines": lines}
