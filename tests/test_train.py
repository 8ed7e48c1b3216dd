import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vaecore import config, data, epoch, precision, runs, train
from vaecore.losses import vae_loss
from vaecore.model import build

from procs import job


def test_one_epoch_on_real_images_lowers_the_test_loss(small, tiny_cfg):
    train.set_threads(tiny_cfg)
    s = train.new_session(tiny_cfg)
    before = epoch.evaluate(s.model, small.test_x, tiny_cfg, "cpu")
    row = epoch.run_epoch(s, small, tiny_cfg, "cpu")
    print(
        f"test loss {before['test_loss']:.1f} -> {row['test_loss']:.1f}, "
        f"ELBO {before['test_elbo']:.1f} -> {row['test_elbo']:.1f}"
    )
    # measured here: test loss 1028 -> 217, ELBO -750 -> 61 nats (2000 train images, seed 0)
    assert row["test_loss"] < 0.5 * before["test_loss"]
    assert row["test_elbo"] > before["test_elbo"] + 100
    assert row["images_per_s"] > 0 and row["epoch"] == 1


def test_shards_are_disjoint_equal_and_cover_the_epoch():
    shards = [torch.cat(epoch.shard_batches(103, 32, seed=0, epoch=4, rank=r, world=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 51
    assert not set(shards[0].tolist()) & set(shards[1].tolist())
    again = torch.cat(epoch.shard_batches(103, 32, seed=0, epoch=4, rank=0, world=2))
    other_epoch = torch.cat(epoch.shard_batches(103, 32, seed=0, epoch=5, rank=0, world=2))
    assert (again == shards[0]).all() and not (other_epoch == shards[0]).all()


def test_ranks_that_end_with_different_weights_or_losses_fail_the_run(monkeypatch, tiny_cfg):
    s = train.new_session(tiny_cfg)
    s.history.append({"loss": 210.5})
    digest = epoch.weights_digest(s.model)
    (mine,) = epoch.check_replicas(s, 600, "cpu")  # one process: itself
    assert mine == {"images": 600, "weights": digest, "loss": 210.5}
    with torch.no_grad():  # one parameter, one bit: another digest
        p = next(s.model.parameters()).view(-1)
        p[0] = torch.nextafter(p[0], torch.tensor(math.inf))
    (mine,) = epoch.check_replicas(s, 600, "cpu")
    assert mine["weights"] != digest
    for other in ({**mine, "weights": digest}, {**mine, "loss": 210.25}):
        monkeypatch.setattr(epoch, "gather", lambda x, device, other=other: [x, other])  # a second DDP rank
        with pytest.raises(RuntimeError, match="DDP ranks ended with different weights or losses"):
            epoch.check_replicas(s, 600, "cpu")


class Stop(Exception):
    pass


def test_resuming_a_checkpoint_gives_the_same_next_epoch_as_an_uninterrupted_run(few, tiny_cfg, tmp_path):
    whole = train.fit(tiny_cfg, few, tmp_path / "whole")
    assert (whole["status"], whole["reason"], whole["epochs"], whole["final"]) == ("completed", "", 2, False)

    def crash_after_first(row):
        raise Stop

    with pytest.raises(Stop):
        train.fit(tiny_cfg, few, tmp_path / "cut", on_epoch=crash_after_first)
    assert len(runs.read_jsonl(tmp_path / "cut" / "metrics.jsonl")) == 1
    assert not (tmp_path / "cut" / "model.pt").exists()
    train.fit(tiny_cfg, few, tmp_path / "cut")

    a = runs.read_jsonl(tmp_path / "whole" / "metrics.jsonl")
    b = runs.read_jsonl(tmp_path / "cut" / "metrics.jsonl")
    keys = ["loss", "recon", "kl", "test_loss", "test_elbo", "lr"]
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]
    wa = torch.load(tmp_path / "whole" / "model.pt")["model"]
    wb = torch.load(tmp_path / "cut" / "model.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def snapshot(folder: Path) -> dict:
    """Every file under folder: (bytes, mtime in ns)."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_finished_run_re_run_from_the_command_line_writes_nothing(tmp_path):
    run = tmp_path / "run"
    args = ["jobs.train", "--out", str(run), "--set", "train.epochs=1", "--set", "data.train_per_class=30"]
    args += ["--set", "data.test_per_class=5"]
    first = job(*args, timeout=300)
    assert first.returncode == 0, first.stderr
    status = runs.read_json(run / "status.json")
    assert [status[k] for k in ("status", "reason", "epochs", "final")] == ["completed", "", 1, False]
    before = snapshot(run)
    assert {p.name for p in before} >= {"model.pt", "checkpoint.pt", "metrics.jsonl", "config.json"}
    time.sleep(0.05)  # a rewrite would now show in the mtimes even on a coarse clock
    again = job(*args, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "already trained; nothing to do" in again.stderr and "epoch " not in again.stdout
    assert snapshot(run) == before


def test_a_finished_run_with_more_epochs_asked_continues_from_its_checkpoint(few, tiny_cfg, tmp_path):
    one = config.load("default", ["train.epochs=1", "train.batch_size=64", "resources.cpus_per_worker=2"])
    train.fit(one, few, tmp_path)
    rows = []
    assert train.fit(tiny_cfg, few, tmp_path, on_epoch=rows.append)["epochs"] == 2
    assert [r["epoch"] for r in rows] == [2]  # epoch 1 was not trained again


def test_divergence_at_the_first_step_stops_the_run_with_its_reason_recorded(few, tmp_path):
    cfg = config.load(
        "default", ["train.lr=1e12", "train.grad_clip=0", "train.epochs=3", "train.batch_size=64"]
    )
    status = train.fit(cfg, few, tmp_path)
    assert status["status"] == "failed" and status["epochs"] == 0
    assert "non-finite" in status["reason"] and "lower train.lr" in status["reason"]
    assert runs.read_json(tmp_path / "status.json") == status
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "metrics.jsonl").exists()


def test_divergence_in_a_later_epoch_keeps_the_finished_epochs(few, tiny_cfg, tmp_path, monkeypatch):
    real = epoch.train_epoch

    def poisoned_in_epoch_2(s, *args, **kwargs):
        if s.epoch == 1:  # one epoch done: break a weight, as a too-high learning rate would
            with torch.no_grad():
                epoch.unwrap(s.model).dense.weight[0, 0] = float("inf")
        return real(s, *args, **kwargs)

    monkeypatch.setattr(epoch, "train_epoch", poisoned_in_epoch_2)
    status = train.fit(tiny_cfg, few, tmp_path)
    assert status["status"] == "failed" and status["epochs"] == 1
    assert "epoch 2, step 0" in status["reason"]
    rows = runs.read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1]
    for row in rows:
        assert all(torch.isfinite(torch.tensor(v)) for v in row.values())
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["epoch"] == 1
    assert not (tmp_path / "model.pt").exists()


def test_an_injected_nan_weight_stops_training_at_the_first_step(few, tiny_cfg):
    s = train.new_session(tiny_cfg)
    with torch.no_grad():
        epoch.unwrap(s.model).dense.weight[0, 0] = float("nan")
    with pytest.raises(epoch.Diverged, match="epoch 1, step 0"):
        epoch.run_epoch(s, few, tiny_cfg, "cpu")


@pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler.step\(\)`")
@pytest.mark.parametrize("name", ["plateau", "cosine", "step", "none"])
def test_each_scheduler_sets_the_learning_rate_as_documented(name):
    cfg = config.load(
        "default", [f"train.scheduler={name}", "train.epochs=4", "train.lr_step=1", "train.lr_patience=0"]
    )
    s = train.new_session(cfg)
    for _ in range(2):
        epoch.step_scheduler(s, test_loss=1.0)  # no improvement after the first
    lr = s.optimizer.param_groups[0]["lr"]
    want = {
        "plateau": 5e-4,
        "cosine": 0.5e-3 * (1 + torch.cos(torch.tensor(torch.pi / 2))),
        "step": 2.5e-4,
        "none": 1e-3,
    }[name]
    assert lr == pytest.approx(float(want))


def reference_fit(cfg: config.Config, ds: data.FashionMNIST) -> list[dict]:
    """The training loop written out plainly, reading every term back after every step (as
    vaecore did before its sums moved onto the device): per-epoch means of the terms."""
    lc, rows = cfg.loss, []
    torch.manual_seed(cfg.train.seed)
    model = build(cfg.model.arch, cfg.model.latent_dim)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    torch.manual_seed(cfg.train.seed * 1000)
    for e in range(cfg.train.epochs):
        model.train()
        g = torch.Generator().manual_seed(cfg.train.seed * 100_003 + e)
        sums, n = dict.fromkeys(["loss", "recon", "kl", "mse"], 0.0), 0
        for idx in torch.randperm(len(ds.train_x), generator=g).split(cfg.train.batch_size):
            x = ds.train_x[idx].unsqueeze(1).float() / 255
            terms = vae_loss(x, *model(x), lc.likelihood, lc.recon_multiplier, lc.kl_multiplier)
            opt.zero_grad()
            terms["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            opt.step()
            n += len(idx)
            for k in sums:
                sums[k] += terms[k].item() * len(idx)
        model.eval()
        g = torch.Generator().manual_seed(12345)
        test = dict.fromkeys(["loss", "recon", "kl", "mse", "elbo"], 0.0)
        with torch.no_grad():
            for idx in torch.arange(len(ds.test_x)).split(1000):
                x = ds.test_x[idx].unsqueeze(1).float() / 255
                mu, log_var = model.encode(x)
                eps = torch.randn(mu.shape, generator=g)
                logits = model.decode_logits(model.reparameterize(mu, log_var, eps))
                terms = vae_loss(x, logits, mu, log_var, lc.likelihood, lc.recon_multiplier, lc.kl_multiplier)
                for k in test:
                    test[k] += terms[k].item() * len(idx)
        test = {f"test_{k}": v / len(ds.test_x) for k, v in test.items()}
        rows.append({**{k: v / n for k, v in sums.items()}, **test})
    return rows


def test_a_two_epoch_fit_has_exactly_the_metrics_of_a_plain_per_step_loop(small, tiny_cfg, tmp_path):
    ds = data.subset(small, 50, 20)  # 500 images: 8 steps an epoch, the last one short
    want = reference_fit(tiny_cfg, ds)
    train.fit(tiny_cfg, ds, tmp_path)
    got = runs.read_jsonl(tmp_path / "metrics.jsonl")
    assert [{k: r[k] for k in want[0]} for r in got] == want  # to the bit, fp32 on the CPU


@pytest.mark.parametrize("check_every", [5, 50])
def test_a_late_read_still_names_the_first_non_finite_step(small, tiny_cfg, monkeypatch, check_every):
    monkeypatch.setattr(epoch, "CHECK_EVERY", check_every)  # 50 > 10 steps: read at the end only
    ds = data.subset(small, 64, 10)  # 640 images: 10 steps of 64
    batches = epoch.shard_batches(len(ds.train_x), 64, tiny_cfg.train.seed, epoch=0)
    x = data.to_float(ds.train_x).clone()
    x[batches[7][3]] = float("nan")  # one image of step 7: its loss, then every weight, turn NaN
    s = train.new_session(tiny_cfg)
    with pytest.raises(epoch.Diverged, match=r"non-finite loss \(nan\) .* at epoch 1, step 7; lower"):
        epoch.run_epoch(s, replace(ds, train_x=x), tiny_cfg, "cpu")
    weight = epoch.unwrap(s.model).dense.weight
    assert weight.isnan().all()  # it trained on past step 7 before the read: the report looked back


def test_a_single_process_session_is_not_wrapped_for_ddp(tiny_cfg):
    s = train.new_session(tiny_cfg, wrap=lambda m: pytest.fail("wrapped at world size 1"))
    assert type(s.model).__name__ == "VAE"


def first_step_then_epoch(cfg: config.Config, ds: data.FashionMNIST) -> tuple[dict, dict, nn.Module]:
    """The first step's loss terms and gradient norm (same weights and noise whatever the
    setting), then the means of the epoch that follows, and the model."""
    s = train.new_session(cfg)
    terms, norm = epoch.train_step(s, epoch.as_batch(ds.train_x, torch.arange(64), cfg), cfg, math.inf)
    first = {k: terms[k].item() for k in ("loss", "recon", "kl")} | {"norm": norm.item()}
    return first, epoch.train_epoch(s, ds.train_x, cfg, "cpu"), epoch.unwrap(s.model)


def test_bf16_autocast_trains_with_losses_close_to_fp32(small, tiny_cfg):
    ds = data.subset(small, 32, 10)  # 320 images: 5 steps
    fp32 = first_step_then_epoch(tiny_cfg, ds)
    bf16 = first_step_then_epoch(config.apply(tiny_cfg, {"train.precision": "bf16"}), ds)
    # Autocast rounds each conv/linear layer's inputs to bf16 (8 significant bits): allow one
    # bf16 epsilon of relative error per such layer (measured: 3e-4 on the first step's loss).
    layers = sum(isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear) for m in bf16[2].modules())
    tol = layers * torch.finfo(torch.bfloat16).eps
    print(f"first step {fp32[0]} {bf16[0]}; epoch {fp32[1]['loss']} {bf16[1]['loss']}; tol {tol:.3f}")
    assert bf16[0]["loss"] != fp32[0]["loss"]  # autocast did run in bf16
    for k in ("loss", "recon", "kl"):
        assert bf16[0][k] == pytest.approx(fp32[0][k], rel=tol)
        assert bf16[1][k] == pytest.approx(fp32[1][k], rel=tol)
    assert all(p.dtype == torch.float32 and p.isfinite().all() for p in bf16[2].parameters())


def test_channels_last_gives_the_default_formats_results(small, tiny_cfg):
    ds = data.subset(small, 32, 10)
    default = first_step_then_epoch(tiny_cfg, ds)
    nhwc = first_step_then_epoch(config.apply(tiny_cfg, {"train.channels_last": True}), ds)
    conv = nhwc[2].encoder[1][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    print(f"first step {default[0]} {nhwc[0]}; epoch {default[1]['loss']} {nhwc[1]['loss']}")
    # Other kernels, other summation orders: fp32 rounding, measured 1e-6 (loss) to 3e-5 (KL,
    # gradient norm) on the first step. Over the epoch Adam's first steps divide by the root of
    # tiny squared gradients, which turns such rounding into lr-sized moves: 3e-4 after 5 steps.
    for k in ("loss", "recon", "kl", "norm"):
        assert nhwc[0][k] == pytest.approx(default[0][k], rel=2e-4)
    for k in ("loss", "recon", "kl", "mse"):
        assert nhwc[1][k] == pytest.approx(default[1][k], rel=2e-3)


def test_every_epoch_draws_the_prior_samples_the_reconstructions_and_the_class_prototypes(
    few, tiny_cfg, tmp_path
):
    from PIL import Image

    train.fit(tiny_cfg, few, tmp_path)
    sizes = {p.name: Image.open(p).size for p in (tmp_path / "epochs").iterdir()}
    want = {f"{k}_{e:03d}.png" for k in ("samples", "recon", "prototypes") for e in (1, 2)}
    assert set(sizes) == want
    # 28 px images with 2 px padding: 8 x 8 prior samples; 10 classes x (original, reconstruction); 10 x 1
    assert sizes["samples_002.png"] == (8 * 30 + 2,) * 2
    assert sizes["recon_002.png"] == (10 * 30 + 2, 2 * 30 + 2)
    assert sizes["prototypes_002.png"] == (10 * 30 + 2, 30 + 2)
    first = np.array(Image.open(tmp_path / "epochs" / "recon_001.png"))[:30]
    assert (first == np.array(Image.open(tmp_path / "epochs" / "recon_002.png"))[:30]).all()  # same originals


def test_precision_auto_keeps_the_faster_measured_once_and_only_past_the_margin(tiny_cfg, monkeypatch):
    auto = config.apply(tiny_cfg, {"train.precision": "auto"})
    before = torch.get_rng_state()
    assert precision.measure(auto, "cpu") in ("fp32", "bf16")  # the real timing, on this machine
    assert torch.equal(torch.get_rng_state(), before)  # timing does not move the run's noise
    timed = []
    for bf16_rate, want in ((2.0, "bf16"), (1.1, "fp32")):  # FASTER_BY = 1.15
        monkeypatch.setattr(precision, "_CHOSEN", {})
        rates = {"fp32": 1.0, "bf16": bf16_rate}

        def stepper(cfg, device, batch, rates=rates):
            return lambda: timed.append(cfg.train.precision) or rates[cfg.train.precision]

        monkeypatch.setattr(precision, "_stepper", stepper)
        assert precision.choose(auto, "cpu") == want and precision.choose(auto, "cpu") == want
    assert len(timed) == 2 * 2 * precision.ROUNDS  # each precision timed in one go per process, then cached
    # a burst of load in one bf16 round (0.5x) does not decide: each precision keeps its best round
    monkeypatch.setattr(precision, "_CHOSEN", {})
    bursts = iter([1.0, 0.5] + [1.0, 2.0] * (precision.ROUNDS - 1))  # fp32, bf16 alternate
    monkeypatch.setattr(precision, "_stepper", lambda *a: lambda: next(bursts))
    assert precision.choose(auto, "cpu") == "bf16"
    assert precision.choose(tiny_cfg, "cpu") == "fp32"  # a concrete choice is never timed
    trained = precision.as_trained(auto, "bf16").train
    assert (trained.precision, trained.channels_last) == ("bf16", True)


def test_an_auto_run_records_its_choice_and_a_resumed_run_keeps_it(few, tiny_cfg, tmp_path, monkeypatch):
    auto = config.apply(tiny_cfg, {"train.precision": "auto"})
    monkeypatch.setattr(precision, "measure", lambda *a: "bf16")

    def stop(row):
        raise Stop

    with pytest.raises(Stop):
        train.fit(auto, few, tmp_path, on_epoch=stop)
    assert model_state(tmp_path / "checkpoint.pt")["precision"] == "bf16"
    monkeypatch.setattr(precision, "measure", lambda *a: "fp32")  # another machine would say fp32
    status = train.fit(auto, few, tmp_path)
    assert status["status"] == "completed" and status["precision"] == "bf16"  # the checkpoint's
    assert runs.read_json(tmp_path / "status.json")["precision"] == "bf16"
    assert train.fit(tiny_cfg, few, tmp_path / "plain")["precision"] == "fp32"


def model_state(path: Path) -> dict:
    from vaecore.model import torch_load

    return torch_load(path)
