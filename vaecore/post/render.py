"""Figures for one trial, written atomically as small PNGs: image sheets with PIL (post.sheets),
plots (curves, latent scatter) with matplotlib Agg."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import matplotlib.ticker
import torch

from vaecore import catalog, layout
from vaecore import latent as lat
from vaecore.data import CLASS_NAMES, to_float
from vaecore.images import write_gray, write_png
from vaecore.plotting import plt
from vaecore.post import sheets

DPI = 100  # with the figure sizes below: 400-900 px wide, 20-120 KB per PNG
COLORS = plt.get_cmap("tab10").colors


def save(fig, path: Path, gray: bool = True) -> None:
    """PNG; image figures go through a 32-level palette (3-5x smaller, barely visible banding).

    Colour figures get 256 octree colours: median-cut with fewer merged some tab10 class colours.
    """
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    buf.seek(0)
    image = Image.open(buf).convert("RGB")
    image = image.quantize(colors=32) if gray else image.quantize(256, Image.Quantize.FASTOCTREE)
    write_png(image, path)


def image_grid(images: torch.Tensor, nrow: int, title: str, path: Path) -> None:
    """Samples as a square-ish grid with a title."""
    write_gray(sheets.sheet(images, nrow, title), path)


def recon(
    originals: torch.Tensor, recons: torch.Tensor, labels: torch.Tensor, title: str, path: Path
) -> None:
    """Columns = classes; rows alternate original / reconstruction (per_class images per class)."""
    per_class = len(labels) // 10
    idx = [(labels == c).nonzero().flatten()[:per_class] for c in range(10)]  # in image order
    rows = [images[idx[c][r]] for r in range(per_class) for images in (originals, recons) for c in range(10)]
    image = sheets.sheet(
        torch.stack(rows),
        10,
        title,
        row_labels=["original", "recon"] * per_class,
        top_labels=list(CLASS_NAMES),
        pad=4,
    )
    write_gray(image, path)


def prototypes(images: torch.Tensor, title: str, path: Path) -> None:
    """The 10 decoded class means in a row, each under its class name."""
    write_gray(sheets.sheet(images[:10], 10, title, top_labels=list(CLASS_NAMES), pad=4), path)


def strips(rows: torch.Tensor, labels: list[str], alphas: torch.Tensor, title: str, path: Path) -> None:
    """Morph strips: one row per label, one column per alpha (labelled)."""
    image = sheets.sheet(
        rows,
        len(alphas),
        title,
        row_labels=labels,
        bottom_labels=[f"{a:.2f}" for a in alphas.tolist()],
        xlabel="α",
    )
    write_gray(image, path)


def matrix(
    rows: torch.Tensor, pairs: list[tuple[int, int]], steps: int, title: str, path: Path, cols: int = 3
) -> None:
    """All class-pair interpolation strips, packed cols strips per row, each with a small label."""
    panels = [
        sheets.sheet(
            rows[p * steps : (p + 1) * steps],
            steps,
            f"{CLASS_NAMES[i]} → {CLASS_NAMES[j]}",
            pad=1,
            title_size=sheets.SMALL,
            margin=3,
        )
        for p, (i, j) in enumerate(pairs)
    ]
    write_gray(sheets.stack(panels, cols, title), path)


def traversals(images: torch.Tensor, dims: int, values: torch.Tensor, title: str, path: Path) -> None:
    """One row per latent dim, one column per coordinate value."""
    image = sheets.sheet(
        images,
        len(values),
        title,
        row_labels=[f"z{d + 1}" for d in range(dims)],
        bottom_labels=[f"{v:+.1f}" if abs(v) > 1e-6 else "0" for v in values.tolist()],
        xlabel="value of the traversed coordinate",
    )
    write_gray(image, path)


def curves(history: list[dict], title: str, path: Path) -> None:
    """Training curves: loss, recon, KL, MSE (train and test), test ELBO, and the lr (log axis)."""
    epochs = [r["epoch"] for r in history]
    panels = [
        ("loss", "loss (seed's scale)"),
        ("recon", "recon term"),
        ("kl", "KL (nats)"),
        ("mse", "MSE per pixel"),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(9, 5))
    for ax, (key, label) in zip(axes.flat, panels, strict=False):
        ax.plot(epochs, [r[key] for r in history], "o-", ms=3, label="train")
        ax.plot(epochs, [r[f"test_{key}"] for r in history], "s--", ms=3, label="test")
        ax.set_title(label)
        ax.legend(fontsize=7)
    axes[1, 1].plot(epochs, [r["test_elbo"] for r in history], "o-", ms=3, color="C2")
    axes[1, 1].set_title("test ELBO (nats / image, ↑ better)")
    axes[1, 2].plot(epochs, [r["lr"] for r in history], "o-", ms=3, color="C3")
    axes[1, 2].set_yscale("log")
    axes[1, 2].set_title("learning rate")
    for ax in axes.flat:
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, path, gray=False)


def two_stage_curve(history: dict, title: str, path: Path) -> None:
    """The second-stage VAE's loss (negative ELBO per latent vector, standardised units) by step."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.plot(history["step"], history["train"], "-", label="train (mean since last point)")
    ax.plot(history["step"], history["val"], "--", label="held-out 10%")
    ax.set_xlabel("Adam step")
    ax.set_ylabel("negative ELBO (nats / vector)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    save(fig, path, gray=False)


# --- the latent space ---------------------------------------------------------------------------

VIEWS = ((25, -60), (25, 30), (25, 120))  # (elevation, azimuth) in degrees: fixed, so runs compare


def pca(z: torch.Tensor, k: int) -> tuple[torch.Tensor, list[float]]:
    """Project onto the first k principal components; also their explained-variance fractions."""
    zc = z.double() - z.double().mean(0)
    _, s, v = torch.linalg.svd(zc, full_matrices=False)
    explained = (s.pow(2) / s.pow(2).sum())[:k].tolist()
    return (zc @ v[:k].T).float(), explained


def _legend(fig) -> None:
    handles = [
        plt.Line2D([], [], ls="", marker="o", color=COLORS[c], label=CLASS_NAMES[c]) for c in range(10)
    ]
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False, markerscale=1.2)


