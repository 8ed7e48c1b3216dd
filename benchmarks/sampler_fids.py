"""Each sampler's FID per run of a post-processed sweep: python -m benchmarks.sampler_fids runs/demo.

Reads only the trials' summary.json files. Columns: FID of N(0, I), aggregate Gaussian, label-free
mixture (its size), two-stage VAE, reconstructions (the decoder's floor), the best label-free
sampler and the share of the prior-to-reconstruction gap it closes; then the seconds the two new
samplers took to fit ("samplers" step). With replicates, a last table gives mean ± std per grid point.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

COLS = ["fid_prior", "fid_aggregate", "fid_gmm", "fid_two_stage", "fid_recon"]


def rows(sweep_dir: Path) -> list[dict]:
    out = []
    for path in sorted((sweep_dir / "trials").glob("*/summary.json")):
        s = json.loads(path.read_text())
        out.append(
            {
                "trial": s["trial"],
                "params": s["params"],
                **s["metrics"],
                **{"fit_s": s["timings"].get("samplers")},
            }
        )
    return out


def per_run(table: list[dict]) -> str:
    lines = [
        "| run | N(0, I) | aggregate | mixture (k) | two-stage | recon (floor) | best | gap closed | fit s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['trial']} | {r['fid_prior']:.1f} | {r['fid_aggregate']:.1f} | "
            f"{r['fid_gmm']:.1f} ({r['gmm_components']}) | {r['fid_two_stage']:.1f} | {r['fid_recon']:.1f} | "
            f"{r['best_sampler']} | {100 * r['gap_closed']:.0f}% | {r['fit_s']:.1f} |"
        )
    return "\n".join(lines)


def per_group(table: list[dict]) -> str:
    groups: dict[str, list[dict]] = {}
    for r in table:
        key = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in r["params"].items() if k != "train.seed")
        groups.setdefault(key, []).append(r)
    lines = [
        "| grid point | n | " + " | ".join(COLS) + " | gap closed |",
        "|---|---|" + "---|" * (len(COLS) + 1),
    ]
    for key, rs in groups.items():
        cells = [_ms([r[c] for r in rs]) for c in COLS] + [_ms([100 * r["gap_closed"] for r in rs], "%")]
        lines.append(f"| {key} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ms(values: list[float], unit: str = "") -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f}{unit} ± {sd:.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("sweep_dir", type=Path)
    table = rows(p.parse_args().sweep_dir)
    print(per_run(table))
    if any("train.seed" in r["params"] for r in table):
        print()
        print(per_group(table))


if __name__ == "__main__":
    main()
