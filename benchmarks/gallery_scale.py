"""The gallery at scale: build time, page weight and first render of a generated sweep of N runs.

    .venv/bin/python -m benchmarks.gallery_scale [--runs 32 256 1000] [--browser]

Each sweep is fabricated in the documented layout by the gallery tests' own fixture writer
(tests/gallery_fixtures.make_trial: real PNG files, summary.json, metrics.jsonl), on a grid of
latent sizes x reconstruction multipliers x seeds. Reported per size: the seconds
vaecore.gallery.site.build takes (median of 3), seconds per run, index.html's size, the <img>
elements on the index, the whole site's size, and with --browser the index's first render in
headless Chromium (navigation start to the load event, and to the first contentful paint).
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

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from vaecore.gallery import site  # noqa: E402
from vaecore.runs import write_json  # noqa: E402
from vaecore.sweep import trial_name  # noqa: E402

from gallery_fixtures import make_trial  # noqa: E402 (the tests' folder is put on the path first)


def grid_for(n: int) -> dict:
    """A latent x multiplier x seed grid of about n runs: 4 multipliers, 2 or 8 seeds."""
    seeds = 8 if n >= 512 else 4 if n >= 64 else 2
    latents = max(1, round(n / (4 * seeds)))
    return {
        "model.latent_dim": list(range(2, 2 + latents)),
        "loss.recon_multiplier": [500.0, 1000.0, 5000.0, 10000.0],
        "train.seed": list(range(seeds)),
    }


def make_sweep(root: Path, n: int) -> Path:
    sdir = root / f"scale{n}"
    grid, rng, trials = grid_for(n), np.random.default_rng(0), {}
    keys = list(grid)
    for values in np.array(np.meshgrid(*grid.values(), indexing="ij")).reshape(len(keys), -1).T:
        params = {
            k: (float(v) if k == "loss.recon_multiplier" else int(v))
            for k, v in zip(keys, values, strict=True)
        }
        name = trial_name(params)
        trials[name] = {
            "params": params,
            **make_trial(sdir / "trials" / name, name, params, "completed", rng),
        }
    write_json(sdir / "manifest.json", {"sweep": sdir.name, "grid": grid, "trials": trials})
    return sdir


def build_seconds(sdir: Path) -> float:
    times = []
    for _ in range(3):
        (sdir / "manifest.json").touch()  # a rebuild that must render again, not a no-op
        start = time.perf_counter()
        site.build(sdir)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def first_render(index: Path) -> tuple[float, float]:
    """(load event, first contentful paint) in seconds after navigation start, headless Chromium."""
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
        drv.get(index.as_uri())
        nav = drv.execute_script("return performance.getEntriesByType('navigation')[0].toJSON()")
        paints = drv.execute_script("return performance.getEntriesByType('paint').map(e => e.toJSON())")
        fcp = next((p["startTime"] for p in paints if p["name"] == "first-contentful-paint"), math.nan)
        return nav["loadEventEnd"] / 1000, fcp / 1000
    finally:
        drv.quit()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, nargs="+", default=[32, 256, 1000])
    p.add_argument("--browser", action="store_true", help="also time the index's first render in Chromium")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gallery-scale-"))
    head = "| runs | build s | s per run | index.html KB | <img> on index | site MB |"
    print(head + (" load s | first paint s |" if args.browser else ""))
    print("|---" * (6 + 2 * args.browser) + "|")
    for n in args.runs:
        sdir = make_sweep(root, n)
        seconds = build_seconds(sdir)
        index = sdir / "gallery" / "index.html"
        imgs = index.read_text().count("<img")
        site_mb = sum(f.stat().st_size for f in (sdir / "gallery").rglob("*") if f.is_file()) / 1e6
        kb = index.stat().st_size / 1e3
        n = len(list((sdir / "trials").iterdir()))
        row = f"| {n} | {seconds:.2f} | {seconds / n:.4f} | {kb:.0f} | {imgs} | {site_mb:.1f} |"
        if args.browser:
            load, fcp = first_render(index)
            row += f" {load:.2f} | {fcp:.2f} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