def _scatter2d(ax, z, y, xlabel, ylabel) -> None:
    ax.scatter(z[:, 0], z[:, 1], c=[COLORS[c] for c in y.tolist()], s=3, linewidths=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_aspect("equal", adjustable="datalim")


def _scatter3d(ax, z, y, labels, view) -> None:
    ax.scatter(
        z[:, 0], z[:, 1], z[:, 2], c=[COLORS[c] for c in y.tolist()], s=2, linewidths=0, depthshade=False
    )
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.pane.fill = False  # flat white panes: less ink and a much smaller PNG
    ax.view_init(*view)
    ax.set_xlabel(labels[0], labelpad=-8)
    ax.set_ylabel(labels[1], labelpad=-8)
    ax.set_zlabel(labels[2], labelpad=-8)
    ax.tick_params(labelsize=6, pad=-3)
    ax.set_title(f"elev {view[0]}°, azim {view[1]}°", fontsize=8)


def latent(z: torch.Tensor, y: torch.Tensor, title: str, path: Path) -> None:
    """Test-set posterior means coloured by class: 2D as is, 3D from fixed views, >3D by PCA."""
    d = z.shape[1]
    if d == 1:
        z = torch.cat([z, torch.zeros_like(z)], 1)
    if d <= 2:
        fig, ax = plt.subplots(figsize=(6.5, 5))
        _scatter2d(ax, z, y, "z1", "z2" if d == 2 else "(none)")
    elif d == 3:
        fig = plt.figure(figsize=(11, 3.8))
        for i, view in enumerate(VIEWS):
            _scatter3d(fig.add_subplot(1, 3, i + 1, projection="3d"), z, y, ("z1", "z2", "z3"), view)
    else:
        p, ev = pca(z, 3)
        names = [f"PC{i + 1} ({100 * e:.0f}%)" for i, e in enumerate(ev)]
        fig = plt.figure(figsize=(11, 4.5))
        _scatter2d(fig.add_subplot(1, 2, 1), p, y, names[0], names[1])
        fig.axes[0].set_title("PCA to 2D")
        ax3 = fig.add_subplot(1, 2, 2, projection="3d")
        _scatter3d(ax3, p, y, names, VIEWS[0])
        ax3.set_title("PCA to 3D")
        title += f" — {d}-D latents, PCA projections"
    fig.suptitle(title)
    fig.subplots_adjust(right=0.84)
    _legend(fig)
    save(fig, path, gray=False)


# --- all figures of one trial ----------------------------------------------------------------


def trial_figures(
    dec: Callable[[torch.Tensor], torch.Tensor],
    trial_dir: Path,
    ds,
    te_mu: torch.Tensor,
    recons: torch.Tensor,
    means: torch.Tensor,
    samples: dict[str, torch.Tensor],
    opts,
) -> dict[str, str]:
    """Every picture of one trial; opts is a post.trial.Options.

    dec maps z to images (for the class means, morphs, traversals); recons are the test images'
    reconstructions and samples each sampler's decoded images, both already made for the FIDs.
    Returns artifact key -> path relative to the trial folder.
    """
    art, name = {}, trial_dir.name
    path = lambda key: (art.setdefault(key, f"artifacts/{key}.png"), trial_dir / art[key])[1]
    idx = torch.cat([(ds.test_y == c).nonzero().flatten()[: opts.recon_per_class] for c in range(10)])
    originals = to_float(ds.test_x[idx])
    recon(originals, recons[idx], ds.test_y[idx], f"{name}: test reconstructions", path("recon"))
    for key, grid in samples.items():
        s = catalog.sampler(key)
        image_grid(grid[: opts.grid_samples], 10, f"{name}: samples from {s.render_title}", path(s.artifact))
    keep = torch.randperm(len(te_mu), generator=torch.Generator().manual_seed(0))[: opts.scatter_points]
    latent(te_mu[keep].cpu(), ds.test_y[keep], f"{name}: test-set posterior means", path("latent"))
    prototypes(dec(means), f"{name}: decoded class means", path("prototypes"))
    _render_morphs(dec, means, name, opts, path)
    _render_traversals(dec, means.shape[1], name, opts, path("traversals"))
    history = layout.Trial(trial_dir).history()
    if history:
        curves(history, f"{name}: training curves", path("curves"))
    return art


def _render_traversals(dec, latent_dim: int, name: str, opts, path: Path) -> None:
    """The first traversal_dims coordinates, one at a time, around the origin."""
    d = min(latent_dim, opts.traversal_dims)
    values = torch.linspace(-opts.traversal_range, opts.traversal_range, opts.traversal_steps)
    grid = dec(lat.traversal(torch.zeros(latent_dim), d, values))
    traversals(grid, d, values, f"{name}: latent traversals (others at 0)", path)


def _render_morphs(dec, means, name: str, opts, path) -> None:
    a = lat.alphas(opts.morph_steps)
    cn = CLASS_NAMES
    add = torch.cat([lat.morph_additive(means[i], means[j], a) for i, j in lat.SEED_PAIRS])
    strips(
        dec(add),
        [f"{cn[i]} + α·{cn[j]}" for i, j in lat.SEED_PAIRS],
        a,
        f"{name}: the seed's morph v_A + α v_B",
        path("morph_additive"),
    )
    mix = torch.cat([lat.morph_interp(means[i], means[j], a) for i, j in lat.SEED_PAIRS])
    strips(
        dec(mix),
        [f"{cn[i]} → {cn[j]}" for i, j in lat.SEED_PAIRS],
        a,
        f"{name}: interpolation (1 - α) v_A + α v_B",
        path("morph_interp"),
    )
    pairs, z = lat.pair_matrix(means, opts.matrix_steps)
    matrix(
        dec(z),
        pairs,
        opts.matrix_steps,
        f"{name}: all 45 class pairs, α from 0 to 1 in {opts.matrix_steps} steps",
        path("morph_matrix"),
    )
