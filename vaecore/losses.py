"""The seed's VAE loss, its terms, and the unscaled ELBO in nats.

Training loss (the seed's form), per image, averaged over the batch:
    loss = recon_multiplier * mean_pixels(err(x, x_hat)) + kl_multiplier * KL(q(z|x) || N(0, I))
with err the squared error ("mse"), the binary cross-entropy ("bce") or the continuous-Bernoulli
negative log-density ("cb"). The decoder hands over logits l; its images are sigmoid(l).

KL, closed form for a diagonal Gaussian against N(0, I) (Kingma & Welling 2014, appendix B):
    KL = sum_j 0.5 * (mu_j^2 + exp(log_var_j) - 1 - log_var_j)

Why the ELBO: runs with different multipliers have losses on different scales, so we also report
the evidence lower bound under the likelihood the multiplier implies. For "mse", weighting the
per-pixel mean squared error by r is exactly the negative log-likelihood of a Gaussian decoder
N(x_hat, sigma^2 I) up to a constant, with sigma^2 = D / (2 r), D = 784:
    -log p(x|z) = ||x - x_hat||^2 / (2 sigma^2) + D/2 * log(2 pi sigma^2)
                = r * mse + D/2 * log(pi * D / r)
For "bce" the likelihood is the plain Bernoulli, -log p(x|z) = D * mean BCE (whatever r is).
For "cb" it is the continuous Bernoulli (Loaiza-Ganem & Cunningham, NeurIPS 2019), a proper density
on [0, 1] pixels: the BCE minus its log-normaliser log C(sigmoid(l)), from torch.distributions.
Its images are sigmoid(l), the distribution's shape parameter (as pytorch/examples' VAE shows them),
which is sharper than its mean: at r = D the loss is exactly the negative ELBO.
    ELBO = -(-log p(x|z)) - KL    [nats per image; a density, so it can be positive for mse]
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import ContinuousBernoulli

PIXELS = 784  # D: Fashion-MNIST images are 28 x 28


def kl_per_dim(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(log_var)) || N(0, 1)) for each latent dim: (B, d)."""
    return 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var)


def pixel_error(x: torch.Tensor, logits: torch.Tensor, likelihood: str) -> torch.Tensor:
    """Per-image mean over pixels of the squared error, the BCE or the continuous-Bernoulli
    negative log-density, from the decoder's logits: (B,)."""
    if likelihood == "mse":
        err = (x - torch.sigmoid(logits)).pow(2)
    elif likelihood == "bce":
        err = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    else:
        err = -ContinuousBernoulli(logits=logits, validate_args=False).log_prob(x)
    return err.flatten(1).mean(1)


def gaussian_log_norm(recon_multiplier: float) -> float:
    """D/2 * log(2 pi sigma^2) with sigma^2 = D / (2 r): the Gaussian's normalising constant."""
    sigma2 = PIXELS / (2.0 * recon_multiplier)
    return 0.5 * PIXELS * math.log(2.0 * math.pi * sigma2)


def neg_log_likelihood(err: torch.Tensor, likelihood: str, recon_multiplier: float) -> torch.Tensor:
    """-log p(x|z) in nats per image from `pixel_error`'s output: (B,)."""
    if likelihood != "mse":
        return PIXELS * err
    return recon_multiplier * err + gaussian_log_norm(recon_multiplier)


def vae_loss(
    x: torch.Tensor,
    logits: torch.Tensor,
    mu: torch.Tensor,
    log_var: torch.Tensor,
    likelihood: str,
    recon_multiplier: float,
    kl_multiplier: float,
) -> dict[str, torch.Tensor]:
    """Batch means of the loss and its terms. Only `loss` is meant for backward()."""
    err = pixel_error(x, logits, likelihood)  # (B,)
    kl = kl_per_dim(mu, log_var).sum(1)  # (B,)
    recon = recon_multiplier * err
    nll = neg_log_likelihood(err.detach(), likelihood, recon_multiplier)
    return {
        "loss": (recon + kl_multiplier * kl).mean(),
        "recon": recon.mean(),
        "kl": kl.mean(),
        "mse": (x - torch.sigmoid(logits.detach())).pow(2).mean(),
        "elbo": -(nll + kl.detach()).mean(),
    }
