"""One trial's post-processing: its Options and the timed steps (encode, score, sample, render)."""

from __future__ import annotations

import contextlib
import io
import json
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vaecore import catalog, data, latent, layout, runs
from vaecore import model as models
from vaecore.config import ConfigError, convert
from vaecore.post import classifier, metrics, precision, reference, render, two_stage
from vaecore.post import flow as flows


@dataclass(frozen=True)
class Options:
    # train images encoded per class (the first N of the trial's own; all when it has fewer): the
    # samplers' fits, the class means, latent_stats and latents.npz. The mixture search already
    # fitted at most 20,000 points; 2,000 x 10 is a third of the demo's 60,000-image encode
    train_per_class: int = 2000
    iwae_k: int = 100  # importance samples per image for the IWAE bound
    iwae_images: int = 250  # the first N test images: a fixed subset (k * N decodes); its SE is reported
    fid_samples: int = 10000  # generated images per FID; capped at the test-set size
    recon_per_class: int = 2  # test images per class in recon.png (the first ones: fixed)
    grid_samples: int = 100  # samples shown in samples_*.png (10 x 10)
    sample_seed: int = 7  # the z seed: runs with the same latent size decode the same z
    morph_steps: int = 9  # alphas from 0 to 1 in the seed-pair morph strips
    matrix_steps: int = 7  # alphas per strip in the 45-pair matrix
    traversal_dims: int = 10  # traverse at most this many latent dims
    traversal_steps: int = 11  # values per traversed dim
    traversal_range: float = 3.0  # traverse from -range to +range (prior stds) around the origin
    scatter_points: int = 5000  # test points in the latent scatter (fewer = smaller PNG)
    gmm: bool = True  # a Gaussian mixture fitted WITHOUT labels; its size chosen on held-out likelihood
    two_stage: bool = False  # a second, small VAE trained on the train-set latents (Dai & Wipf 2019);
    # off: on the demo (latents 2, 3, 16) its FID is within 2% of the aggregate Gaussian's, never near the
    # mixture's or the flow's, for 4-6 s a trial (docs/BENCHMARKS.md, "The flow sampler")
    two_stage_steps: int = 1000  # its Adam steps (batch 256): ~5 s on one busy CPU core
    flow: bool = True  # a masked autoregressive flow (zuko) fitted to the train-set latents
    flow_steps: int = 600  # its most Adam steps (batch 512; stops early once held-out LL stalls):
    # measured 2.8-4.4 CPU s for 60k latents at d 3 and 16 on one thread
    mixture: bool = False  # also a 10-component mixture started from the class labels (uses labels)
    inception: bool = True  # Inception FID when torchvision's weights are already on disk
    batch: int = 256  # images per encode/decode batch: measured 1.3-1.9x faster than 2000 on CPU
    threads: int | None = None  # torch + BLAS threads; None: the Ray task's CPUs, else torch's default
    precision: str = "auto"  # the networks' inference: "fp32", "bf16", or "auto" (bf16 where timed faster)


def options_from(table: dict) -> Options:
    """Options from a sweep.toml [postprocess] table; unknown keys and wrong types are one-line errors."""
    hints = typing.get_type_hints(Options)
    out = {}
    for key, value in table.items():
        if key not in hints:
            raise ConfigError(f"unknown [postprocess] key '{key}'; known keys: {', '.join(hints)}")
        tp = hints[key]
        value = convert(f"[postprocess] {key}", value, tp)
        if tp in (int, float, int | None) and value is not None and value <= 0:
            raise ConfigError(f"[postprocess] {key} must be > 0, got {value}")
        if key == "precision" and value not in precision.CHOICES:
            raise ConfigError(
                f"[postprocess] precision = {value!r} is not allowed; choose one of {precision.CHOICES}"
            )
        out[key] = value
    return Options(**out)


class TrialError(RuntimeError):
    """A problem with one trial's files; the message is one line and the other trials go on."""


# --- the per-trial pipeline ---------------------------------------------------------------------


class Steps:
    """Times named steps and reports each one as it starts."""

    def __init__(self, progress: Callable[[str], None]):
        self.progress, self.seconds = progress, {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        self.progress(name)
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)


def load_trial_model(trial_dir: Path, device: str) -> tuple[torch.nn.Module, object]:
    try:
        return models.load(layout.Trial(trial_dir).file("model"), device)
    except Exception as e:  # truncated/corrupt pickles raise many types; all mean the same here
        raise TrialError(
            f"model.pt is unreadable ({type(e).__name__}: {str(e)[:80]}); re-train this trial"
        ) from None


def save_latents(path: Path, tr: tuple, te: tuple, ds: data.FashionMNIST) -> None:
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        train_mu=tr[0].cpu().numpy(),
        train_log_var=tr[1].cpu().numpy(),
        train_y=ds.train_y.numpy(),
        test_mu=te[0].cpu().numpy(),
        test_log_var=te[1].cpu().numpy(),
        test_y=ds.test_y.numpy(),
    )
    runs.atomic_write_bytes(path, buf.getvalue())


