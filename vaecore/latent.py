"""Latent-space operations as pure tensor functions: encode, class means, morphs, samplers, traversals."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

from vaecore.data import to_float

# The seed's morph examples: pairs of class indices (dress <-> trouser "and the like").
SEED_PAIRS = ((3, 1), (0, 9), (7, 5), (2, 8))


@torch.inference_mode()
def encode(model: nn.Module, x: torch.Tensor, batch: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 28, 28) -> (mu, log_var), each (N, d). Large batches: inference only."""
    mus, log_vars = [], []
    for xb in x.split(batch):
        mu, log_var = model.encode(to_float(xb))
        mus.append(mu)
        log_vars.append(log_var)
    return torch.cat(mus), torch.cat(log_vars)


@torch.inference_mode()
def decode(model: nn.Module, z: torch.Tensor, batch: int = 2000) -> torch.Tensor:
    """(N, d) latents -> (N, 1, 28, 28) images in [0, 1]."""
    return torch.cat([model.decode(zb) for zb in z.split(batch)])


def class_means(mu: torch.Tensor, y: torch.Tensor, classes: int = 10) -> torch.Tensor:
    """Per-class mean of the posterior means: (classes, d). A missing class gives NaNs."""
    return torch.stack([mu[y == c].mean(0) for c in range(classes)])


def alphas(steps: int) -> torch.Tensor:
    """steps values from 0 to 1, both end points included."""
    return torch.linspace(0.0, 1.0, steps)


def morph_additive(v_a: torch.Tensor, v_b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """The seed's form, v_A + alpha * v_B: (len(a), d). It starts at v_A but ends at v_A + v_B."""
    return v_a[None] + a[:, None] * v_b[None]


def morph_interp(v_a: torch.Tensor, v_b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """(1 - alpha) * v_A + alpha * v_B: (len(a), d), from exactly v_A to exactly v_B."""
    return (1.0 - a[:, None]) * v_a[None] + a[:, None] * v_b[None]


def pair_matrix(means: torch.Tensor, steps: int) -> tuple[list[tuple[int, int]], torch.Tensor]:
    """All class pairs (i < j) and their interpolation strips: (pairs, (P * steps, d))."""
    pairs = list(itertools.combinations(range(len(means)), 2))
    a = alphas(steps)
    return pairs, torch.cat([morph_interp(means[i], means[j], a) for i, j in pairs])


def traversal(center: torch.Tensor, dims: int, values: torch.Tensor) -> torch.Tensor:
    """For each of the first `dims` coordinates, center with that coordinate set to each value.

    Returns (dims * len(values), d), row-major by dim, so a grid with nrow=len(values) shows one
    dim per row.
    """
    z = center[None, None].repeat(dims, len(values), 1)  # (dims, V, d)
    for j in range(dims):
        z[j, :, j] = values
    return z.reshape(-1, center.numel())


# --- samplers -----------------------------------------------------------------------------------


def prior_z(n: int, d: int, seed: int) -> torch.Tensor:
    """n draws from N(0, I): the seed's generation; same seed and d give the same z in every run."""
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


@dataclass(frozen=True)
class Gaussian:
    """A full-covariance Gaussian fitted to the train-set mu: the aggregate posterior's moments."""

    mean: torch.Tensor  # (d,)
    chol: torch.Tensor  # (d, d) lower Cholesky factor of the covariance

    def sample(self, n: int, seed: int) -> torch.Tensor:
        eps = prior_z(n, self.mean.numel(), seed)  # same eps as the prior sampler: comparable
        return self.mean + eps @ self.chol.T


def fit_gaussian(mu: torch.Tensor) -> Gaussian:
    x = mu.double()
    mean = x.mean(0)
    cov = torch.cov(x.T).reshape(len(mean), len(mean))
    # a tiny ridge keeps the factorisation defined for collapsed (zero-variance) dims
    chol = torch.linalg.cholesky(cov + 1e-6 * torch.eye(len(mean), dtype=cov.dtype))
    return Gaussian(mean.float(), chol.float())


@dataclass(frozen=True)
class Mixture:
    """A K-component full-covariance Gaussian mixture, fitted by EM (optional sampler)."""

    weights: torch.Tensor  # (K,)
    parts: tuple[Gaussian, ...]

    def sample(self, n: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        comp = torch.multinomial(self.weights, n, replacement=True, generator=g)
        z = torch.empty(n, self.parts[0].mean.numel())
        for k, part in enumerate(self.parts):
            idx = (comp == k).nonzero().flatten()
            if len(idx):
                z[idx] = part.sample(len(idx), seed + 1 + k)
        return z


def fit_mixture(mu: torch.Tensor, y: torch.Tensor, iters: int = 20) -> Mixture:
    """EM for a 10-component mixture, started from the class means (deterministic)."""
    x = mu.double()
    n, d = x.shape
    k = int(y.max()) + 1
    resp = torch.nn.functional.one_hot(y, k).double()  # start: each point in its class
    for _ in range(iters):
        nk = resp.sum(0) + 1e-9  # (K,)
        means = resp.T @ x / nk[:, None]  # (K, d)
        covs = torch.stack(
            [
                ((resp[:, j, None] * (x - means[j])).T @ (x - means[j])) / nk[j]
                + 1e-4 * torch.eye(d, dtype=x.dtype)
                for j in range(k)
            ]
        )
        dist = torch.distributions.MultivariateNormal(means, covs)
        logp = dist.log_prob(x[:, None, :]) + (nk / n).log()  # (N, K)
        resp = logp.softmax(1)
    parts = tuple(Gaussian(means[j].float(), torch.linalg.cholesky(covs[j]).float()) for j in range(k))
    return Mixture((nk / n).float(), parts)
