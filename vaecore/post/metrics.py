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
from pathlib import Path

import torch
from torch import nn

from vaecore.data import to_float
from vaecore.losses import kl_per_dim, neg_log_likelihood, pixel_error
from vaecore.post.classifier import predict

LOG_2PI = math.log(2.0 * math.pi)


# --- likelihood bounds --------------------------------------------------------------------------


def _log_normal(z: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(log_var))) summed over the last dim."""
    return -0.5 * (LOG_2PI + log_var + (z - mu).pow(2) / log_var.exp()).sum(-1)


@torch.inference_mode()
def log_weights(
    model: nn.Module,
    x: torch.Tensor,
    k: int,
    likelihood: str,
    recon_multiplier: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """log p(x|z) + log p(z) - log q(z|x) for k draws per image: (B, k). x is float (B, 1, 28, 28)."""
    mu, log_var = model.encode(x)  # (B, d)
    eps = torch.randn((k, *mu.shape), generator=generator).to(mu.device)  # (k, B, d)
    z = mu + (0.5 * log_var).exp() * eps  # (k, B, d)
    x_hat = model.decode(z.reshape(-1, mu.shape[1]))  # (k * B, 1, 28, 28)
    err = pixel_error(x.repeat(k, 1, 1, 1), x_hat, likelihood)  # (k * B,)
    log_px_z = -neg_log_likelihood(err, likelihood, recon_multiplier).view(k, -1)  # (k, B)
    log_pz = _log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
    log_qz = _log_normal(z, mu, log_var)
    return (log_px_z + log_pz - log_qz).T  # (B, k)


def iwae(
    model: nn.Module,
    x: torch.Tensor,
    k: int,
    likelihood: str,
    recon_multiplier: float,
    seed: int = 0,
    decodes_per_batch: int = 512,
) -> float:
    """Mean IWAE bound on log p(x) in nats per image over uint8 images x; k = 1 is the ELBO."""
    g = torch.Generator().manual_seed(seed)
    per = max(1, decodes_per_batch // k)
    device = next(model.parameters()).device
    total = 0.0
    for xb in x.split(per):
        lw = log_weights(model, to_float(xb).to(device), k, likelihood, recon_multiplier, g)
        total += (lw.logsumexp(1) - math.log(k)).sum().item()
    return total / len(x)


@torch.inference_mode()
def elbo_terms(
    model: nn.Module,
    x: torch.Tensor,
    mu: torch.Tensor,
    log_var: torch.Tensor,
    likelihood: str,
    recon_multiplier: float,
    seed: int = 12345,
) -> dict:
    """Test metrics from the encoded test set: ELBO (one fixed-noise z), MSE at z = mu, KL per dim."""
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    nll, sq = 0.0, 0.0
    for xb, mb, lb in zip(x.split(256), mu.split(256), log_var.split(256), strict=True):
        xf, mb, lb = to_float(xb).to(device), mb.to(device), lb.to(device)
        z = mb + (0.5 * lb).exp() * torch.randn(mb.shape, generator=g).to(device)
        nll += (
            neg_log_likelihood(pixel_error(xf, model.decode(z), likelihood), likelihood, recon_multiplier)
            .sum()
            .item()
        )
        sq += (xf - model.decode(mb)).pow(2).flatten(1).mean(1).sum().item()
    kl_dims = kl_per_dim(mu, log_var).mean(0)  # (d,)
    n = len(x)
    return {
        "test_elbo": -(nll / n) - kl_dims.sum().item(),
        "test_mse": sq / n,
        "test_kl": kl_dims.sum().item(),
        "kl_per_dim": kl_dims.tolist(),
    }


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


def fid(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to feature sets a (N, F) and b (M, F)."""
    a, b = a.double(), b.double()
    ma, mb = a.mean(0), b.mean(0)
    sa, sb = torch.cov(a.T), torch.cov(b.T)
    w, v = torch.linalg.eigh(sa)
    sa_half = v @ torch.diag(w.clamp_min(0).sqrt()) @ v.T
    cross = torch.linalg.eigvalsh(sa_half @ sb @ sa_half).clamp_min(0).sqrt().sum()
    return float((ma - mb).pow(2).sum() + sa.trace() + sb.trace() - 2 * cross)


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


def sample_quality(
    clf: nn.Module,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    floor_x: torch.Tensor,
    recons: torch.Tensor,
    generated: dict[str, torch.Tensor],
) -> dict:
    """FIDs in the reference classifier's feature space against the test images, and coverage.

    fid_floor compares real train images (floor_x) with the test images: no model gets below it.
    """
    real, _ = predict(clf, test_x)
    floor, _ = predict(clf, floor_x)
    rec_f, rec_p = predict(clf, recons)
    out = {
        "fid_floor": fid(floor, real),
        "fid_recon": fid(rec_f, real),
        "recon_accuracy": float((rec_p.argmax(1) == test_y).float().mean()),
        "fid_samples": len(next(iter(generated.values()))),
    }
    for name, images in generated.items():
        feats, probs = predict(clf, images)
        out[f"fid_{name}"] = fid(feats, real)
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
