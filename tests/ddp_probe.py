"""Run as a script by test_ray.py (in a subprocess with a timeout, so a hung DDP start cannot hang
the suite): two Ray Train workers on CPU, each writes its shard, losses and final parameters.

    python tests/ddp_probe.py OUT_DIR RAY_ADDRESS
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import ray
import ray.train
import ray.train.torch
import torch
from ray.train.torch import TorchConfig, TorchTrainer

from vaecore import config, data, epoch, train


def probe_loop(loop_cfg: dict) -> None:
    """Inside each DDP worker: record this rank's shard, losses and final parameters."""
    cfg = config.from_dict(loop_cfg["config"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    ds = data.load_for(cfg.data, verify=False)
    s = train.new_session(cfg, "cpu", rank, wrap=ray.train.torch.prepare_model)
    shard = torch.cat(
        epoch.shard_batches(len(ds.train_x), cfg.train.batch_size, cfg.train.seed, 0, rank, world)
    )
    rows = [epoch.run_epoch(s, ds, cfg, "cpu", rank, world) for _ in range(3)]
    params = torch.cat([p.detach().flatten() for p in s.model.parameters()]).double()
    out = {
        "shard": shard.tolist(),
        "loss": [r["loss"] for r in rows],
        "param_sum": params.sum().item(),
        "param_sq": params.pow(2).sum().item(),
    }
    (Path(loop_cfg["out"]) / f"rank{rank}.json").write_text(json.dumps(out))
    ray.train.report({"done": 1})


def main(out: Path, address: str) -> None:
    cfg = config.load(
        "default",
        [
            "data.train_per_class=100",
            "data.test_per_class=10",
            "train.batch_size=64",
            "resources.workers=2",
            "resources.cpus_per_worker=1",
        ],
    )
    ray.init(address=address, log_to_driver=False)
    try:
        TorchTrainer(
            probe_loop,
            train_loop_config={"config": asdict(cfg), "out": str(out)},
            torch_config=TorchConfig(backend="gloo"),
            scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
            run_config=ray.train.RunConfig(storage_path=str(out / "ray")),
        ).fit()
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), sys.argv[2])
