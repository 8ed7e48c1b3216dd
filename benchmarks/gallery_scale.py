"""The gallery at scale: build time, page weight and first render of a generated sweep of N runs.

    .venv/bin/python -m benchmarks.gallery_scale [--runs 256 1000] [--browser] [--dir DIR] [--no-replicates]

Each sweep is fabricated in the documented layout by the gallery tests' own fixture writer
(tests/gallery_fixtures.make_grid_sweep: real PNG files, summary.json, metrics.jsonl), on a
grid of latent sizes x reconstruction multipliers x likelihoods x seeds (grid_for: exactly 256
and 1,000 runs). Reported per size: the seconds vaecore.gallery.site.build takes (median of 3),
seconds per run, index.html's size, the <img> elements in it, the whole site's size, and with
--browser the index's first render in headless Chromium (navigation start to the load event
and to the first contentful paint, medians of 3 loads) with the <img> the page lays out and
those it has loaded by then (lazy ones wait until they near the window).
Prints a markdown table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from vaecore.gallery import site  # noqa: E402

from gallery_fixtures import make_grid_sweep  # noqa: E402 (the tests' folder is put on the path first)

MULTIPLIERS = [500.0, 1000.0, 2000.0, 5000.0, 10000.0]
LRS = [0.001, 0.002, 0.005, 0.01]


def grid_for(n: int, replicates: bool = True) -> dict:
    """A latent x multiplier x likelihood x seed grid of n runs (exactly, for 32, 256 and 1000):
    2 likelihoods, 2 or 4 seeds, 5 multipliers where they divide the rest, else 4. The sample
    matrix gets latent rows, multiplier columns and one table per likelihood. Without replicates
    a learning-rate axis replaces the seeds: every run is a grid point of its own (n cells)."""
    seeds = 4 if n >= 512 else 2
    per_table = max(1, n // (2 * seeds))
    mults = 5 if per_table % 5 == 0 else 4
    return {
        "model.latent_dim": list(range(2, 2 + max(1, round(per_table / mults)))),
        "loss.recon_multiplier": MULTIPLIERS[:mults],
        "loss.likelihood": ["mse", "cb"],
    } | ({"train.seed": list(range(seeds))} if replicates else {"train.lr": LRS[:seeds]})


def build_seconds(sdir: Path) -> float:
    times = []
    for _ in range(3):
        (sdir / "manifest.json").touch()  # a rebuild that must render again, not a no-op
        start = time.perf_counter()
        site.build(sdir)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def first_render(index: Path) -> tuple[float, float, int, int]:
    """Headless Chromium: the load event and the first contentful paint in seconds after
    navigation start, then the <img> the page lays out (not display: none) and those loaded."""
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
        f"--user-data-dir={tempfile.mkdtemp()}",
    ):
        opts.add_argument(flag)
    drv = webdriver.Chrome(options=opts, service=webdriver.ChromeService("/usr/bin/chromedriver"))
    try:
        loads, paints = [], []
        for _ in range(3):  # the median of a cold load and two warm ones: the box may be shared
            drv.get(index.as_uri())
            nav = drv.execute_script("return performance.getEntriesByType('navigation')[0].toJSON()")
            paint = drv.execute_script("return performance.getEntriesByType('paint').map(e => e.toJSON())")
            fcp = next((p["startTime"] for p in paint if p["name"] == "first-contentful-paint"), math.nan)
            loads.append(nav["loadEventEnd"] / 1000)
            paints.append(fcp / 1000)
        shown, loaded = drv.execute_script(
            "var i = Array.from(document.images); return ["
            "i.filter(function (e) { return e.getClientRects().length; }).length,"
            "i.filter(function (e) { return e.complete && e.naturalWidth > 0; }).length];"
        )
        return statistics.median(loads), statistics.median(paints), shown, loaded
    finally:
        drv.quit()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, nargs="+", default=[256, 1000])
    p.add_argument("--browser", action="store_true", help="also time the index's first render in Chromium")
    p.add_argument("--dir", type=Path, help="fabricate the sweeps here, or reuse those a run left there")
    p.add_argument("--no-replicates", action="store_true", help="a train.lr axis instead of seeds")
    args = p.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="gallery-scale-"))
    head = "| runs | build s | s per run | index.html KB | <img> in index.html | site MB |"
    print(head + (" load s | first paint s | <img> laid out | <img> loaded |" if args.browser else ""))
    print("|---" * (6 + 4 * args.browser) + "|")
    for n in args.runs:
        sdir = root / (f"scale{n}" if not args.no_replicates else f"flat{n}")
        if not (sdir / "manifest.json").is_file():
            make_grid_sweep(root, grid_for(n, not args.no_replicates), sdir.name)
        seconds = build_seconds(sdir)
        index = sdir / "gallery" / "index.html"
        imgs = index.read_text().count("<img")
        site_mb = sum(f.stat().st_size for f in (sdir / "gallery").rglob("*") if f.is_file()) / 1e6
        kb = index.stat().st_size / 1e3
        n = len(list((sdir / "trials").iterdir()))
        row = f"| {n} | {seconds:.2f} | {seconds / n:.4f} | {kb:.0f} | {imgs} | {site_mb:.1f} |"
        if args.browser:
            load, fcp, shown, loaded = first_render(index)
            row += f" {load:.2f} | {fcp:.2f} | {shown} | {loaded} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
