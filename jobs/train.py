"""Train one config in this process, without Ray: python -m jobs.train [--config seed] [--set k=v]."""

from __future__ import annotations

import argparse
from pathlib import Path

from jobs import _cli
from vaecore import config


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = _cli.parser(
        "vae-train", __doc__, overrides="override a config value, e.g. --set train.epochs=2 (repeatable)"
    )
    p.add_argument(
        "--config",
        default="default",
        help="a named config (default, seed) or a run TOML file (default: default)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/single"),
        help="run folder; an existing one is resumed (default: runs/single)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    cfg = config.load(args.config, args.overrides)
    from vaecore import data, train  # torch: only now, so --help and bad input answer at once

    ds = data.load_for(cfg.data)
    print(f"data: {ds.source} ({len(ds.train_x)} train / {len(ds.test_x)} test images)")
    print(f"training {cfg.model.arch} z={cfg.model.latent_dim} for {cfg.train.epochs} epochs -> {args.out}")

    def progress(row: dict) -> None:
        print(
            f"epoch {row['epoch']:3d}  loss {row['loss']:9.2f}  test ELBO {row['test_elbo']:9.2f}"
            f"  lr {row['lr']:.1e}  {row['images_per_s']:6.0f} img/s",
            flush=True,
        )

    status = train.fit(cfg, ds, args.out, on_epoch=progress)
    if status["status"] != "completed":
        print(f"failed: {status['reason']}")
        return 1
    print(f"done: {args.out}/model.pt, metrics in {args.out}/metrics.jsonl")
    return 0


def cli() -> None:
    """vae-train and `python -m jobs.train`: an expected error is one line on stderr, exit 2."""
    _cli.run(main)


if __name__ == "__main__":
    cli()
