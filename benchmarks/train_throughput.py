"""Training throughput per preset on one device: a plain loop against vaecore's loop; one Ray trial.

    .venv/bin/python benchmarks/train_throughput.py [--device cpu|cuda] [--arch compact seed]
        [--per-class N] [--epochs 2] [--precision fp32|bf16] [--channels-last] [--ray]

Same data, model, batch (128) and thread count (2) in both loops. Images/s and the epoch time are
measured over the last epoch's training pass (start-up effects excluded); `epoch_60k_s` is that
rate extrapolated to the full 60,000 training images. Default images per class: all 6,000 on a
GPU; on a CPU 2,000 for compact and 100 for seed (about 17 s per epoch there). `--ray` adds one
Ray trial (CPU, one worker with 2 CPUs) through the real sweep job and its overheads, in seconds.
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

from vaecore import config, data, epoch, runs, train
from vaecore.losses import vae_loss
from vaecore.model import build

REPO = Path(__file__).resolve().parent.parent
CPU_PER_CLASS = {"compact": 2000, "seed": 100}


def sync(device) -> None:
    """Wait for the device, so that a wall-clock time covers the work it was given."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def plain_loop(cfg, ds, epochs: int, device) -> float:
    """The textbook loop (pytorch/examples vae style), data already on the device: the baseline."""
    torch.manual_seed(0)
    model = build(cfg.model.arch, cfg.model.latent_dim).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x_all = ds.train_x.to(device)
    for _ in range(epochs):
        sync(device)
        start = time.perf_counter()
        for idx in torch.randperm(len(x_all), device=device).split(cfg.train.batch_size):
            x = x_all[idx].unsqueeze(1).float() / 255
            logits, mu, log_var = model(x)
            loss = vae_loss(x, logits, mu, log_var, "mse", cfg.loss.recon_multiplier, 1.0)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        sync(device)
        seconds = time.perf_counter() - start
    return len(x_all) / seconds


def vaecore_loop(cfg, ds, epochs: int, device) -> dict:
    """vaecore's own epoch (epoch.run_epoch) as fit() runs it: the data moved to the device once."""
    s = train.new_session(cfg, device)
    ds = data.to_device(ds, device)
    for _ in range(epochs):
        row = epoch.run_epoch(s, ds, cfg, device)
    return row


def ray_trial(arch: str, per_class: int, epochs: int) -> dict:
    """One trial, one worker with 2 CPUs, through the real sweep job; timings from its files."""
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "bench.toml"
        sweep.write_text(
            f'name = "bench"\nbase = "default"\n[set]\n"model.arch" = "{arch}"\n'
            f'"train.epochs" = {epochs}\n"data.train_per_class" = {per_class}\n'
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
        "ray_images_per_s": round(rows[-1]["images_per_s"]),
        "job_wall_s": round(wall, 2),
        "ray_init_s": round(manifest["timings"]["ray_init_s"], 2),
        "trial_s": round(status["seconds"], 2),
        "trial_overhead_s": round(status["seconds"] - busy, 2),
    }


def bench(arch: str, args, ds_all: data.FashionMNIST) -> dict:
    per_class = args.per_class or (6000 if args.device == "cuda" else CPU_PER_CLASS[arch])
    sets = [f"model.arch={arch}", "train.batch_size=128", "train.threads=2"]
    if args.precision != "fp32" or args.channels_last:  # keys absent from older code: only if asked
        sets += [f"train.precision={args.precision}", f"train.channels_last={args.channels_last}"]
    cfg = config.load("default", sets)
    ds = data.subset(ds_all, per_class, 100)
    plain = plain_loop(cfg, ds, args.epochs, args.device)
    row = vaecore_loop(cfg, ds, args.epochs, args.device)
    ours = row["images_per_s"]
    out = {
        "arch": arch,
        "images": len(ds.train_x),
        "plain_images_per_s": round(plain),
        "vaecore_images_per_s": round(ours),
        "vaecore_vs_plain": round(ours / plain, 3),
        "epoch_s": round(row["train_seconds"], 2),
        "epoch_60k_s": round(60_000 / ours, 1),
    }
    if args.ray:
        out.update(ray_trial(arch, per_class, args.epochs))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--arch", nargs="+", default=["compact", "seed"], choices=["compact", "seed"])
    p.add_argument("--per-class", type=int, default=0, help="training images per class (0: by device)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--ray", action="store_true", help="also one Ray trial (CPU only)")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no CUDA device on this machine")
    torch.set_num_threads(2)
    ds_all = data.load()
    cpu = f"cpu, {torch.get_num_threads()} threads"
    result = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else cpu,
        "batch": 128,
        "precision": args.precision,
        "channels_last": args.channels_last,
        "presets": [bench(arch, args, ds_all) for arch in args.arch],
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
