"""Metrics: ELBO terms, the IWAE bound, active units, aggregate-posterior stats, FID and class coverage.

IWAE (Burda et al. 2016): log p(x) >= E[log 1/k sum_i p(x|z_i) p(z_i) / q(z_i|x)], z_i ~ q(z|x);
k = 1 is the ELBO and the bound tightens as k grows. p(x|z) is the run's own likelihood
(vaecore.losses.neg_log_likelihood), so the numbers are nats per image like test_elbo.

FID (Heusel et al. 2017): ||m_a - m_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^1/2) between Gaussians fitted
to two feature sets. tr((S_a S_b)^1/2) is the sum of the square roots of the eigenvalues of
S_a^1/2 S_b S_a^1/2 (symmetric, so eigh is stable and we need no scipy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vaecore import latent
from vaecore.data import to_float
from vaecore.losses import kl_per_dim, neg_log_likelihood, pixel_error
from vaecore.post.classifier import predict


@dataclass(frozen=True)
class RealStats:
    """The real side of every FID (vaecore.post.reference computes and caches it)."""

    key: str
    mean: torch.Tensor  # (F,) float64: test-image features
    cov: torch.Tensor  # (F, F) float64
    cov_half: torch.Tensor  # (F, F): sqrt_psd(cov), the one matrix square root the FIDs need
    floor_fid: float  # FID of real train images (floor_x) against the test images


LOG_2PI = math.log(2.0 * math.pi)


# --- likelihood bounds --------------------------------------------------------------------------


def _log_normal(z: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(log_var))) summed over the last dim."""
    return -0.5 * (LOG_2PI + log_var + (z - mu).pow(2) / log_var.exp()).sum(-1)


