"""The one catalogue of what post-processing measures and draws and the gallery shows: the samplers,
the metrics (with which way is better), the figures, and the verdict on the best sampler.

Post-processing fills it (vaecore.post.trial), the gallery reads it (vaecore.gallery), so it
imports only the standard library. Everything derived from the samplers (their metric keys, the
table's FID columns, the titles) is computed when asked, from SAMPLERS as it is at that moment.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sampler:
    """A way to draw latent vectors z; each one gets an FID, a class coverage and a 10 x 10 picture."""

    name: str  # its key in summary.json: fid_<name>, coverage_<name>, artifact samples_<name>
    short: str  # in legends and the runs table's "best sampler" column
    title: str  # its picture's heading on the run and compare pages
    render_title: str  # on the picture itself: "<trial>: samples from <render_title>"
    label_free: bool  # never sees a class label, so it may be the best sampler
    option: str | None = None  # the bool [postprocess] option that turns it on; None: always on
    fid_label: str | None = None  # its FID's column in the runs table; None: no column
    compare: bool = True  # its picture is one of the compare page's pairs
    style: tuple[str, str] = ("o", "#555555")  # matplotlib marker and colour in the gallery's FID charts

    @property
    def fid_key(self) -> str:
        return f"fid_{self.name}"

    @property
    def coverage_key(self) -> str:
        return f"coverage_{self.name}"

    @property
    def artifact(self) -> str:
        return f"samples_{self.name}"


@dataclass(frozen=True)
class Metric:
    """A number in summary.json["metrics"] as the gallery shows it."""

    key: str
    label: str
    better: str | None  # "max", "min", or None when neither way is better
    format: str  # a str.format spec, or "pct" for a share shown as a percentage


@dataclass(frozen=True)
class Figure:
    """A picture of one trial: summary.json["artifacts"][key], artifacts/<key>.png."""

    key: str
    title: str
    note: str = ""


# In the order pages show them.
SAMPLERS: tuple[Sampler, ...] = (
    Sampler(
        "prior",
        "N(0, I)",
        "Prior samples",
        "the prior N(0, I)",
        True,
        fid_label="FID prior",
        style=("o", "#1f5fa8"),
    ),
    Sampler(
        "aggregate",
        "aggregate Gaussian",
        "Aggregate-posterior samples",
        "the aggregate posterior (Gaussian)",
        True,
        fid_label="FID agg. post.",
        style=("s", "#d0702c"),
    ),
    Sampler(
        "gmm",
        "mixture",
        "Mixture samples (no labels)",
        "a Gaussian mixture fitted without labels",
        True,
        option="gmm",
        fid_label="FID mixture",
        style=("^", "#2ca02c"),
    ),
    Sampler(
        "two_stage",
        "2-stage VAE",
        "Two-stage VAE samples",
        "the two-stage VAE (a second VAE on the latents)",
        True,
        option="two_stage",
        fid_label="FID 2-stage",
        style=("D", "#9467bd"),
    ),
    Sampler(
        "flow",
        "flow",
        "Flow samples (no labels)",
        "a normalizing flow (MAF) fitted without labels",
        True,
        option="flow",
        fid_label="FID flow",
        style=("P", "#e377c2"),
    ),
    Sampler(
        "mixture",
        "class mixture",
        "Class-started mixture samples (uses labels)",
        "a 10-Gaussian mixture started from the class labels",
        False,
        option="mixture",
        compare=False,
        style=("v", "#8c564b"),
    ),
)

# The runs table's columns (and the run page's first rows); the samplers' FIDs go in between.
METRICS_BEFORE_FIDS = (
    Metric("test_elbo", "test ELBO", "max", "{:.2f}"),
    Metric("test_iwae", "IWAE", "max", "{:.2f}"),
    Metric("test_mse", "recon MSE", "min", "{:.4f}"),
    Metric("test_kl", "KL", None, "{:.2f}"),
    Metric("active_units", "active units", "max", "{:.0f}"),
)
METRICS_AFTER_FIDS = (Metric("recon_accuracy", "recon acc.", "max", "pct"),)
# More numbers on the run page, under the table's.
EXTRA_METRICS = (
    Metric("gap_closed", "prior-to-recon FID gap closed by the best sampler", None, "pct"),
    Metric("gmm_components", "mixture components (held-out choice)", None, "{:.0f}"),
    Metric("two_stage_val_loss", "2-stage held-out loss (nats/vector)", None, "{:.2f}"),
    Metric("flow_heldout_ll", "flow held-out log-likelihood (nats/point)", None, "{:.2f}"),
    Metric("flow_gaussian_heldout_ll", "Gaussian held-out log-likelihood, same points", None, "{:.2f}"),
    Metric("flow_seconds", "flow fit seconds", None, "{:.1f}"),
    Metric("fid_recon", "FID reconstructions", None, "{:.1f}"),
    Metric("fid_floor", "FID floor (test vs test)", None, "{:.2f}"),
    Metric("iwae_k", "IWAE samples k", None, "{:.0f}"),
    Metric("iwae_images", "IWAE test images", None, "{:.0f}"),
    Metric("test_iwae_se", "IWAE standard error (over those images)", None, "{:.2f}"),
)
# The run page's sections after the samples, in reading order.
FIGURES = (
    Figure("curves", "Training curves"),
    Figure("recon", "Reconstructions", "test images above, reconstructions below"),
    Figure("latent", "Latent space", "test set means coloured by class"),
    Figure("latent_gif", "Latent space, rotating"),
    Figure("prototypes", "Class prototypes", "decoded class means"),
    Figure("morph_additive", "Additive morphs", "v_A + alpha * v_B, as in the seed"),
    Figure("morph_interp", "Interpolation strips", "(1 - alpha) v_A + alpha v_B"),
    Figure("morph_matrix", "All 45 class pairs"),
    Figure("traversals", "Latent traversals", "one row per dimension"),
    Figure("two_stage_loss", "Two-stage VAE training", "the second VAE's loss on the train-set latents"),
)
# The compare page's pairs after the samplers' pictures.
COMPARE_FIGURES = ("recon", "latent", "prototypes", "morph_matrix", "curves")


def sampler(name: str) -> Sampler:
    return next(s for s in SAMPLERS if s.name == name)


def metrics() -> list[Metric]:
    """The runs table's metrics: the samplers' FID columns sit between the fixed ones."""
    fids = [Metric(s.fid_key, s.fid_label, "min", "{:.1f}") for s in SAMPLERS if s.fid_label]
    return [*METRICS_BEFORE_FIDS, *fids, *METRICS_AFTER_FIDS]


def titles() -> dict[str, str]:
    """Artifact key -> title, for every figure and every sampler's picture."""
    return {f.key: f.title for f in FIGURES} | {s.artifact: s.title for s in SAMPLERS}


