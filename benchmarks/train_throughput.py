"""Training throughput three ways on the same config: a plain loop, vaecore's loop, one Ray trial.

    .venv/bin/python benchmarks/train_throughput.py [--per-class 2000] [--epochs 2] [--arch compact]

Same data, model, batch (128) and thread count (2) everywhere. Images/s is measured over the
training passes only (the last epoch, so start-up effects are excluded); Ray's start-up and the
per-trial overhead around training are reported separately, in seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from vaecore import config, data, runs, train
from vaecore.losses import vae_loss
from vaecore.model import build

REPO = Path(__file__).resolve().parent.parent


def plain_loop(cfg, ds, epochs: int) -> float:
    """The textbook loop (pytorch/examples vae style) on in-memory tensors: the baseline."""
    torch.manual_seed(0)
    model = build(cfg.model.arch, cfg.model.latent_dim)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x_all = ds.train_x
    for _ in range(epochs):
        perm = torch.randperm(len(x_all))
        start = time.perf_counter()
        for idx in perm.split(cfg.train.batch_size):
            x = x_all[idx].unsqueeze(1).float() / 255
            x_hat, mu, log_var = model(x)
            loss = vae_loss(x, x_hat, mu, log_var, "mse", cfg.loss.recon_multiplier, 1.0)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        seconds = time.perf_counter() - start
    return len(x_all) / seconds


def vaecore_loop(cfg, ds, epochs: int) -> float:
    s = train.new_session(cfg)
    for _ in range(epochs):
        row = train.run_epoch(s, ds, cfg, "cpu")
    return row["images_per_s"]


def ray_trial(args, epochs: int) -> dict:
    """One trial, one worker with 2 CPUs, through the real sweep job; timings from its files."""
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "bench.toml"
        sweep.write_text(
            f'name = "bench"\nbase = "default"\n[set]\n"model.arch" = "{args.arch}"\n'
            f'"train.epochs" = {epochs}\n"data.train_per_class" = {args.per_class}\n'
            f'"data.test_per_class" = 100\n"resources.cpus_per_worker" = 2\n[grid]\n'
            f'"train.seed" = [0]\n'
        )
        start = time.time()
        proc = subprocess.run(
            [sys.executable, "-m", "jobs.sweep", "--config", str(sweep), "--out", tmp, "--no-postprocess"],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        wall = time.time() - start
        if proc.returncode:
            sys.exit(proc.stdout + proc.stderr)
        trial = Path(tmp) / "bench" / "trials" / "s0"
        rows = runs.read_jsonl(trial / "metrics.jsonl")
        status = runs.read_json(trial / "status.json")
        manifest = runs.read_json(Path(tmp) / "bench" / "manifest.json")
    busy = sum(r["train_seconds"] + r["eval_seconds"] for r in rows)
    return {
        "images_per_s": rows[-1]["images_per_s"],
        "job_wall_s": wall,
        "ray_init_s": manifest["timings"]["ray_init_s"],
        "trial_s": status["seconds"],
        "trial_overhead_s": status["seconds"] - busy,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--per-class", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--arch", default="compact", choices=["compact", "seed"])
    args = p.parse_args()
    cfg = config.load("default", [f"model.arch={args.arch}", "train.batch_size=128", "train.threads=2"])
    torch.set_num_threads(2)
    ds = data.subset(data.load(), args.per_class, 100)
    plain = plain_loop(cfg, ds, args.epochs)
    ours = vaecore_loop(cfg, ds, args.epochs)
    ray = ray_trial(args, args.epochs)
    result = {
        "arch": args.arch,
        "images": len(ds.train_x),
        "threads": 2,
        "batch": 128,
        "plain_images_per_s": round(plain),
        "vaecore_images_per_s": round(ours),
        "ray_images_per_s": round(ray["images_per_s"]),
        "vaecore_vs_plain": round(ours / plain, 3),
        "ray_vs_plain": round(ray["images_per_s"] / plain, 3),
        **{k: round(v, 2) for k, v in ray.items() if k != "images_per_s"},
        "torch": torch.__version__,
        "cpu_count": torch.get_num_threads(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