@torch.inference_mode()
def test_pass(
    model: nn.Module,
    x: torch.Tensor,
    likelihood: str,
    recon_multiplier: float,
    batch: int = 256,
    seed: int = 12345,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """Each test image encoded once: (mu, log_var, reconstructions at z = mu, ELBO terms).

    The ELBO uses one fixed-noise z per image (all the noise drawn up front, so it does not depend
    on the batch size); the MSE and the reconstructions use z = mu. Outputs are on the CPU.
    """
    device = next(model.parameters()).device
    eps = torch.randn(len(x), model.latent_dim, generator=torch.Generator().manual_seed(seed))
    mus, log_vars, recons, nll, sq = [], [], [], [], []
    for xb, eb in zip(x.split(batch), eps.split(batch), strict=True):
        xf = to_float(xb).to(device)
        mu, log_var = model.encode(xf)  # (B, d)
        z = mu + (0.5 * log_var).exp() * eb.to(device)
        l_z, l_mu = model.decode_logits(torch.cat([z, mu])).chunk(2)  # one decode call for both
        x_mu = torch.sigmoid(l_mu)
        nll.append(neg_log_likelihood(pixel_error(xf, l_z, likelihood), likelihood, recon_multiplier))
        sq.append((xf - x_mu).pow(2).flatten(1).mean(1))
        mus.append(mu.cpu())
        log_vars.append(log_var.cpu())
        recons.append(x_mu.cpu())
    mu, log_var = torch.cat(mus), torch.cat(log_vars)
    kl_dims = kl_per_dim(mu, log_var).double().mean(0)  # (d,)
    terms = {
        "test_elbo": -torch.cat(nll).double().mean().item() - kl_dims.sum().item(),
        "test_mse": torch.cat(sq).double().mean().item(),
        "test_kl": kl_dims.sum().item(),
        "kl_per_dim": kl_dims.tolist(),
    }
    return mu, log_var, torch.cat(recons), terms


@torch.inference_mode()
def iwae_per_image(
    model: nn.Module,
    x: torch.Tensor,
    k: int,
    likelihood: str,
    recon_multiplier: float,
    seed: int = 0,
    posterior: tuple[torch.Tensor, torch.Tensor] | None = None,
    decodes_per_batch: int = 256,
) -> torch.Tensor:
    """The IWAE bound on log p(x) of each uint8 image of x, (N,) float64 nats; k = 1 is the ELBO.

    posterior: x's (mu, log_var) if already encoded (test_pass's), else x is encoded here. All
    k * N draws are made up front and decoded in chunks of whole images (256 decodes: measured
    faster than 2048 on CPU).
    """
    device = next(model.parameters()).device
    mu, log_var = posterior if posterior is not None else latent.encode(model, x.to(device), 512)
    mu, log_var = mu.to(device), log_var.to(device)
    eps = torch.randn((len(x), k, mu.shape[1]), generator=torch.Generator().manual_seed(seed))
    z = mu[:, None] + (0.5 * log_var[:, None]).exp() * eps.to(device)  # (N, k, d)
    log_w = _log_normal(z, torch.zeros_like(z), torch.zeros_like(z)) - _log_normal(
        z, mu[:, None], log_var[:, None]
    )  # (N, k): log p(z) - log q(z|x)
    per = max(1, decodes_per_batch // k)  # whole images per chunk, k decodes each
    for start in range(0, len(x), per):
        xf = to_float(x[start : start + per]).to(device).repeat_interleave(k, 0)  # (B * k, 1, 28, 28)
        logits = model.decode_logits(z[start : start + per].reshape(-1, mu.shape[1]))
        err = pixel_error(xf, logits, likelihood).view(-1, k)  # (B, k)
        log_w[start : start + per] -= neg_log_likelihood(err, likelihood, recon_multiplier)
    return log_w.double().logsumexp(1) - math.log(k)  # in float64 whatever the networks ran in


def iwae(model: nn.Module, x: torch.Tensor, k: int, likelihood: str, recon_multiplier: float, **kw) -> float:
    """Mean IWAE bound over the images x (iwae_per_image's options)."""
    return iwae_per_image(model, x, k, likelihood, recon_multiplier, **kw).mean().item()


def mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    """The mean and its standard error (std / sqrt(n)); the error is 0 for a single value."""
    n = len(values)
    se = values.std().item() / math.sqrt(n) if n > 1 else 0.0
    return values.mean().item(), se


# --- the aggregate posterior --------------------------------------------------------------------


def latent_stats(mu: torch.Tensor, log_var: torch.Tensor, threshold: float = 0.01) -> dict:
    """Active units (Burda et al.: Var_x[mu_j] > threshold) and the aggregate posterior's moments.

    agg_std is the std of q(z) = mean_x q(z|x) itself: sqrt(Var_x[mu] + E_x[sigma^2]); N(0, I)
    would give 0 means and unit stds. mu_std is the spread of the means alone (what the
    aggregate sampler fits).
    """
    var_mu = mu.var(0)
    agg_var = var_mu + log_var.exp().mean(0)
    return {
        "active_units": int((var_mu > threshold).sum()),
        "agg_mean": mu.mean(0).tolist(),
        "agg_std": agg_var.sqrt().tolist(),
        "mu_std": var_mu.sqrt().tolist(),
    }


# --- sample quality -----------------------------------------------------------------------------


def gaussian(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (F,) and covariance (F, F) of a feature set (N, F), in float64."""
    f = feats.double()
    return f.mean(0), torch.cov(f.T)


def sqrt_psd(s: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a covariance matrix (negative rounding-error eigenvalues -> 0)."""
    w, v = torch.linalg.eigh(s)
    return v @ torch.diag(w.clamp_min(0).sqrt()) @ v.T


def frechet(m_a, s_a, s_a_half, m_b, s_b) -> float:
    """FID from the two Gaussians; s_a_half = sqrt_psd(s_a), passed in so a reference can cache it."""
    cross = torch.linalg.eigvalsh(s_a_half @ s_b @ s_a_half).clamp_min(0).sqrt().sum()
    return float((m_a - m_b).pow(2).sum() + s_a.trace() + s_b.trace() - 2 * cross)


def fid(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to feature sets a (N, F) and b (M, F)."""
    (ma, sa), (mb, sb) = gaussian(a), gaussian(b)
    return frechet(ma, sa, sqrt_psd(sa), mb, sb)


def coverage(probs: torch.Tensor) -> dict:
    """How the classifier sees a sample set: predicted-class histogram, its entropy, confidence."""
    hist = torch.bincount(probs.argmax(1), minlength=probs.shape[1]).double() / len(probs)
    entropy = -(hist[hist > 0] * hist[hist > 0].log()).sum()  # nats; uniform over 10 = 2.303
    return {
        "histogram": [round(h, 4) for h in hist.tolist()],
        "entropy": float(entropy),
        "mean_max_prob": float(probs.max(1).values.mean()),
    }


# --- Inception FID (only where the weights are already on disk) ---------------------------------


def inception_weights() -> Path | None:
    """torchvision's Inception-v3 weights in the local torch hub cache, if present; never downloads."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(folder.glob("inception_v3_google-*.pth")) if folder.is_dir() else []
    return found[0] if found else None


@torch.inference_mode()
def inception_features(images: torch.Tensor, weights: Path, batch: int = 100) -> torch.Tensor:
    """2048-d pool features of float images (N, 1, 28, 28): gray -> 3 channels, resized to 299."""
    from torchvision.models import inception_v3

    net = inception_v3(weights=None, aux_logits=True, init_weights=False)
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    net.fc = nn.Identity()
    net.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    out = []
    for xb in images.split(batch):
        x = torch.nn.functional.interpolate(xb.repeat(1, 3, 1, 1), size=299, mode="bilinear")
        out.append(net((x - mean) / std))
    return torch.cat(out)


@torch.inference_mode()
def sample_quality(
    clf: nn.Module, real: RealStats, test_y: torch.Tensor, recons: torch.Tensor, generated: dict
) -> dict:
    """FIDs in the reference classifier's feature space against the test images, and coverage.

    real holds the test images' feature Gaussian and fid_floor (real train images vs the test
    images: no model gets below it), computed once per classifier and data (post.reference).
    """
    vs_real = lambda feats: frechet(real.mean, real.cov, real.cov_half, *gaussian(feats))
    rec_f, rec_p = predict(clf, recons)
    out = {
        "fid_floor": real.floor_fid,
        "fid_recon": vs_real(rec_f),
        "recon_accuracy": float((rec_p.argmax(1) == test_y).float().mean()),
        "coverage_recon": coverage(rec_p),  # the decoder's own class spread: what samplers are held to
        "fid_samples": len(next(iter(generated.values()))),
    }
    for name, images in generated.items():
        feats, probs = predict(clf, images)
        out[f"fid_{name}"] = vs_real(feats)
        out[f"coverage_{name}"] = coverage(probs)
    return out


def inception_fid(test_x: torch.Tensor, generated: torch.Tensor) -> dict:
    """The standard Inception FID if the weights are on disk; else None and why it was skipped."""
    weights = inception_weights()
    if weights is None:
        return {
            "inception_fid": None,
            "inception_fid_note": "skipped: no Inception-v3 weights in the torch cache "
            f"({Path(torch.hub.get_dir()) / 'checkpoints'}); never downloaded",
        }
    real = inception_features(to_float(test_x), weights)
    return {
        "inception_fid": fid(inception_features(generated, weights), real),
        "inception_fid_note": f"prior samples vs {len(test_x)} test images, {weights.name}",
    }
