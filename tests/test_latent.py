"""Latent operations on hand-made tensors: class means, morph end points, samplers, traversals."""

from __future__ import annotations

import torch

from vaecore import latent


def test_class_means_average_each_class_separately():
    mu = torch.tensor([[0.0, 0.0], [2.0, 4.0], [10.0, 10.0], [12.0, 14.0]])
    y = torch.tensor([0, 0, 1, 1])
    assert torch.allclose(latent.class_means(mu, y, classes=2), torch.tensor([[1.0, 2.0], [11.0, 12.0]]))


def test_interpolation_starts_and_ends_at_the_class_means():
    v_a, v_b = torch.tensor([1.0, -2.0, 3.0]), torch.tensor([-4.0, 5.0, 0.5])
    z = latent.morph_interp(v_a, v_b, latent.alphas(9))
    assert z.shape == (9, 3)
    assert torch.equal(z[0], v_a) and torch.equal(z[-1], v_b)
    assert torch.allclose(z[4], (v_a + v_b) / 2)


def test_additive_morph_is_the_seeds_form():
    v_a, v_b = torch.tensor([1.0, 2.0]), torch.tensor([10.0, 20.0])
    z = latent.morph_additive(v_a, v_b, latent.alphas(5))
    assert torch.equal(z[0], v_a)
    assert torch.allclose(z[-1], v_a + v_b)  # ends at v_A + v_B, not at v_B: why we add the interp
    assert torch.allclose(z[2], v_a + 0.5 * v_b)


def test_pair_matrix_has_all_45_pairs_with_their_end_points():
    means = torch.randn(10, 4)
    pairs, z = latent.pair_matrix(means, steps=7)
    assert len(pairs) == 45 and len(set(pairs)) == 45
    assert z.shape == (45 * 7, 4)
    i, j = pairs[17]
    assert torch.allclose(z[17 * 7], means[i]) and torch.allclose(z[17 * 7 + 6], means[j])


def test_prior_sampler_is_standard_normal_and_seeded():
    z = latent.prior_z(20000, 3, seed=1)
    assert torch.equal(z, latent.prior_z(20000, 3, seed=1))
    assert z.mean(0).abs().max() < 0.03
    assert (z.std(0) - 1).abs().max() < 0.03


def test_aggregate_gaussian_reproduces_the_fitted_mean_and_covariance():
    g = torch.Generator().manual_seed(0)
    cov = torch.tensor([[4.0, 1.5], [1.5, 1.0]])
    mu = torch.randn(20000, 2, generator=g) @ torch.linalg.cholesky(cov).T + torch.tensor([1.0, -2.0])
    fitted = latent.fit_gaussian(mu)
    z = fitted.sample(20000, seed=3)
    assert torch.allclose(z.mean(0), torch.tensor([1.0, -2.0]), atol=0.06)
    assert torch.allclose(torch.cov(z.T), cov, atol=0.15)


def test_mixture_sampler_puts_mass_near_each_cluster():
    centres = torch.arange(10.0)[:, None] * torch.tensor([[5.0, 0.0]])  # 10 clusters on a line
    y = torch.arange(10).repeat_interleave(200)
    mu = centres[y] + 0.1 * torch.randn(2000, 2, generator=torch.Generator().manual_seed(0))
    z = latent.fit_mixture(mu, y).sample(5000, seed=0)
    nearest = (z[:, None, :] - centres[None]).norm(dim=2).min(1).values
    assert nearest.median() < 0.3  # a single Gaussian would put most samples between clusters


def test_traversal_changes_one_coordinate_per_row():
    values = torch.linspace(-3, 3, 5)
    z = latent.traversal(torch.tensor([0.5, 0.5, 0.5]), dims=2, values=values).view(2, 5, 3)
    assert torch.equal(z[0, :, 0], values) and torch.all(z[0, :, 1:] == 0.5)
    assert torch.equal(z[1, :, 1], values) and torch.all(z[1, :, [0, 2]] == 0.5)
