"""Metrics: IWAE against the ELBO, FID, coverage, latent statistics, and the reference classifier."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vaecore import config, data, datafiles, latent, model, train
from vaecore.post import classifier, metrics


@pytest.fixture(scope="module")
def tiny_model(fmnist, tmp_path_factory):
    """A compact VAE trained for 1 epoch on 100 images per class (a few seconds)."""
    cfg = config.load(
        "default",
        [
            "model.latent_dim=4",
            "train.epochs=1",
            "train.batch_size=64",
            "data.train_per_class=100",
            "data.test_per_class=20",
        ],
    )
    run = tmp_path_factory.mktemp("tiny")
    ds = data.subset(fmnist, 100, 20)
    assert train.fit(cfg, ds, run)["status"] == "completed"
    vae, cfg = model.load(run / "model.pt")
    return vae, cfg, ds


@pytest.fixture(scope="session")
def reference():
    """The shipped reference classifier (vaecore/post/classifier.pt, pinned by SHA-256)."""
    return classifier.load_reference()


def test_iwae_is_above_the_elbo_and_tightens_with_k(tiny_model):
    model, cfg, ds = tiny_model
    x = ds.test_x[:100]
    lik, r = cfg.loss.likelihood, cfg.loss.recon_multiplier
    bounds = {k: metrics.iwae(model, x, k, lik, r, seed=1) for k in (1, 8, 64)}
    elbo = metrics.test_pass(model, x, lik, r)[3]["test_elbo"]
    # k = 1 is an ELBO estimate: equal up to sampling noise (measured gap ~0.5 nats of ~50)
    assert abs(bounds[1] - elbo) < 2.0
    assert bounds[1] < bounds[8] < bounds[64]
    assert bounds[64] > elbo + 1.0


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2000, 16, generator=g) @ torch.randn(16, 16, generator=g)
    assert abs(metrics.fid(a, a)) < 1e-6
    fids = [metrics.fid(a, a + s * torch.randn(a.shape, generator=g)) for s in (0.1, 0.5, 2.0)]
    assert 0 < fids[0] < fids[1] < fids[2]


def test_fid_matches_the_closed_form_for_shifted_scaled_gaussians():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50000, 4, generator=g)
    b = 2.0 * torch.randn(50000, 4, generator=g) + 1.0
    # ||m||^2 + tr(I + 4I - 2 * 2I) = 4 + 4 * 1
    assert metrics.fid(a, b) == pytest.approx(8.0, rel=0.03)


def test_coverage_of_uniform_predictions_has_maximal_entropy():
    probs = torch.eye(10).repeat(30, 1) * 0.9 + 0.01
    cov = metrics.coverage(probs)
    assert cov["entropy"] == pytest.approx(math.log(10), abs=1e-6)
    assert cov["histogram"] == [0.1] * 10
    assert cov["mean_max_prob"] == pytest.approx(0.91)
    assert metrics.coverage(torch.eye(10)[[3] * 50])["entropy"] == pytest.approx(0.0)


def test_latent_stats_count_active_units_and_aggregate_spread():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(5000, 3, generator=g) * torch.tensor([2.0, 1.0, 0.01])
    log_var = torch.full((5000, 3), math.log(0.25))
    s = metrics.latent_stats(mu, log_var)
    assert s["active_units"] == 2  # the third dim's mean barely moves: inactive
    assert s["agg_std"][0] == pytest.approx(math.sqrt(4 + 0.25), rel=0.03)
    assert s["mu_std"][2] == pytest.approx(0.01, rel=0.05)


def test_the_shipped_classifier_reaches_its_recorded_test_accuracy(reference, fmnist):
    model, info = reference
    assert info["test_accuracy"] >= 0.92
    assert classifier.accuracy(model, fmnist.test_x, fmnist.test_y) == pytest.approx(
        info["test_accuracy"], abs=1e-4
    )


def test_altered_classifier_weights_are_refused_in_one_line(tmp_path, monkeypatch):
    copy = tmp_path / "classifier.pt"
    copy.write_bytes(classifier.WEIGHTS.read_bytes()[:-1] + b"x")
    monkeypatch.setattr(classifier, "WEIGHTS", copy)
    with pytest.raises(datafiles.DataError, match="does not match its pinned SHA-256"):
        classifier.load_reference()


def test_classifier_features_separate_real_images_from_noise(reference, fmnist):
    model, _ = reference
    real = fmnist.test_x[:1000]
    other = fmnist.test_x[1000:2000]
    noise = (torch.rand(1000, 28, 28) * 255).to(torch.uint8)
    f_real, f_other, f_noise = (classifier.predict(model, x)[0] for x in (real, other, noise))
    assert metrics.fid(f_real, f_other) * 20 < metrics.fid(f_real, f_noise)


# --- the Inception FID path, with a stand-in network (no weights can be downloaded here) -------


class StandInInception(nn.Module):
    """torchvision's inception_v3 interface (constructor, load_state_dict, .fc), tiny and fast."""

    def __init__(self, weights=None, aux_logits=True, init_weights=False):
        super().__init__()
        assert weights is None and aux_logits and not init_weights  # what the code asks for
        self.body = nn.Sequential(nn.AdaptiveAvgPool2d(6), nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten())
        self.fc = nn.Linear(8 * 4 * 4, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1:] == (3, 299, 299), x.shape  # gray made RGB and resized, as for Inception
        return self.fc(self.body(x))


@pytest.fixture
def inception_stand_in(tmp_path, monkeypatch):
    """torch's hub cache with 'Inception weights' in it, and inception_v3 replaced by the stand-in."""
    import torchvision.models

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(StandInInception().state_dict(), folder / "inception_v3_google-0cc3c7bd.pth")
    monkeypatch.setattr(torchvision.models, "inception_v3", StandInInception)
    return folder / "inception_v3_google-0cc3c7bd.pth"


