"""The one catalogue of samplers, metrics and figures: a new sampler is one row and one fit function."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

from vaecore import catalog, config, data, latent, runs, train
from vaecore.gallery import site
from vaecore.post import sweep as post_sweep
from vaecore.post import trial

from procs import write_sweep


def test_best_sampler_is_the_lowest_label_free_fid_and_ignores_missing_ones():
    fids = {"prior": 30.0, "aggregate": None, "gmm": 20.0, "two_stage": 25.0, "mixture": 5.0}
    assert catalog.best_sampler(fids) == "gmm"  # the mixture uses labels: never chosen
    assert catalog.best_sampler({"mixture": 1.0, "no_such_sampler": 0.0, "prior": None}) is None
    assert catalog.best_sampler({"aggregate": 10.0, "prior": 10.0}) == "prior"  # ties: catalogue order
    assert catalog.gap_closed(100.0, 20.0, 40.0) == 0.75  # (100 - 40) / (100 - 20)
    assert catalog.gap_closed(20.0, 30.0, 10.0) is None  # no gap to close


def test_the_samplers_rows_give_the_tables_fid_columns_titles_and_compare_pairs():
    label_free = ["prior", "aggregate", "gmm", "two_stage", "flow"]
    assert [s.name for s in catalog.SAMPLERS if s.label_free] == label_free
    assert {s.name: s.option for s in catalog.SAMPLERS} == {
        "prior": None,
        "aggregate": None,
        "gmm": "gmm",
        "two_stage": "two_stage",
        "flow": "flow",
        "mixture": "mixture",
    }
    keys = [m.key for m in catalog.metrics()]
    assert keys[5:10] == [f"fid_{k}" for k in label_free]  # no fid_mixture
    assert keys[-1] == "recon_accuracy" and all(m.better == "min" for m in catalog.metrics()[5:10])
    assert catalog.compare()[:5] == [f"samples_{k}" for k in label_free]
    assert catalog.titles()["samples_mixture"] == "Class-started mixture samples (uses labels)"
    assert all(hasattr(trial.Options, s.option) for s in catalog.SAMPLERS if s.option)
    assert set(trial.FITS) == {s.name for s in catalog.SAMPLERS}


def test_the_catalogue_imports_only_the_standard_library():
    tree = ast.parse(Path(catalog.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {n.split(".")[0] for n in names} <= sys.stdlib_module_names | {"__future__"}, names


TOY = catalog.Sampler(
    "toy", "toy", "Toy samples", "a toy: the prior at half scale", True, fid_label="FID toy", compare=False
)


def fit_toy(tr_mu, tr_y, opts):
    d = tr_mu.shape[1]
    return lambda n, seed: 0.5 * latent.prior_z(n, d, seed), {"toy_scale": 0.5}


@pytest.mark.integration
def test_one_catalogue_row_and_one_fit_function_add_a_sampler_everywhere(fmnist, tmp_path, monkeypatch):
    monkeypatch.setattr(catalog, "SAMPLERS", (*catalog.SAMPLERS, TOY))
    monkeypatch.setitem(trial.FITS, "toy", fit_toy)
    sweep = tmp_path / "toy"
    write_sweep(
        sweep / "sweep.toml",
        "toy",
        postprocess={"iwae_k": 4, "iwae_images": 20, "gmm": False, "two_stage": False, "flow": False},
    )
    cfg = config.load(
        "default",
        ["model.latent_dim=2", "train.epochs=1", "data.train_per_class=20", "data.test_per_class=10"],
    )
    train.fit(cfg, data.subset(fmnist, 20, 10), sweep / "trials" / "z2")
    runs.write_json(sweep / "manifest.json", {"sweep": "toy", "trials": {}})

    results = post_sweep.process_sweep(sweep, progress=lambda s: None)
    assert results["z2"]["status"] == "done", results
    tdir = sweep / "trials" / "z2"
    s = json.loads((tdir / "summary.json").read_text())
    m = s["metrics"]
    assert m["fid_toy"] > 0 and sum(m["coverage_toy"]["histogram"]) == pytest.approx(1.0, abs=1e-3)
    assert m["toy_scale"] == 0.5  # what the fit reports lands in the metrics
    assert s["artifacts"]["samples_toy"] == "artifacts/samples_toy.png"
    assert (tdir / "artifacts" / "samples_toy.png").stat().st_size > 1000
    fids = {k: m[f"fid_{k}"] for k in ("prior", "aggregate", "toy")}
    assert m["best_sampler"] == min(fids, key=fids.get) and "fid_gmm" not in m

    site.build(sweep)
    page = (sweep / "gallery" / "runs" / "z2.html").read_text()
    assert "Toy samples" in page and "trials/z2/artifacts/samples_toy.png" in page
    assert f"Toy samples: FID {m['fid_toy']:.1f}" in page and "FID toy" in page
    assert "FID toy" in (sweep / "gallery" / "index.html").read_text()  # a column of the runs table