# --- the samplers: one fit per catalogue row (vaecore.catalog.SAMPLERS) ----------------------
# fit(tr_mu, tr_y, opts) -> (sample(n, seed) -> z, what the fit reports for summary.json's metrics)

SampleFn = Callable[[int, int], torch.Tensor]


def fit_prior(tr_mu: torch.Tensor, tr_y: torch.Tensor, opts: Options) -> tuple[SampleFn, dict]:
    d = tr_mu.shape[1]
    return lambda n, seed: latent.prior_z(n, d, seed), {}


def fit_aggregate(tr_mu: torch.Tensor, tr_y: torch.Tensor, opts: Options) -> tuple[SampleFn, dict]:
    return latent.fit_gaussian(tr_mu).sample, {}


def fit_gmm(tr_mu: torch.Tensor, tr_y: torch.Tensor, opts: Options) -> tuple[SampleFn, dict]:
    mix, scores = latent.choose_gmm(tr_mu)
    return mix.sample, {
        "gmm_components": len(mix.parts),
        "gmm_heldout_ll": {str(k): v for k, v in scores.items()},
    }


def fit_two_stage(tr_mu: torch.Tensor, tr_y: torch.Tensor, opts: Options) -> tuple[SampleFn, dict]:
    stage = two_stage.fit_two_stage(tr_mu, steps=opts.two_stage_steps)
    return stage.sample, {"two_stage_curve": stage.history, "two_stage_val_loss": stage.history["val"][-1]}


def fit_flow(tr_mu: torch.Tensor, tr_y: torch.Tensor, opts: Options) -> tuple[SampleFn, dict]:
    fitted, report = flows.fit_flow(tr_mu, flows.Budget(steps=opts.flow_steps))
    return fitted.sample, report


def fit_mixture(tr_mu: torch.Tensor, tr_y: torch.Tensor, opts: Options) -> tuple[SampleFn, dict]:
    return latent.fit_mixture(tr_mu, tr_y).sample, {}


FITS = {
    "prior": fit_prior,
    "aggregate": fit_aggregate,
    "gmm": fit_gmm,
    "two_stage": fit_two_stage,
    "flow": fit_flow,
    "mixture": fit_mixture,
}


def samplers(tr_mu: torch.Tensor, tr_y: torch.Tensor, opts: Options) -> tuple[dict, dict]:
    """name -> function(n, seed) -> z for every sampler its option turns on (catalogue order), and
    what the fits report (sizes, held-out scores, curves)."""
    out, info = {}, {}
    for s in catalog.SAMPLERS:
        if s.option is None or getattr(opts, s.option):
            out[s.name], reported = FITS[s.name](tr_mu, tr_y, opts)
            info.update(reported)
    return out, info


def best_sampler(m: dict) -> dict:
    """summary.json's verdict: the label-free sampler with the lowest FID among those that keep the
    classes (the others, with why, in best_sampler_excluded), and the share of the gap from the
    prior's FID to the reconstructions' (the decoder's floor) that it closes."""
    fids = {s.name: m.get(s.fid_key) for s in catalog.SAMPLERS}
    entropies = {s.name: (m.get(s.coverage_key) or {}).get("entropy") for s in catalog.SAMPLERS}
    floor = (m.get("coverage_recon") or {}).get("entropy")
    best = catalog.best_sampler(fids, entropies, floor)
    closed = catalog.gap_closed(m["fid_prior"], m["fid_recon"], m[f"fid_{best}"]) if best else None
    dropped = catalog.excluded({k: v for k, v in entropies.items() if catalog.sampler(k).label_free}, floor)
    return {"best_sampler": best, "gap_closed": closed, "best_sampler_excluded": dropped}


# --- the per-trial pipeline's steps -----------------------------------------------------------


def run_pipeline(
    trial_dir: Path,
    ds: data.FashionMNIST,
    opts: Options,
    clf_state: dict,
    device: str,
    progress: Callable[[str], None],
) -> dict:
    """Encode, score, sample, render; returns the summary (without its inputs hash).

    No work is repeated: each image is encoded once, each sampler's images are decoded once (the
    FIDs and the pictures share them), and the real-data classifier statistics come from a cache.
    """
    t = Steps(progress)
    with t("load"):
        model, cfg, clf = load_models(trial_dir, clf_state, device)
        chosen = precision.resolve(opts.precision, model, opts.batch)
        model, clf = precision.apply(chosen, model, clf)
    dec = lambda z: latent.decode(model, z.to(device), opts.batch).cpu()
    with t("encode"):  # test images: latents, ELBO terms and reconstructions from one pass
        tr, (te_mu, te_lv), recons, m = encode(model, cfg, trial_dir, ds, device, opts)
    with t("iwae"):
        m.update(iwae(model, cfg, ds.test_x, (te_mu, te_lv), opts))
    means = latent.class_means(tr[0], ds.train_y)
    with t("samplers"):
        fns, info = samplers(tr[0], ds.train_y, opts)
        curve = info.pop("two_stage_curve", None)
        m.update(info)
    n = min(opts.fid_samples, len(ds.test_x))
    with t("decode"):  # once per sampler: the FIDs use all of them, the pictures the first ones
        samples = {k: dec(fn(max(n, opts.grid_samples), opts.sample_seed)) for k, fn in fns.items()}
    with t("render"):
        artifacts = render.trial_figures(dec, trial_dir, ds, te_mu, recons, means, samples, opts)
        artifacts.update(two_stage_figure(curve, trial_dir))
    with t("fid"):
        m.update(sample_quality(clf, ds, recons, samples, n))
    with t("inception"):
        m.update(_inception(ds, samples["prior"][:n], opts))
    t.seconds["total"] = round(sum(t.seconds.values()), 3)
    return _summary(trial_dir, m, clf_state["info"], t.seconds, artifacts, curve) | {"precision": chosen}


