import math

import pytest
import torch

from vaecore import losses


def test_kl_matches_the_closed_form_on_hand_made_numbers():
    mu = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    log_var = torch.tensor([[0.0, math.log(4.0)], [math.log(0.25), 0.0]])
    # 0.5 * (mu^2 + var - 1 - log var), by hand:
    want = torch.tensor(
        [
            [0.0, 0.5 * (1 + 4 - 1 - math.log(4))],
            [0.5 * (4 + 0.25 - 1 - math.log(0.25)), 0.5 * (1 + 1 - 1 - 0)],
        ]
    )
    assert torch.allclose(losses.kl_per_dim(mu, log_var), want)
    assert losses.kl_per_dim(torch.zeros(3, 5), torch.zeros(3, 5)).abs().max() == 0


def test_loss_terms_are_the_seeds_weighted_sum():
    torch.manual_seed(0)
    x, logits = torch.rand(4, 1, 28, 28), torch.randn(4, 1, 28, 28)
    x_hat = torch.sigmoid(logits)
    mu, log_var = torch.randn(4, 3), torch.randn(4, 3)
    t = losses.vae_loss(x, logits, mu, log_var, "mse", 5000.0, 0.5)
    mse = ((x - x_hat) ** 2).mean()
    assert torch.allclose(t["recon"], 5000 * mse)
    assert torch.allclose(t["loss"], t["recon"] + 0.5 * t["kl"])
    assert torch.allclose(t["mse"], mse)


def test_mse_elbo_equals_a_direct_gaussian_log_likelihood():
    torch.manual_seed(1)
    x, logits = torch.rand(2, 1, 28, 28), torch.randn(2, 1, 28, 28)
    x_hat = torch.sigmoid(logits)
    mu, log_var = torch.randn(2, 3), torch.randn(2, 3)
    r = 1000.0
    sigma = math.sqrt(784 / (2 * r))
    log_px = torch.distributions.Normal(x_hat, sigma).log_prob(x).flatten(1).sum(1)
    q = torch.distributions.Normal(mu, (0.5 * log_var).exp())
    kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1)
    want = (log_px - kl).mean()
    got = losses.vae_loss(x, logits, mu, log_var, "mse", r, 1.0)["elbo"]
    assert torch.allclose(got, want, rtol=1e-5)


def test_bce_elbo_equals_a_direct_bernoulli_log_likelihood():
    torch.manual_seed(2)
    x = (torch.rand(2, 1, 28, 28) > 0.5).float()
    x_hat = torch.rand(2, 1, 28, 28) * 0.98 + 0.01
    logits = torch.log(x_hat) - torch.log1p(-x_hat)
    mu, log_var = torch.randn(2, 4), torch.randn(2, 4)
    log_px = (x * x_hat.log() + (1 - x) * (1 - x_hat).log()).flatten(1).sum(1)  # by hand
    kl = losses.kl_per_dim(mu, log_var).sum(1)
    got = losses.vae_loss(x, logits, mu, log_var, "bce", 5000.0, 1.0)["elbo"]
    assert torch.allclose(got, (log_px - kl).mean(), rtol=1e-5)


@pytest.mark.parametrize("logit", [-6.0, -1.5, 0.0, 1e-4, 2.0, 9.0])
def test_the_continuous_bernoulli_is_a_normalised_density_on_the_unit_interval(logit):
    # exp(-784 * pixel_error) of one pixel, integrated over x in [0, 1] by the midpoint rule, is 1:
    # the log-normaliser has the right sign and size, including near l = 0 where it is 0/0
    n = 20_000
    x = ((torch.arange(n, dtype=torch.float64) + 0.5) / n).view(n, 1)
    logits = torch.full_like(x, logit)
    density = torch.exp(-losses.pixel_error(x, logits, "cb"))
    assert float(density.sum() / n) == pytest.approx(1.0, abs=2e-4)
    # and by hand: log C = log(l / tanh(l / 2)) at l = 2, so -log p(1) = softplus(-2) - log C
    if logit == 2.0:
        want = math.log1p(math.exp(-2.0)) - math.log(2.0 / math.tanh(1.0))
        got = float(losses.pixel_error(torch.ones(1, 1), torch.full((1, 1), 2.0), "cb"))
        assert got == pytest.approx(want, rel=1e-5)
