"""Is bf16 training a quality trade? Test ELBO of fp32 and bf16 (+ channels_last) over seeds.

    python -m benchmarks.train_precision [--seeds 0 1 2] [--per-class 1000] [--epochs 1]

Each run is the demo's z16-r50000 recipe (compact, latent 16, x50000, batch 128, plateau) on the
first --per-class training images of each class and 500 test images a class, one thread, trained
in this process by vaecore.train.fit. Prints one row per run (test ELBO, images/s) and, per
precision, the mean and the seed standard deviation: the difference of the means is to be read
against that spread. Evaluation is fp32 in both (vaecore.epoch.evaluate), so the ELBOs compare.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from vaecore import config, data, train

RECIPE = ["model.arch=compact", "model.latent_dim=16", "loss.recon_multiplier=50000", "train.threads=1"]
PRECISIONS = {"fp32": ["train.precision=fp32"], "bf16": ["train.precision=bf16", "train.channels_last=true"]}


def run(ds: data.FashionMNIST, seed: int, name: str, epochs: int) -> dict:
    cfg = config.load("default", [*RECIPE, *PRECISIONS[name], f"train.seed={seed}", f"train.epochs={epochs}"])
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as d:
        train.fit(cfg, ds, Path(d), on_epoch=rows.append)
    return {
        "precision": name,
        "seed": seed,
        "test_elbo": rows[-1]["test_elbo"],
        "img_s": rows[-1]["images_per_s"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--per-class", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(1)
    ds = data.subset(data.load(), a.per_class, 500)
    out = [run(ds, s, name, a.epochs) for s in a.seeds for name in PRECISIONS]
    print("| precision | seed | test ELBO | images/s |\n|---|---|---|---|")
    for r in out:
        print(f"| {r['precision']} | {r['seed']} | {r['test_elbo']:.2f} | {r['img_s']:.0f} |")
    print("\n| precision | test ELBO mean | seed std | images/s mean |\n|---|---|---|---|")
    for name in PRECISIONS:
        elbo = [r["test_elbo"] for r in out if r["precision"] == name]
        speed = [r["img_s"] for r in out if r["precision"] == name]
        sd = statistics.stdev(elbo) if len(elbo) > 1 else 0.0
        print(f"| {name} | {statistics.mean(elbo):.2f} | {sd:.2f} | {statistics.mean(speed):.0f} |")


if __name__ == "__main__":
    main()
