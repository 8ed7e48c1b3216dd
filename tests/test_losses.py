import math

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
    x, x_hat = torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    mu, log_var = torch.randn(4, 3), torch.randn(4, 3)
    t = losses.vae_loss(x, x_hat, mu, log_var, "mse", 5000.0, 0.5)
    mse = ((x - x_hat) ** 2).mean()
    assert torch.allclose(t["recon"], 5000 * mse)
    assert torch.allclose(t["loss"], t["recon"] + 0.5 * t["kl"])
    assert torch.allclose(t["mse"], mse)


def test_mse_elbo_equals_a_direct_gaussian_log_likelihood():
    torch.manual_seed(1)
    x, x_hat = torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 28)
    mu, log_var = torch.randn(2, 3), torch.randn(2, 3)
    r = 1000.0
    sigma = math.sqrt(784 / (2 * r))
    log_px = torch.distributions.Normal(x_hat, sigma).log_prob(x).flatten(1).sum(1)
    q = torch.distributions.Normal(mu, (0.5 * log_var).exp())
    kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1)
    want = (log_px - kl).mean()
    got = losses.vae_loss(x, x_hat, mu, log_var, "mse", r, 1.0)["elbo"]
    assert torch.allclose(got, want, rtol=1e-5)


def test_bce_elbo_equals_a_direct_bernoulli_log_likelihood():
    torch.manual_seed(2)
    x = (torch.rand(2, 1, 28, 28) > 0.5).float()
    x_hat = torch.rand(2, 1, 28, 28) * 0.98 + 0.01
    mu, log_var = torch.randn(2, 4), torch.randn(2, 4)
    log_px = torch.distributions.Bernoulli(probs=x_hat).log_prob(x).flatten(1).sum(1)
    kl = losses.kl_per_dim(mu, log_var).sum(1)
    got = losses.vae_loss(x, x_hat, mu, log_var, "bce", 5000.0, 1.0)["elbo"]
    assert torch.allclose(got, (log_px - kl).mean(), rtol=1e-5)
