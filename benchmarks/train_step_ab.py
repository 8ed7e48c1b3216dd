"""Before/after for the training step: an older commit's train_epoch against this one's.

    .venv/bin/python -m benchmarks.train_step_ab [--rev d13f6f5] [--arch compact] [--per-class 500]
        [--rounds 4]

The old vaecore/train.py is loaded from git under another module name, beside the current one,
and the two alternate epochs in one process (the order flips every round), so a busy machine's
load falls on both alike. Same config, data and seed for both; images/s of each epoch after one
warm-up epoch each, and the new/old ratio per round. CPU, 2 threads.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch

from vaecore import config, data, epoch, train

REPO = Path(__file__).resolve().parent.parent


def load_old(rev: str):
    """vaecore/train.py as it was at `rev`, imported as the module `old_train`."""
    source = subprocess.run(
        ["git", "show", f"{rev}:vaecore/train.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "old_train.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_train", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_train"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rev", default="d13f6f5", help="the commit before the device-side step")
    p.add_argument("--arch", default="compact", choices=["compact", "seed"])
    p.add_argument("--per-class", type=int, default=500)
    p.add_argument("--rounds", type=int, default=4)
    args = p.parse_args()
    torch.set_num_threads(2)
    cfg = config.load("default", [f"model.arch={args.arch}", "train.batch_size=128", "train.threads=2"])
    ds = data.subset(data.load(), args.per_class, 10)
    new = types.SimpleNamespace(new_session=train.new_session, train_epoch=epoch.train_epoch)
    mods = {"old": load_old(args.rev), "new": new}
    sessions = {name: m.new_session(cfg) for name, m in mods.items()}
    rates = {"old": [], "new": []}
    load_before = os.getloadavg()
    for r in range(-1, args.rounds):  # round -1: one warm-up epoch each, not counted
        for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
            row = mods[name].train_epoch(sessions[name], ds.train_x, cfg, "cpu")
            if r >= 0:
                rates[name].append(row["images_per_s"])
    ratios = [n / o for n, o in zip(rates["new"], rates["old"], strict=True)]
    result = {
        "arch": args.arch,
        "images": len(ds.train_x),
        "old_images_per_s": [round(x) for x in rates["old"]],
        "new_images_per_s": [round(x) for x in rates["new"]],
        "new_vs_old": [round(x, 3) for x in ratios],
        "median": round(statistics.median(ratios), 3),
        "load_average": [round(x, 1) for x in (*load_before, *os.getloadavg())],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
