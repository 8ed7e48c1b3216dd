"""Label-free samplers fitted to latents from a known distribution get closer to it than N(0, I)."""

from __future__ import annotations

import math

import torch

from vaecore import latent
from vaecore.post import metrics, trial, two_stage

CENTRES = torch.tensor([[4.0, 0.0, 0.0], [-4.0, 0.0, 0.0], [0.0, 6.0, 0.0]])


def three_clusters(n: int, seed: int) -> torch.Tensor:
    """A known, clearly non-Gaussian q(z): three equal, well separated clusters (std 0.5) in 3-D."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(3, (n,), generator=g)
    return CENTRES[k] + 0.5 * torch.randn(n, 3, generator=g)


def energy(a: torch.Tensor, b: torch.Tensor) -> float:
    """Energy distance: zero only for equal distributions; unlike FID it sees more than two moments."""
    return float(2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean())


def distances(z: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    return metrics.fid(z, truth), energy(z, truth)


def baselines(train: torch.Tensor, truth: torch.Tensor) -> dict:
    return {
        "prior": distances(latent.prior_z(3000, 3, seed=1), truth),
        "aggregate": distances(latent.fit_gaussian(train).sample(3000, seed=1), truth),
    }


def test_label_free_mixture_picks_enough_components_and_recovers_the_clusters():
    train, truth = three_clusters(6000, 0), three_clusters(3000, 5)
    mix, scores = latent.choose_gmm(train)
    assert list(scores) == list(latent.GMM_SIZES[: len(scores)])  # tried in order, from 1
    assert len(mix.parts) >= 3 and scores[len(mix.parts)] == max(scores.values())
    assert scores[1] < scores[len(mix.parts)] - 1.0  # one Gaussian is far worse on held-out points
    fid, en = distances(mix.sample(3000, seed=1), truth)
    base = baselines(train, truth)
    assert fid < 0.05 * base["prior"][0]  # FID in latent space: 12.7 for N(0, I)
    assert en < 0.1 * base["aggregate"][1]  # beyond the two moments the aggregate Gaussian matches
    nearest = torch.cdist(mix.sample(3000, seed=2), CENTRES).min(1).values
    assert nearest.median() < 1.0  # a single Gaussian puts most samples between the clusters


def test_the_mixture_search_goes_on_while_held_out_likelihood_rises_and_stops_when_it_does_not():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[3.0, 0.0, 0.0], [-3.0, 0.0, 0.0]])
    two = torch.cat([torch.randn(3000, 3, generator=g) * 0.5 + c for c in centres])
    mix, scores = latent.choose_gmm(two)
    assert len(mix.parts) == 2
    assert list(scores) == [1, 2, 3, 5]  # 3 and 5 components add nothing over 2: the search stops
    assert scores[2] > scores[1] + 1.0
    assert max(scores[3], scores[5]) <= scores[2] + latent.GMM_MIN_GAIN
    # many small clusters: the search passes the old largest candidate (20) and finds them
    grid = torch.stack(torch.meshgrid(torch.arange(6.0), torch.arange(6.0), indexing="ij"), -1).reshape(-1, 2)
    many = torch.cat([torch.randn(200, 2, generator=g) * 0.05 + 2 * c for c in grid])  # 36 clusters
    mix, scores = latent.choose_gmm(many)
    assert max(scores) > 20 and len(mix.parts) >= 30


def test_the_mixture_search_stops_at_once_past_a_clear_peak_but_waits_out_a_tie():
    # three clusters in 16-D on 1,600 fitted points: a fourth and fifth component only overfit
    g = torch.Generator().manual_seed(0)
    c = torch.randn(3, 16, generator=g) * 4
    x = c[torch.randint(3, (2000,), generator=g)] + torch.randn(2000, 16, generator=g)
    mix, scores = latent.choose_gmm(x)
    assert len(mix.parts) == 3
    assert list(scores) == [1, 2, 3, 5]  # 5 is clearly worse: 8 is never fitted (patience would try it)
    assert scores[5] < scores[3] - 0.05
    # the two clusters above: 3 components tie with 2 (within GMM_MIN_GAIN), so the search tries 5
    centres = torch.tensor([[3.0, 0.0, 0.0], [-3.0, 0.0, 0.0]])
    two = torch.cat([torch.randn(3000, 3, generator=g) * 0.5 + c for c in centres])
    mix, scores = latent.choose_gmm(two)
    assert abs(scores[3] - scores[2]) < latent.GMM_MIN_GAIN and list(scores) == [1, 2, 3, 5]


def test_two_stage_vae_learns_the_latent_distribution_and_records_its_curve():
    train, truth = three_clusters(6000, 0), three_clusters(3000, 5)
    stage = two_stage.fit_two_stage(train, steps=1000)
    fid, en = distances(stage.sample(3000, seed=1), truth)
    base = baselines(train, truth)
    assert fid < 0.2 * base["prior"][0]
    assert en < 0.5 * base["aggregate"][1]
    h = stage.history
    assert len(h["step"]) == len(h["train"]) == len(h["val"]) == 20 and h["step"][-1] == 1000
    assert h["val"][-1] < h["val"][0] - 0.5  # the held-out loss fell: it learned, not collapsed
    assert torch.equal(stage.sample(10, seed=3), stage.sample(10, seed=3))


def test_post_processing_fits_the_label_free_samplers_by_default_and_two_stage_and_labels_when_asked():
    train, y = three_clusters(3000, 0), torch.arange(3).repeat(1000)
    fns, info = trial.samplers(train, y, trial.Options(flow_steps=50))
    assert list(fns) == ["prior", "aggregate", "gmm", "flow"]  # the two-stage VAE is opt-in
    assert info["gmm_components"] >= 3 and "flow_heldout_ll" in info
    fns, info = trial.samplers(
        train, y, trial.Options(gmm=False, flow=False, two_stage=True, two_stage_steps=50)
    )
    assert list(fns) == ["prior", "aggregate", "two_stage"] and len(info["two_stage_curve"]["val"]) == 1
    fns, info = trial.samplers(train, y, trial.Options(gmm=False, flow=False, mixture=True))
    assert list(fns) == ["prior", "aggregate", "mixture"] and info == {}
    assert fns["mixture"](7, 0).shape == (7, 3)


def test_best_sampler_ignores_the_label_using_mixture_and_measures_the_gap_closed():
    m = {"fid_prior": 100.0, "fid_recon": 20.0, "fid_aggregate": 60.0, "fid_gmm": 40.0, "fid_mixture": 10.0}
    verdict = trial.best_sampler(m)
    assert verdict == {"best_sampler": "gmm", "gap_closed": 0.75, "best_sampler_excluded": {}}  # 60 / 80


def test_a_sampler_that_drops_classes_is_not_best_however_low_its_fid_and_the_summary_says_why():
    cover = lambda e: {"entropy": e, "histogram": [0.1] * 10}  # noqa: E731
    m = {
        "fid_prior": 100.0,
        "fid_recon": 20.0,
        "fid_aggregate": 60.0,
        "fid_gmm": 30.0,  # the lowest FID, but its samples are mostly three classes
        "coverage_recon": cover(2.25),
        "coverage_prior": cover(2.20),
        "coverage_aggregate": cover(2.18),
        "coverage_gmm": cover(1.40),
    }
    verdict = trial.best_sampler(m)
    assert verdict["best_sampler"] == "aggregate" and verdict["gap_closed"] == 0.5  # (100 - 60) / 80
    assert list(verdict["best_sampler_excluded"]) == ["gmm"]
    assert "1.40 < reconstructions' 2.25" in verdict["best_sampler_excluded"]["gmm"]
    m["coverage_gmm"] = cover(2.25 - 0.09)  # within the stated tolerance (0.1 nats): it counts
    assert trial.best_sampler(m)["best_sampler"] == "gmm"


def test_em_stops_once_converged_without_losing_likelihood():
    g = torch.Generator().manual_seed(3)
    x = torch.cat([torch.randn(2000, 4, generator=g) * 0.4 + c for c in (-2.0, 0.0, 2.0)])
    held = torch.cat([torch.randn(1000, 4, generator=g) * 0.4 + c for c in (-2.0, 0.0, 2.0)])
    early = latent.fit_gmm(x, 3, seed=1)  # stops when an iteration adds < EM_TOL nats per point
    full = latent.fit_gmm(x, 3, seed=1, tol=-math.inf)  # all 30 iterations
    assert abs(float(early.log_prob(held).mean()) - float(full.log_prob(held).mean())) < 0.01
