"""Each sampler's FID per run of a post-processed sweep: python -m benchmarks.sampler_fids runs/demo.

Reads only the trials' summary.json files. Columns: the FID and class entropy (2.303 is uniform)
of every catalogue sampler that ran, then the reconstructions' (the decoder's floor), the best
label-free sampler, the share of the prior-to-reconstruction gap it closes, and the seconds of the
"samplers" step (every fit). With replicates, a last table gives mean ± std per grid point.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from vaecore import catalog


def rows(sweep_dir: Path) -> list[dict]:
    out = []
    for path in sorted((sweep_dir / "trials").glob("*/summary.json")):
        s = json.loads(path.read_text())
        out.append(
            {
                "trial": s["trial"],
                "params": s["params"],
                **s["metrics"],
                "fit_s": s["timings"].get("samplers"),
            }
        )
    return out


def ran(table: list[dict]) -> list[catalog.Sampler]:
    return [s for s in catalog.SAMPLERS if any(r.get(s.fid_key) is not None for r in table)]


def cell(r: dict, fid_key: str, coverage_key: str) -> str:
    fid, cov = r.get(fid_key), (r.get(coverage_key) or {}).get("entropy")
    if fid is None:
        return "-"
    size = f" (k={r['gmm_components']})" if fid_key == "fid_gmm" else ""
    return f"{fid:.1f}{size} / {cov:.2f}" if cov is not None else f"{fid:.1f}{size}"


def per_run(table: list[dict]) -> str:
    shown = ran(table)
    head = [s.short for s in shown] + ["reconstructions"]
    lines = [
        "| run | " + " | ".join(head) + " | best | gap closed | fit s |",
        "|---|" + "---|" * (len(head) + 3),
    ]
    for r in table:
        cells = [cell(r, s.fid_key, s.coverage_key) for s in shown] + [cell(r, "fid_recon", "coverage_recon")]
        closed = f"{100 * r['gap_closed']:.0f}%" if r.get("gap_closed") is not None else "-"
        lines.append(
            f"| {r['trial']} | "
            + " | ".join(cells)
            + f" | {r['best_sampler']} | {closed} | {r['fit_s']:.1f} |"
        )
    return "\n".join(lines)


def per_group(table: list[dict]) -> str:
    cols = [s.fid_key for s in ran(table)] + ["fid_recon"]
    groups: dict[str, list[dict]] = {}
    for r in table:
        key = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in r["params"].items() if k != "train.seed")
        groups.setdefault(key, []).append(r)
    lines = [
        "| grid point | n | " + " | ".join(cols) + " | gap closed |",
        "|---|---|" + "---|" * (len(cols) + 1),
    ]
    for key, rs in groups.items():
        cells = [_ms([r[c] for r in rs]) for c in cols] + [_ms([100 * r["gap_closed"] for r in rs], "%")]
        lines.append(f"| {key} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ms(values: list[float], unit: str = "") -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f}{unit} ± {sd:.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("sweep_dir", type=Path)
    table = rows(p.parse_args().sweep_dir)
    print("FID / class entropy per sampler")
    print(per_run(table))
    if any("train.seed" in r["params"] for r in table):
        print()
        print(per_group(table))


if __name__ == "__main__":
    main()