def load_models(
    trial_dir: Path, clf_state: dict, device: str
) -> tuple[torch.nn.Module, object, torch.nn.Module]:
    """The trial's VAE and its config, and the reference classifier, both in channels-last layout."""
    model, cfg = load_trial_model(trial_dir, device)
    model = model.to(memory_format=torch.channels_last)  # measured 2.4x faster decodes on CPU
    clf = classifier.Classifier()
    clf.load_state_dict(clf_state["model"])
    clf = clf.eval().to(memory_format=torch.channels_last)  # measured 2.5-3x faster on CPU
    return model, cfg, clf


def encode(model, cfg, trial_dir: Path, ds: data.FashionMNIST, device: str, opts: Options) -> tuple:
    """The train-set posteriors, and the test set's in one pass with its ELBO terms and
    reconstructions; both saved to latents.npz. Returns (train, test, recons, metrics)."""
    lik, r = cfg.loss.likelihood, cfg.loss.recon_multiplier
    tr = tuple(v.cpu() for v in latent.encode(model, ds.train_x.to(device), opts.batch))
    te_mu, te_lv, recons, m = metrics.test_pass(model, ds.test_x, lik, r, opts.batch)
    save_latents(layout.Trial(trial_dir).file("latents"), tr, (te_mu, te_lv), ds)
    m.update(metrics.latent_stats(*tr))
    return tr, (te_mu, te_lv), recons, m


def iwae(model, cfg, test_x: torch.Tensor, posterior: tuple, opts: Options) -> dict:
    """The IWAE bound on the first iwae_images test images, from their posteriors already at hand."""
    n = min(opts.iwae_images, len(test_x))
    mu, log_var = posterior
    lik, r = cfg.loss.likelihood, cfg.loss.recon_multiplier
    per = metrics.iwae_per_image(model, test_x[:n], opts.iwae_k, lik, r, posterior=(mu[:n], log_var[:n]))
    bound, se = metrics.mean_and_se(per)
    return {"test_iwae": bound, "test_iwae_se": se, "iwae_k": opts.iwae_k, "iwae_images": n}


def two_stage_figure(curve: dict | None, trial_dir: Path) -> dict[str, str]:
    """The second-stage VAE's loss curve, when that sampler ran: artifact key -> path."""
    if not curve:
        return {}
    rel = "artifacts/two_stage_loss.png"
    render.two_stage_curve(curve, f"{trial_dir.name}: second-stage VAE", trial_dir / rel)
    return {"two_stage_loss": rel}


def sample_quality(
    clf: torch.nn.Module, ds: data.FashionMNIST, recons: torch.Tensor, samples: dict, n: int
) -> dict:
    """FIDs and coverage of the reconstructions and of the first n images of every sampler, and
    the best sampler."""
    real = reference.real_stats(clf, ds.test_x, reference.floor_images(ds.train_x, n))
    m = metrics.sample_quality(clf, real, ds.test_y, recons, {k: x[:n] for k, x in samples.items()})
    return m | best_sampler(m)


def _inception(ds: data.FashionMNIST, prior_samples: torch.Tensor, opts: Options) -> dict:
    if not opts.inception:
        return {"inception_fid": None, "inception_fid_note": "skipped: [postprocess] inception = false"}
    n = len(prior_samples)
    return metrics.inception_fid(ds.test_x[:n], prior_samples)


def _summary(
    trial_dir: Path, metrics: dict, clf_info: dict, timings: dict, artifacts: dict, curve: dict | None
) -> dict:
    trial = layout.Trial(trial_dir)
    status, history = trial.status(), trial.history()
    return {
        "trial": trial.name,
        "params": trial.params(),
        "config": json.loads(trial.file("config").read_text()),
        "train": {
            "epochs": status.epochs,
            "seconds": status.seconds,
            "images_per_s": history[-1].get("images_per_s") if history else None,
            "precision": status.precision,
        },
        "metrics": metrics,
        "classifier": {k: clf_info[k] for k in ("test_accuracy", "key")},
        "timings": timings,
        "artifacts": artifacts,
    } | ({"two_stage_curve": curve} if curve else {})