def compare() -> list[str]:
    """The artifact keys the compare page pairs up, in its order."""
    return [s.artifact for s in SAMPLERS if s.compare] + list(COMPARE_FIGURES)


COVERAGE_TOLERANCE = 0.1  # nats: a sampler whose class entropy is further than this below the
# reconstructions' drops classes the decoder can draw, and is not "best" however low its FID


def excluded(entropies: dict[str, float | None], floor: float | None) -> dict[str, str]:
    """Samplers that drop classes (name -> why): class entropy of their samples below the
    reconstructions' entropy (floor) by more than COVERAGE_TOLERANCE. None values are not judged."""
    if floor is None:
        return {}
    return {
        name: f"class entropy {e:.2f} < reconstructions' {floor:.2f} - {COVERAGE_TOLERANCE:g}: drops classes"
        for name, e in entropies.items()
        if e is not None and e < floor - COVERAGE_TOLERANCE
    }


def best_sampler(
    fids: dict[str, float | None],
    entropies: dict[str, float | None] | None = None,
    floor: float | None = None,
) -> str | None:
    """The label-free sampler with the lowest FID among those that keep the classes (see
    excluded; sampler name -> FID, None and unknown names are ignored; ties go to the first in
    catalogue order); None when no label-free sampler qualifies."""
    dropped = excluded(entropies or {}, floor)
    known = {
        s.name: fids[s.name]
        for s in SAMPLERS
        if s.label_free and fids.get(s.name) is not None and s.name not in dropped
    }
    return min(known, key=known.get) if known else None


def gap_closed(fid_prior: float, fid_recon: float, fid_best: float) -> float | None:
    """The share of the gap from the prior's FID down to the reconstructions' (the decoder's floor)
    that the best sampler closes; None when there is no gap to close."""
    gap = fid_prior - fid_recon
    return (fid_prior - fid_best) / gap if gap > 0 else None
