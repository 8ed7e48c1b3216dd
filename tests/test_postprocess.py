"""Post-processing a tiny sweep end to end: artifacts, summary keys, skipping, and a corrupt trial."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from jobs import postprocess as cli
from vaecore import catalog, config, data, model, runs, train
from vaecore.config import ConfigError
from vaecore.post import sweep as post_sweep
from vaecore.post import threads

from procs import job, write_sweep

ARTIFACTS = {
    "recon",
    "samples_prior",
    "samples_aggregate",
    "samples_gmm",
    "samples_two_stage",
    "samples_flow",
    "two_stage_loss",
    "latent",
    "prototypes",
    "morph_additive",
    "morph_interp",
    "morph_matrix",
    "traversals",
    "curves",
}
METRICS = {
    "test_elbo",
    "test_iwae",
    "test_iwae_se",
    "iwae_k",
    "iwae_images",
    "test_mse",
    "test_kl",
    "kl_per_dim",
    "active_units",
    "agg_mean",
    "agg_std",
    "fid_prior",
    "fid_aggregate",
    "fid_recon",
    "fid_floor",
    "recon_accuracy",
    "coverage_prior",
    "coverage_aggregate",
    "fid_gmm",
    "fid_two_stage",
    "coverage_gmm",
    "coverage_two_stage",
    "gmm_components",
    "gmm_heldout_ll",
    "two_stage_val_loss",
    "fid_flow",
    "coverage_flow",
    "flow_heldout_ll",
    "flow_gaussian_heldout_ll",
    "flow_steps",
    "flow_seconds",
    "best_sampler",
    "best_sampler_excluded",
    "coverage_recon",
    "gap_closed",
    "inception_fid",
    "inception_fid_note",
}


def make_sweep(root, fmnist, latents=(2, 3)):
    """A sweep folder as jobs.sweep writes it: two 1-epoch trials on 100/20 images per class."""
    sweep = root / "tiny"
    post = {"iwae_k": 16, "iwae_images": 50, "two_stage": True, "two_stage_steps": 200}  # every sampler
    write_sweep(sweep / "sweep.toml", "tiny", postprocess=post)
    ds = data.subset(fmnist, 100, 20)
    for z in latents:
        cfg = config.load(
            "default",
            [
                f"model.latent_dim={z}",
                "train.epochs=1",
                "train.batch_size=64",
                "data.train_per_class=100",
                "data.test_per_class=20",
            ],
        )
        trial = sweep / "trials" / f"z{z}"
        train.fit(cfg, ds, trial)
        runs.write_json(trial / "params.json", {"model.latent_dim": z})
    runs.write_json(sweep / "manifest.json", {"sweep": "tiny", "trials": {}})
    return sweep


@pytest.fixture(scope="module")
def pristine(fmnist, tmp_path_factory):
    return make_sweep(tmp_path_factory.mktemp("sweeps"), fmnist)


@pytest.fixture
def sweep(pristine, tmp_path):
    return shutil.copytree(pristine, tmp_path / "tiny")


def test_options_reject_unknown_keys_and_wrong_types():
    assert post_sweep.options_from({"iwae_k": 64}).iwae_k == 64
    with pytest.raises(ConfigError, match="unknown \\[postprocess\\] key 'iwae_kk'"):
        post_sweep.options_from({"iwae_kk": 64})
    with pytest.raises(ConfigError, match="iwae_k must be a int"):
        post_sweep.options_from({"iwae_k": "many"})


def test_unfinished_trial_is_reported_and_skipped(sweep):
    runs.write_json(sweep / "trials" / "z3" / "status.json", {"status": "running", "reason": ""})
    row = post_sweep.process_trial(sweep / "trials" / "z3", post_sweep.Options(), {"info": {"key": ""}})
    assert row["status"] == "skipped" and "not completed" in row["reason"]


def test_missing_sweep_folder_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli._cli.run(lambda: cli.main([str(tmp_path / "nope"), "--no-gallery"]))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: sweep folder not found") and "\n" not in err


@pytest.mark.integration
def test_end_to_end_artifacts_metrics_skip_and_corrupt_trial(sweep):
    model_pt = sweep / "trials" / "z3" / "model.pt"
    model_pt.write_bytes(model_pt.read_bytes()[:5000])  # truncated, as by a full disk
    results = post_sweep.process_sweep(sweep, progress=lambda s: None)
    assert results["z3"]["status"] == "failed" and "model.pt is unreadable" in results["z3"]["reason"]
    assert results["z2"]["status"] == "done"

    trial = sweep / "trials" / "z2"
    s = json.loads((trial / "summary.json").read_text())
    assert set(s["metrics"]) >= METRICS and set(s["artifacts"]) == ARTIFACTS
    assert s["metrics"]["iwae_k"] == 16 and s["metrics"]["iwae_images"] == 50  # from sweep.toml
    assert s["metrics"]["test_iwae"] > s["metrics"]["test_elbo"]
    assert s["metrics"]["fid_floor"] < s["metrics"]["fid_prior"]
    m = s["metrics"]
    fids = {k: m[f"fid_{k}"] for k in ("prior", "aggregate", "gmm", "two_stage", "flow")}
    assert m["best_sampler"] == min(fids, key=fids.get) and "fid_mixture" not in m  # labels: opt-in
    assert m["gap_closed"] == pytest.approx(
        (m["fid_prior"] - min(fids.values())) / (m["fid_prior"] - m["fid_recon"])
    )
    assert 1 <= m["gmm_components"] <= 20
    assert len(s["two_stage_curve"]["val"]) == 200 // 50  # a point every 50 steps
    assert m["flow_heldout_ll"] > m["flow_gaussian_heldout_ll"] - 0.5  # 900 latents: roughly as good
    assert len(s["metrics"]["kl_per_dim"]) == 2 and s["classifier"]["test_accuracy"] >= 0.92
    for key, rel in s["artifacts"].items():
        img = Image.open(trial / rel).convert("L")
        lo, hi = img.getextrema()
        assert 300 <= img.width <= 1400 and 100 <= img.height <= 1400, (key, img.size)
        assert hi - lo > 100, key  # not blank
        assert (trial / rel).stat().st_size < 150_000, key
    with np.load(trial / "latents.npz") as z:
        assert z["train_mu"].shape == (1000, 2) and z["test_y"].shape == (200,)

    again = post_sweep.process_sweep(sweep, progress=lambda s: None)
    assert (again["z2"]["status"], again["z2"]["reason"]) == ("skipped", "up to date")
    assert again["z3"]["status"] == "failed"


# --- through the command line: python -m jobs.postprocess <sweep> [--force] -------------------


@pytest.fixture(scope="module")
def processed(fmnist, tmp_path_factory):
    """One z=4 trial with `[postprocess] mixture = true`, post-processed once by the CLI."""
    sweep = make_sweep(tmp_path_factory.mktemp("mix"), fmnist, latents=(4,))
    post = {"iwae_k": 8, "iwae_images": 20, "mixture": True}
    write_sweep(sweep / "sweep.toml", "tiny", postprocess=post)
    proc = job("jobs.postprocess", str(sweep), "--no-gallery", timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "[z4] done in" in proc.stdout
    return sweep


def snapshot(folder) -> dict:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.integration
def test_mixture_option_adds_its_sampler_and_latents_above_3_get_a_pca_scatter(processed):
    trial = processed / "trials" / "z4"
    s = runs.read_json(trial / "summary.json")
    m = s["metrics"]
    assert {"fid_mixture", "coverage_mixture"} <= set(m) and m["fid_mixture"] >= 0
    assert sum(m["coverage_mixture"]["histogram"]) == pytest.approx(1.0, abs=1e-3)
    assert s["artifacts"]["samples_mixture"] == "artifacts/samples_mixture.png"
    assert (trial / "artifacts" / "samples_mixture.png").stat().st_size > 1000
    w, h = Image.open(trial / "artifacts" / "latent.png").size
    assert w > 2 * h  # the PCA layout: a 2-D and a 3-D projection side by side


@pytest.mark.integration
def test_cli_skips_unchanged_trials_redoes_them_with_force_and_on_changed_inputs(
    processed, tmp_path, ray_head
):
    sweep = shutil.copytree(processed, tmp_path / "tiny", copy_function=shutil.copy2)
    trial = sweep / "trials" / "z4"
    before = snapshot(trial)

    again = job("jobs.postprocess", str(sweep), "--no-gallery", timeout=300)
    assert again.returncode == 0, again.stderr
    assert re.search(r"^z4 +skipped +0\.0 +up to date$", again.stdout, re.M), again.stdout
    assert snapshot(trial) == before

    # --force, and --address auto: one Ray task per trial on the cluster "auto" finds (the
    # suite's head, through its RAY_TMPDIR); without --no-gallery the gallery is built too
    env = {**ray_head["env"], "RAY_TMPDIR": str(ray_head["tmpdir"])}
    forced = job("jobs.postprocess", str(sweep), "--force", "--address", "auto", env=env, timeout=300)
    assert forced.returncode == 0, forced.stdout[-2000:] + forced.stderr[-2000:]
    assert "post-processing 1 trial as Ray tasks" in forced.stdout and "[z4] done in" in forced.stdout
    assert (sweep / "gallery" / "index.html").is_file()
    summary = trial / "summary.json"
    assert summary.stat().st_mtime_ns > before[summary][1]
    assert runs.read_json(summary)["inputs"] == json.loads(before[summary][0])["inputs"]

    state = torch.load(trial / "model.pt", weights_only=False)  # new weights: a changed input
    state["model"]["mu.bias"] += 0.5
    model.torch_save(state, trial / "model.pt")
    changed = post_sweep.process_sweep(sweep, progress=lambda s: None)
    assert changed["z4"]["status"] == "done"
    assert runs.read_json(summary)["inputs"] != json.loads(before[summary][0])["inputs"]


def test_a_changed_postprocess_option_or_classifier_changes_the_skip_key(pristine):
    trial = pristine / "trials" / "z2"
    key = post_sweep.inputs_hash(trial, post_sweep.Options(), "clf")
    assert key == post_sweep.inputs_hash(trial, post_sweep.Options(), "clf")
    assert key != post_sweep.inputs_hash(trial, post_sweep.Options(mixture=True), "clf")
    assert key != post_sweep.inputs_hash(trial, post_sweep.Options(), "other classifier")


def test_pca_projects_onto_the_largest_variance_directions():
    from vaecore.post import render

    g = torch.Generator().manual_seed(0)
    z = torch.randn(4000, 5, generator=g) * torch.tensor([0.1, 3.0, 0.2, 2.0, 1.0])
    p, explained = render.pca(z, 3)
    variances = [0.01, 9.0, 0.04, 4.0, 1.0]
    assert explained == pytest.approx([v / sum(variances) for v in (9.0, 4.0, 1.0)], rel=0.05)
    assert p.shape == (4000, 3)
    assert abs(torch.corrcoef(torch.stack([p[:, 0], z[:, 1]]))[0, 1]) > 0.99


@pytest.mark.parametrize("n, nrow, pad", [(64, 8, 2), (10, 4, 2), (7, 10, 0), (45, 9, 3)])
def test_image_sheets_lay_images_out_as_torchvisions_make_grid(n, nrow, pad):
    from torchvision.utils import make_grid

    from vaecore.post import sheets

    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(n))
    expected = make_grid(x, nrow=nrow, padding=pad, pad_value=1.0)[0].mul(255).round().byte().numpy()
    assert np.array_equal(np.asarray(sheets.tile(x, nrow, pad, scale=1)), expected)
    big = np.asarray(sheets.tile(x, nrow, pad, scale=2))
    assert big.shape == tuple(2 * d for d in expected.shape) and np.array_equal(big[::2, ::2], expected)


@pytest.mark.parametrize("d, wide", [(2, False), (5, True)])
def test_latent_scatter_uses_pca_projections_only_above_3_dims(d, wide, tmp_path, monkeypatch):
    from vaecore.post import render

    calls = []
    real_pca = render.pca
    monkeypatch.setattr(render, "pca", lambda z, k: calls.append((z.shape[1], k)) or real_pca(z, k))
    z = torch.randn(300, d, generator=torch.Generator().manual_seed(0))
    render.latent(z, torch.arange(300) % 10, "t", tmp_path / "latent.png")
    w, h = Image.open(tmp_path / "latent.png").size
    assert calls == ([(d, 3)] if wide else [])
    assert (w > 2 * h) == wide


@pytest.mark.integration
def test_each_image_is_encoded_once_and_each_samplers_images_decoded_once(sweep, monkeypatch):
    from vaecore import model

    rows = {"encode": 0, "decode_logits": 0}  # every decode goes through decode_logits
    for name in rows:
        real = getattr(model.VAE, name)
        count = lambda self, x, _n=name, _f=real: rows.__setitem__(_n, rows[_n] + len(x)) or _f(self, x)
        monkeypatch.setattr(model.VAE, name, count)
    # iwae_k 16 on 50 images; 200 test images. fp32, not "auto": auto's timing decodes too, and
    # only in the first trial of a process (it is cached), so the count would hang on test order.
    # train_per_class 60 of the fixture's 100: the first 60 train images of each class are encoded
    opts = dataclasses.replace(post_sweep.load_options(sweep), precision="fp32", train_per_class=60)
    on = [x for x in catalog.SAMPLERS if x.option is None or getattr(opts, x.option)]
    row = post_sweep.process_trial(sweep / "trials" / "z2", opts, post_sweep.reference_classifier(print))
    assert row["status"] == "done", row
    assert rows["encode"] == 600 + 200  # train and test once; the IWAE reuses the test posterior
    with np.load(sweep / "trials" / "z2" / "latents.npz") as z:
        assert np.bincount(z["train_y"]).tolist() == [60] * 10 and len(z["train_mu"]) == 600
    decodes = {
        "test pass (z and mu)": 2 * 200,
        "iwae": 16 * 50,
        f"{len(on)} samplers, FID and pictures together": len(on) * 200,
        "class means, 2 x 4 morph strips, 45-pair matrix, traversals": 10 + 2 * 36 + 45 * 7 + 2 * 11,
    }
    assert rows["decode_logits"] == sum(decodes.values())


def test_threads_are_pinned_per_trial_restored_after_and_not_part_of_the_skip_key(pristine):
    before = torch.get_num_threads()
    with threads.pinned(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with threads.pinned(None):  # no [postprocess] threads, not a Ray task: torch's default
        assert torch.get_num_threads() == before
    trial = pristine / "trials" / "z2"
    opts = post_sweep.Options()
    assert post_sweep.inputs_hash(trial, opts, "c") == post_sweep.inputs_hash(
        trial, post_sweep.options_from({"threads": 1}), "c"
    )
    with pytest.raises(ConfigError, match="threads must be > 0"):
        post_sweep.options_from({"threads": 0})


def test_the_gray_png_writer_keeps_32_levels_or_every_gray(tmp_path):
    from vaecore import images

    ramp = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16))
    images.write_gray(ramp, tmp_path / "sheet.png")  # the sheets: 32 evenly spaced grays
    images.write_gray(ramp, tmp_path / "epoch.png", levels=None)  # the per-epoch grids: unchanged
    sheet = np.asarray(Image.open(tmp_path / "sheet.png"))
    assert sorted(set(sheet.flat)) == [round(i * 255 / 31) for i in range(32)]
    assert np.abs(sheet.astype(int) - np.arange(256).reshape(16, 16)).max() <= 4  # the nearest level
    assert np.array_equal(np.asarray(Image.open(tmp_path / "epoch.png")), np.asarray(ramp))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch.png", "sheet.png"]  # no temp files left


# The stated tolerances of bf16 against fp32 post-processing. Measured: 0.15-0.16% on this
# fixture's FIDs and 0.14-0.20 nats on its ELBO and IWAE; on a demo trial (z3-r5000) 0.1-0.3% and
# 0.08-0.11 nats.
FID_RTOL, NATS_ATOL = 0.02, 1.0


def test_bf16_and_fp32_post_processing_agree_within_the_stated_tolerance(pristine, tmp_path):
    clf = post_sweep.reference_classifier(lambda s: None)
    out = {}
    for prec in ("fp32", "bf16"):
        sweep = shutil.copytree(pristine, tmp_path / prec)
        opts = post_sweep.options_from({"iwae_k": 16, "iwae_images": 50, "precision": prec})
        row = post_sweep.process_trial(sweep / "trials" / "z3", opts, clf, progress=lambda s: None)
        assert row["status"] == "done", row
        out[prec] = runs.read_json(sweep / "trials" / "z3" / "summary.json")
        assert out[prec]["precision"] == prec
    a, b = out["fp32"]["metrics"], out["bf16"]["metrics"]
    for key in ("fid_prior", "fid_aggregate", "fid_gmm", "fid_flow", "fid_recon"):
        assert b[key] == pytest.approx(a[key], rel=FID_RTOL), key
    for key in ("test_elbo", "test_iwae"):
        assert b[key] == pytest.approx(a[key], abs=NATS_ATOL), key
    assert 0 < a["test_iwae_se"] < 50 and b["test_iwae"] >= b["test_elbo"] - NATS_ATOL


def test_precision_auto_times_a_choice_once_and_a_bad_value_is_refused():
    from vaecore.model import build
    from vaecore.post import precision

    m = build("compact", 2).eval()
    first = precision.resolve("auto", m)
    assert first in ("fp32", "bf16") and precision.resolve("auto", m) == first
    assert precision.resolve("fp32", m) == "fp32"
    with pytest.raises(ConfigError, match="precision = 'fp16' is not allowed"):
        post_sweep.options_from({"precision": "fp16"})