def test_inception_fid_is_skipped_with_a_note_when_no_weights_are_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    out = metrics.inception_fid(torch.zeros(4, 28, 28, dtype=torch.uint8), torch.empty(0))
    assert out["inception_fid"] is None
    assert out["inception_fid_note"].startswith("skipped: no Inception-v3 weights in the torch cache")
    assert str(tmp_path / "empty") in out["inception_fid_note"]


def test_inception_fid_loads_the_cached_weights_and_scores_samples(inception_stand_in, fmnist):
    assert metrics.inception_weights() == inception_stand_in
    real = fmnist.test_x[:60]
    same = metrics.inception_fid(real, data.to_float(real))
    assert abs(same["inception_fid"]) < 1e-4  # float32 features: zero up to rounding
    assert same["inception_fid_note"] == "prior samples vs 60 test images, inception_v3_google-0cc3c7bd.pth"
    others = data.to_float(fmnist.test_x[1000:1060])
    noise = torch.rand(60, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    fids = [metrics.inception_fid(real, x)["inception_fid"] for x in (others, noise)]
    assert 0 < fids[0] < fids[1]


def test_the_pipeline_scores_prior_samples_with_inception_or_says_why_not(inception_stand_in, tiny_model):
    from vaecore.post import trial

    vae, _, ds = tiny_model
    ds = data.subset(ds, 5, 3)  # 30 test images: the FID's sample count
    fns, _ = trial.samplers(torch.zeros(10, vae.latent_dim), torch.arange(10), trial.Options())
    on = trial._inception(ds, latent.decode(vae, fns["prior"](25, 7)), trial.Options())
    assert on["inception_fid"] > 0 and "vs 25 test images" in on["inception_fid_note"]
    off = trial._inception(ds, latent.decode(vae, fns["prior"](25, 7)), trial.Options(inception=False))
    assert off == {"inception_fid": None, "inception_fid_note": "skipped: [postprocess] inception = false"}


# --- one pass over the test images, and the IWAE from its posterior ---------------------------


def test_one_test_pass_gives_the_latents_elbo_and_recons_of_separate_computations(tiny_model):
    model, cfg, ds = tiny_model
    x = ds.test_x[:150]
    lik, r = cfg.loss.likelihood, cfg.loss.recon_multiplier
    assert lik == "mse"
    mu, log_var, recons, terms = metrics.test_pass(model, x, lik, r, batch=64)

    # expected, computed apart: encode all, decode at z = mu + sigma * eps and at mu, formulas by hand
    with torch.no_grad():
        xf = x.float().div(255).unsqueeze(1)
        exp_mu, exp_lv = model.encode(xf)
        eps = torch.randn(150, exp_mu.shape[1], generator=torch.Generator().manual_seed(12345))
        x_z, x_mu = model.decode(exp_mu + (0.5 * exp_lv).exp() * eps), model.decode(exp_mu)
    nll = r * (xf - x_z).pow(2).mean((1, 2, 3)) + 392 * math.log(2 * math.pi * 784 / (2 * r))
    kl = 0.5 * (exp_mu.pow(2) + exp_lv.exp() - 1 - exp_lv).sum(1)
    assert torch.allclose(mu, exp_mu, atol=1e-5) and torch.allclose(log_var, exp_lv, atol=1e-5)
    assert torch.allclose(recons, x_mu, atol=1e-5)
    assert terms["test_elbo"] == pytest.approx(float((-nll - kl).mean()), rel=1e-5)
    assert terms["test_kl"] == pytest.approx(float(kl.mean()), rel=1e-5)
    assert terms["test_mse"] == pytest.approx(float((xf - x_mu).pow(2).mean()), rel=1e-5)
    # the same latents as vaecore.latent.encode, and nothing depends on the batch size
    assert torch.allclose(mu, latent.encode(model, x)[0], atol=1e-5)
    whole = metrics.test_pass(model, x, lik, r, batch=150)[3]
    assert [whole[k] for k in ("test_elbo", "test_mse")] == pytest.approx(
        [terms[k] for k in ("test_elbo", "test_mse")], rel=1e-5
    )


def test_iwae_from_the_passed_posterior_equals_a_hand_computation(tiny_model):
    model, cfg, ds = tiny_model
    x, k = ds.test_x[:20], 8
    lik, r = cfg.loss.likelihood, cfg.loss.recon_multiplier
    with torch.no_grad():
        xf = x.float().div(255).unsqueeze(1)
        mu, log_var = model.encode(xf)
        eps = torch.randn((20, k, mu.shape[1]), generator=torch.Generator().manual_seed(3))
        z = mu[:, None] + (0.5 * log_var[:, None]).exp() * eps  # (20, k, d)
        x_hat = model.decode(z.reshape(20 * k, -1)).view(20, k, 784)
    log_px = -(r * (xf.view(20, 1, 784) - x_hat).pow(2).mean(2) + 392 * math.log(math.pi * 784 / r))
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(2)
    log_qz = torch.distributions.Normal(mu[:, None], (0.5 * log_var[:, None]).exp()).log_prob(z).sum(2)
    expected = float(((log_px + log_pz - log_qz).logsumexp(1) - math.log(k)).mean())
    # chunks of 3 images (24 decodes): chunking and the passed posterior change nothing
    here = metrics.iwae(model, x, k, lik, r, seed=3, decodes_per_batch=24)
    passed = metrics.iwae(model, x, k, lik, r, seed=3, posterior=(mu, log_var))
    assert here == pytest.approx(expected, abs=1e-3) and passed == pytest.approx(expected, abs=1e-3)
