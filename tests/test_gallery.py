"""The static gallery: pages render from plain data, escape everything, link only to files that exist."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from jobs import gallery as gallery_cli
from vaecore import catalog, config
from vaecore.gallery import groups, index, pages, plots, site

import gallery_fixtures
from gallery_fixtures import FAILED, HOSTILE, HOSTILE_CONFIG, PENDING

fake_sweep = gallery_fixtures.fake_sweep


@pytest.fixture
def sweep(fake_sweep, tmp_path) -> Path:
    """A private copy, so a test may change or break it."""
    return Path(shutil.copytree(fake_sweep, tmp_path / "fake"))


class Tags(HTMLParser):
    """Every start tag with its attributes, plus the page's visible text."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def plain_run(name: str, **extra) -> dict:
    """A run as site.load_run returns it, without any files behind it."""
    return {
        "name": name,
        "page": site.page_name(name) + ".html",
        "state": "completed",
        "post_processed": False,
        "reason": "",
        "epochs": 2.0,
        "seconds": 5.0,
        "params": {"model.latent_dim": 2},
        "config": {},
        "summary": {},
        "history": [],
        "artifacts": {},
        "frames": [],
        "downloads": [],
        "sizes": {},
        **extra,
    }


def plain_sweep(runs: list[dict]) -> dict:
    return {"name": "plain", "manifest": {}, "grid": {}, "description": "", "inputs_time": "-", "runs": runs}


def test_hostile_run_name_and_config_value_render_as_text(tmp_path):
    evil = "<script>alert(1)</script>"
    runs = [
        plain_run(evil, config={"train": {"note": evil}}, reason=evil, state="failed"),
        plain_run("ok", params={"model.latent_dim": 3}),
    ]
    site.write_site(plain_sweep(runs), tmp_path)
    pages = [tmp_path / "index.html", tmp_path / "compare.html", *(tmp_path / "runs").glob("*.html")]
    assert len(pages) == 4
    for page in pages:
        html = page.read_text()
        assert evil not in html and "<script>alert" not in html
        assert ("&lt;script&gt;alert(1)&lt;/script&gt;" in html) or page.name == "ok.html"
    assert "<script" not in (tmp_path / "runs.js").read_text().split("=", 1)[1]
    assert re.fullmatch(r"[A-Za-z0-9._-]+\.html", runs[0]["page"]) and runs[0]["page"] != "ok.html"


def test_page_names_are_safe_and_distinct():
    assert site.page_name("z3-r5000-s0") == "z3-r5000-s0"
    odd = [site.page_name(n) for n in ("a b", "a_b", "a/b", "..", "<x>", "")]
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", n) for n in odd)
    assert len(set(odd)) == len(odd)


def test_index_lists_every_run_with_failure_reasons_and_dashes(sweep):
    index = site.build(sweep)
    html = index.read_text()
    rows = re.findall(
        r'<tr class="state-(\w+) member" data-unit="u\d+">\s*<th scope="row" data-sort="([^"]*)">', html
    )
    names = sorted(p.name for p in (sweep / "trials").iterdir())
    assert sorted(unescape(n) for _, n in rows) == names
    assert dict((unescape(n), s) for s, n in rows)[FAILED] == "failed"
    assert "failed: loss became NaN at epoch 3 &lt;nan&gt;" in html
    pending_row = html.split(f'data-sort="{PENDING}"')[1].split("</tr>")[0]
    assert "not post-processed" in pending_row and pending_row.count(">–<") >= 8
    assert "z2-r1000-s1 &lt;b&gt;&amp;&#34;x" in html and HOSTILE not in html


def test_a_trial_still_training_shows_its_epochs_and_latest_grid_until_it_ends(sweep):
    tdir = sweep / "trials" / PENDING
    (tdir / "status.json").write_text(json.dumps({"status": "running", "reason": ""}))
    rows = (tdir / "metrics.jsonl").read_text().splitlines(keepends=True)
    (tdir / "metrics.jsonl").write_text(rows[0])  # one epoch of the config's 3 so far
    (tdir / "epochs" / "samples_003.png").unlink()  # the newest grid is now epoch 2's
    html = site.build(sweep).read_text()
    assert "1 running, 0 pending" in html
    section = html.split('<section id="training">')[1].split("</section>")[0]
    tags = Tags(section).tags
    assert [a["href"] for t, a in tags if t == "a"] == [f"runs/{PENDING}.html"]
    assert [a["src"] for t, a in tags if t == "img"] == [f"../trials/{PENDING}/epochs/samples_002.png"]
    assert "running, epoch 1/3" in section
    assert "running: epoch 1/3" in html.split(f'data-sort="{PENDING}"')[1].split("</tr>")[0]

    (tdir / "status.json").write_text(json.dumps({"status": "completed", "reason": "", "epochs": 3}))
    assert 'id="training"' not in site.build(sweep).read_text()


def cells(html: str, name: str) -> list[tuple[str, str]]:
    """(class, text) of each <td> in the table row whose name cell sorts as `name`."""
    row = html.split(f'data-sort="{name}">', 1)[1].split("</tr>")[0]
    return re.findall(r'<td class="([^"]*)" data-sort="[^"]*">([^<]*)</td>', row)


def test_replicates_group_into_one_row_with_mean_std_n_and_their_runs(sweep):
    html = site.build(sweep).read_text()
    assert html.count('class="state-completed group"') == 6 and html.count(' member"') == 12
    row = cells(html, "z3-r5000")  # seeds 0 and 1: ELBO -30.5 and -30.1, FID agg. 11 and 11.5
    texts = [t for _, t in row]
    assert texts[:2] == ["3", "5000"]  # the axes; the seed is no column of its own
    assert "-30.30 ± 0.28 (2)" in texts  # mean -30.3, sample std 0.4 / sqrt(2) = 0.283
    assert "11.2 ± 0.4 (2)" in texts  # 11.25 ± 0.354, at the column's one decimal
    assert html.count('<tr class="state-completed member" data-unit="u3">') == 2
    failed_group = cells(html, "z8-r5000")  # one seed failed: the group is its one good run
    assert "-35.50" in [t for _, t in failed_group]
    assert "twice the standard error of the difference" in html


def test_best_only_beyond_the_noise_otherwise_tied(sweep):
    html = site.build(sweep).read_text()
    elbo = {n: cells(html, n)[2] for n in ("z2-r1000", "z2-r5000", "z3-r1000")}
    # ELBO means -27.3, -29.3, -28.3 with std 0.28 (n = 2): 2 SE of a difference = 0.57 < 1.0
    assert elbo["z2-r1000"] == ("num best", "-27.30 ± 0.28 (2)")
    assert elbo["z3-r1000"][0] == "num" and elbo["z2-r5000"][0] == "num"
    fid_agg = {n: cells(html, n)[8] for n in ("z2-r1000", "z2-r5000", "z3-r1000")}
    # FID agg.: both latent-2 groups at 10.25 ± 0.35: no difference at all, so they tie
    assert fid_agg["z2-r1000"] == fid_agg["z2-r5000"] == ("num tied", "10.2 ± 0.4 (2)")
    assert fid_agg["z3-r1000"][0] == "num"


def test_tie_rule_on_constructed_numbers():
    s = groups.stat
    assert s([9.0, 10.0, 11.0]) == groups.Stat(10.0, 1.0, 3)
    # 12 - 10 = 2 > 2 * sqrt(1/3 + 1/3) = 1.63: a real difference
    assert groups.verdicts([s([9.0, 10.0, 11.0]), s([11.0, 12.0, 13.0])], "min") == ["best", ""]
    # the same means with std 1.5: 2 * sqrt(0.75 + 0.75) = 2.45 > 2: tied
    assert groups.verdicts([s([8.5, 10.0, 11.5]), s([10.5, 12.0, 13.5])], "min") == ["tied", "tied"]
    # higher is better; a group without a value is neither
    assert groups.verdicts([s([1.0, 2.0, 3.0]), s([9.0, 10.0, 11.0]), None], "max") == ["", "best", ""]
    # clear of the runner-up but not of a noisy third: tied with that one only
    trio = [s([10.0, 10.1, 9.9]), s([12.0, 12.1, 11.9]), s([4.0, 12.0, 20.0])]
    assert groups.verdicts(trio, "min") == ["tied", "", "tied"]
    # no replicates anywhere: the extreme value is best, as without groups
    assert groups.verdicts([s([3.0]), s([2.0]), s([2.5])], "min") == ["", "best", ""]
    assert groups.fmt_stat(s([1.0, 2.0]), "{:.2f}") == "1.50 ± 0.71 (2)"


def test_runs_without_replicates_look_as_before(sweep):
    for tdir in (sweep / "trials").iterdir():
        if "-s1" in tdir.name:
            shutil.rmtree(tdir)
    spec = config.read_toml(sweep / "sweep.toml")
    spec["grid"]["train.seed"] = [0]
    (sweep / "sweep.toml").write_text(config.dump_toml(spec))
    (sweep / "manifest.json").write_text("{}")
    html = site.build(sweep).read_text()
    assert "±" not in html and ' group"' not in html and "tied-key" not in html
    assert html.count('class="state-completed run"') == 6
    assert cells(html, "z2-r1000-s0")[2] == ("num best", "-27.50")
    assert ("num best", "10.0") in cells(html, "z2-r1000-s0")  # FID agg.: one run each, the lowest wins


def test_index_names_each_runs_best_sampler(sweep):
    for tdir in (sweep / "trials").glob("z3-r1000-s*"):
        summary = json.loads((tdir / "summary.json").read_text())
        summary["metrics"].update(fid_gmm=8.0, fid_two_stage=6.5 + int(tdir.name[-1]))
        (tdir / "summary.json").write_text(json.dumps(summary))
    html = site.build(sweep).read_text()
    assert "2-stage VAE (7.0)" in [t for _, t in cells(html, "z3-r1000")]  # mean of 6.5 and 7.5
    assert "aggregate Gaussian (10.2)" in [t for _, t in cells(html, "z2-r1000")]


def test_sample_matrix_axes_come_from_the_grid(sweep):
    html = site.build(sweep).read_text()
    assert "latent dim × recon multiplier" in html
    matrix = html.split('<section id="matrix">')[1]
    # one page (6 cells): no pager, and the three kinds' tables (prior samples, reconstructions,
    # prototypes) as before
    assert matrix.count('<table class="matrix" data-page="0">') == 3 and "page-bar" not in matrix
    assert matrix.count("seed 0 of 2 runs") == 3 * 6  # every group holds two runs (failed ones too)
    assert 'type="range" class="epoch-slider" min="1" max="3" value="3"' in matrix
    assert matrix.count('data-epochs="1 2 3"') == 6  # the samples' thumbnails; the others have one
    assert re.search(r'<img src="[^"]*/epochs/samples_003\.png"', matrix)  # without JS: the last epoch


def test_every_image_has_alt_and_size_and_every_link_exists(sweep):
    site.build(sweep)
    pages = list((sweep / "gallery").rglob("*.html"))
    assert len(pages) == 12 + 2
    for page in pages:
        tags = Tags(page.read_text()).tags
        for tag, attrs in tags:
            if tag == "img":
                assert attrs.get("alt") and int(attrs["width"]) > 0 and int(attrs["height"]) > 0, (
                    page,
                    attrs,
                )
            url = attrs.get("src") or attrs.get("href")
            if tag in ("img", "a", "link", "script") and url and not url.startswith(("data:", "#")):
                parts = urlsplit(url)
                assert not parts.scheme and not parts.netloc and not parts.path.startswith("/"), url
                assert (page.parent / unquote(parts.path)).is_file(), (page.name, url)


def test_run_page_shows_artifacts_downloads_and_neighbours(sweep):
    site.build(sweep)
    html = (sweep / "gallery" / "runs" / "z3-r5000-s0.html").read_text()
    for text in (
        "Samples from each sampler",
        "Prior samples: FID 24.0",
        "Class prototypes",
        "All 45 class pairs",
        "Latent traversals",
        "model.pt",
        "latents.npz",
        "summary.json",
        'rel="prev"',
        'rel="next"',
        "samples_003.png",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
    ):
        assert text in html, text
    assert HOSTILE_CONFIG not in html
    z8 = (sweep / "gallery" / "runs" / "z8-r5000-s0.html").read_text()
    assert "Aggregate-posterior samples" not in z8  # an absent artifact key is just not shown


def test_build_survives_a_sweep_with_no_results(tmp_path):
    sdir = tmp_path / "empty"
    (sdir / "trials" / "z2-r5-s0").mkdir(parents=True)
    (sdir / "manifest.json").write_text("{not json")
    html = site.build(sdir).read_text()
    assert "z2-r5-s0" in html and "pending" in html
    assert (sdir / "gallery" / "compare.html").is_file()


def test_an_interrupted_build_leaves_the_old_gallery_intact(sweep, monkeypatch):
    index = site.build(sweep)
    before = index.read_bytes()
    (sweep / "trials" / FAILED / "status.json").write_text('{"status": "failed", "reason": "changed"}')

    def boom(*args, **kwargs):
        raise RuntimeError("killed half-way")

    monkeypatch.setattr(pages, "compare_data", boom)  # runs after index and run pages are written
    with pytest.raises(RuntimeError):
        site.build(sweep)
    assert index.read_bytes() == before
    assert not list(sweep.glob(".gallery*"))


def test_a_rebuild_without_changes_changes_nothing(sweep):
    site.build(sweep)
    out = sweep / "gallery"
    snap = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}
    inode = out.stat().st_ino
    site.build(sweep)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()} == snap
    assert out.stat().st_ino == inode
    (sweep / "trials" / FAILED / "status.json").write_text('{"status": "failed", "reason": "out of memory"}')
    assert "out of memory" in site.build(sweep).read_text()


def test_cli_builds_and_rejects_a_folder_that_is_not_a_sweep(sweep, tmp_path, capsys):
    assert gallery_cli.main([str(sweep)]) == 0
    assert "index.html" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="not a sweep folder"):
        gallery_cli.main([str(tmp_path / "nowhere")])


def test_leftovers_of_killed_builds_are_removed_and_a_live_build_is_kept(sweep, capsys):
    old = sweep / ".gallery.old-abc123"  # a previous site a killed build did not delete
    (old / "runs").mkdir(parents=True)
    stale = sweep / ".gallery.tmp-stale1"  # a temp site abandoned over an hour ago
    (stale / "index.html").parent.mkdir()
    (stale / "index.html").write_text("half")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    live = sweep / ".gallery.tmp-live12"  # a build running right now, next to this one
    live.mkdir()
    assert gallery_cli.main([str(sweep)]) == 0
    assert not old.exists() and not stale.exists() and live.is_dir()
    assert sorted(p.name for p in sweep.iterdir() if p.name.startswith(".gallery")) == [live.name]
    assert (sweep / "gallery" / "index.html").is_file()


def test_the_gallery_catalogue_and_image_helpers_import_without_torch():
    import subprocess
    import sys

    code = (
        "import sys, vaecore.gallery.site, vaecore.catalog, vaecore.images\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'ray') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_image_size_reads_a_file_or_its_bytes_and_gives_none_for_anything_else(tmp_path):
    import numpy as np

    from vaecore import images

    png = gallery_fixtures.png(np.random.default_rng(0), 2, 3)  # 2 rows, 3 columns of 28 px + 2 px
    (tmp_path / "a.png").write_bytes(png)
    (tmp_path / "bad.png").write_bytes(png[:10])
    assert images.image_size(png) == images.image_size(tmp_path / "a.png") == (3 * 30 + 2, 2 * 30 + 2)
    assert images.image_size(tmp_path / "bad.png") is None and images.image_size(tmp_path / "none") is None
    assert images.image_size(b"not an image") is None


def test_the_run_page_lists_the_mixture_sizes_tried_and_marks_the_chosen_one():
    from vaecore.gallery import pages

    m = {"gmm_heldout_ll": {"1": -5.8, "13": -3.27, "2": -4.25, "3": -3.26, "5": -3.261}, "gmm_components": 3}
    text = "1: -5.80, 2: -4.25, [3: -3.26], 5: -3.26, 13: -3.27"  # by size, not as the JSON keys sort
    assert pages.mixture_search(m) == [("mixture sizes tried: held-out nats/point, [chosen]", text)]
    assert pages.mixture_search({"gmm_heldout_ll": "broken"}) == []


def test_runs_are_listed_in_grid_order_with_numbers_as_numbers():
    grid = {"model.latent_dim": [2, 10, 12], "loss.recon_multiplier": [1000, 5000]}
    made = [("z10-r1000", 10, 1000), ("z2-r5000", 2, 5000), ("z2-r1000", 2, 1000), ("z12-r1000", 12, 1000)]
    runs = [{"name": n, "params": {"model.latent_dim": z, "loss.recon_multiplier": r}} for n, z, r in made]
    runs.append({"name": "odd", "params": {}})  # no grid values: last
    ordered = [r["name"] for r in sorted(runs, key=site.grid_order(grid))]
    assert ordered == ["z2-r1000", "z2-r5000", "z10-r1000", "z12-r1000", "odd"]  # by name: z10 < z2
    # words keep the grid's own order (by name, cb would come first)
    grid = {"model.latent_dim": [3, 16], "loss.likelihood": ["mse", "cb"]}
    made = [("z3-cb", 3, "cb"), ("z16-mse", 16, "mse"), ("z3-mse", 3, "mse"), ("z3-bce", 3, "bce")]
    runs = [{"name": n, "params": {"model.latent_dim": z, "loss.likelihood": lk}} for n, z, lk in made]
    ordered = [r["name"] for r in sorted(runs, key=site.grid_order(grid))]
    assert ordered == ["z3-mse", "z3-cb", "z3-bce", "z16-mse"]  # bce: not in the grid, after its values


def test_the_run_page_shows_each_samplers_fid_class_entropy_and_histogram():
    cover = lambda h, e: {"histogram": h, "entropy": e}  # noqa: E731
    even, skew = [0.1] * 10, [0.5, 0.5] + [0.0] * 8
    m = {
        "fid_recon": 20.0,
        "coverage_recon": cover(even, 2.30),
        "fid_prior": 90.0,
        "coverage_prior": cover(even, 2.29),
        "fid_gmm": 30.0,
        "coverage_gmm": cover(skew, 0.69),
        "coverage_aggregate": cover([0.1] * 9, 2.2),  # a broken histogram: the row is left out
        "best_sampler": "prior",
        "best_sampler_excluded": {"gmm": "drops classes"},
    }
    rows = pages.coverage_rows({"summary": {"metrics": m}})
    assert [(r["name"], r["fid"], r["entropy"], r["note"]) for r in rows] == [
        ("reconstructions", "20.0", "2.30", ""),
        ("N(0, I)", "90.0", "2.29", "best"),
        ("mixture", "30.0", "0.69", "drops classes"),
    ]
    assert [b["h"] for b in rows[2]["bars"]] == [100, 100] + [0] * 8 and rows[2]["bars"][0]["pct"] == "50%"


def test_a_gap_closed_beyond_100_percent_says_the_decoder_is_the_floor():
    gap = next(x for x in catalog.EXTRA_METRICS if x.key == "gap_closed")
    assert "decoder's floor" in pages.metric_text({"summary": {"metrics": {"gap_closed": 1.03}}}, gap)
    assert pages.metric_text({"summary": {"metrics": {"gap_closed": 0.75}}}, gap) == "75.0%"


def test_every_matrix_view_carries_its_per_epoch_grids_so_the_slider_moves_all_three():
    from vaecore.gallery import matrix

    kinds = ("samples", "recon", "prototypes")
    per_epoch = {k: [f"epochs/{k}_{e:03d}.png" for e in (1, 2, 3)] for k in kinds}
    run = {
        "name": "z2",
        "page": "z2.html",
        "params": {"model.latent_dim": 2},
        "artifacts": {"recon": "artifacts/recon.png"},
        "frames": per_epoch["samples"],
        "epoch_images": per_epoch,
        "sizes": {},
    }
    group = {"id": "u0", "name": "z2", "params": run["params"], "runs": [run]}
    for key, kind in matrix.EPOCH_KIND.items():
        cell = matrix._cell(group, key, 160, lambda r: "")
        assert cell["epochs"] == [1, 2, 3] and cell["img"]["src"].endswith(f"{kind}_003.png"), key
    run["epoch_images"] = {"samples": per_epoch["samples"], "recon": [], "prototypes": []}  # an older sweep
    cell = matrix._cell(group, "recon", 320, lambda r: "")
    assert cell["epochs"] == [] and cell["img"]["src"].endswith("artifacts/recon.png")


@pytest.mark.parametrize(
    ("grid", "labels"),
    [
        ({"model.latent_dim": [2, 3], "loss.recon_multiplier": [1000.0, 5000.0]}, ["z2-r1000", "z2-r5000"]),
        (gallery_fixtures.WIDE_GRID, ["latent dim 2", "latent dim 16"]),
    ],
)
def test_rate_distortion_labels_stay_few_apart_and_inside_the_plot_at_4_and_32_runs(tmp_path, grid, labels):
    sweep = site.load_sweep(gallery_fixtures.make_grid_sweep(tmp_path, grid))
    pts, lines = index.rate_distortion_points(*index.groups_and_axes(sweep)[:2])
    plt, fig, ax = plots.rate_distortion_figure(pts, lines)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    frame = ax.get_window_extent(renderer)
    names = [t.get_text() for t in ax.texts]
    ticks = [t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True) if t.get_text()]
    n_lines = len(grid["model.latent_dim"])
    plt.close(fig)
    # 4 runs: every point named; 32: one name per latent size, 8 where 32 point names blotted
    assert len(names) == (len(pts) if len(pts) <= plots.POINT_LABELS else n_lines)
    assert set(labels) <= set(names)
    assert len(ax.lines) == n_lines and "latent dim" in lines  # a line per latent size
    assert not [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a.overlaps(b)]
    assert all(frame.contains(b.x0, b.y0) and frame.contains(b.x1, b.y1) for b in boxes)
    assert len(ticks) >= 3 and all(float(t) >= 0 for t in ticks)  # plain numbers, not TeX source


def test_an_optional_samplers_fid_column_shows_only_when_some_run_has_it():
    from vaecore.gallery import index

    def groups(*metrics: dict) -> list[dict]:
        return [{"runs": [{"summary": {"metrics": m}}]} for m in metrics]

    keys = lambda gs: [x.key for x in index.shown_metrics(gs)]
    everything = [x.key for x in catalog.metrics()]
    none_ran = keys(groups({"fid_prior": 400.0}, {}))
    assert "fid_two_stage" not in none_ran and "fid_gmm" not in none_ran  # options: off, or not run
    assert "fid_prior" in none_ran and "fid_aggregate" in none_ran  # always computed: always a column
    assert keys(groups({}, {"fid_two_stage": 300.0, "fid_gmm": 200.0, "fid_flow": 250.0})) == everything


def test_a_rate_distortion_line_along_words_says_their_order_not_rising(tmp_path):
    grid = {"model.latent_dim": [3, 16], "loss.likelihood": ["mse", "cb"]}
    sweep = site.load_sweep(gallery_fixtures.make_grid_sweep(tmp_path, grid, "words"))
    pts, lines = index.rate_distortion_points(*index.groups_and_axes(sweep)[:2])
    assert lines == "a line joins the runs of one latent dim, mse then cb along it"
    line = {p["label"]: p["order"] for p in pts if p["series"] == "latent dim 16"}
    assert sorted(line, key=line.get) == ["z16-mse", "z16-cb"]  # drawn in the grid's order
    numbers = {"model.latent_dim": [3, 16], "loss.recon_multiplier": [1000.0, 5000.0]}
    sweep = site.load_sweep(gallery_fixtures.make_grid_sweep(tmp_path, numbers, "numbers"))
    assert index.rate_distortion_points(*index.groups_and_axes(sweep)[:2])[1].endswith("rising along it")


def test_a_link_out_of_the_trial_folder_is_never_published_one_inside_is(sweep, tmp_path):
    tdir = sweep / "trials" / "z3-r5000-s0"
    secret = tmp_path / "secret"
    (secret / "epochs").mkdir(parents=True)
    (secret / "samples.png").write_bytes((tdir / "artifacts" / "recon.png").read_bytes())
    (tdir / "artifacts" / "samples_prior.png").unlink()
    (tdir / "artifacts" / "samples_prior.png").symlink_to(secret / "samples.png")  # a file link out
    (tdir / "artifacts" / "morph_additive.png").unlink()
    (tdir / "artifacts" / "morph_additive.png").symlink_to(tdir / "artifacts" / "recon.png")  # in
    shutil.rmtree(tdir / "epochs")
    (tdir / "epochs").symlink_to(secret / "epochs")  # a folder link out
    (secret / "epochs" / "samples_001.png").write_bytes(b"x")
    run = site.load_run(tdir, {})
    assert "samples_prior" not in run["artifacts"] and run["frames"] == []
    assert run["artifacts"]["morph_additive"] == "artifacts/morph_additive.png"
    assert run["artifacts"]["recon"] == "artifacts/recon.png"


def test_a_large_sweep_pages_its_runs_table_by_50_and_its_matrix_by_at_most_48_cells(tmp_path):
    runs = [plain_run(f"z{i}", params={"model.latent_dim": i}) for i in range(120)]
    site.write_site({**plain_sweep(runs), "grid": {"model.latent_dim": list(range(120))}}, tmp_path / "large")
    html = (tmp_path / "large" / "index.html").read_text()
    rows = re.findall(r'<tr class="state-completed run( off-page)?" data-unit="u(\d+)">', html)
    assert len(rows) == 120  # every row is in the page: sorting and reading without JavaScript reach all
    assert [int(u) for off, u in rows if not off] == list(range(50))  # gallery.js pages the rest in
    assert html.count('<output class="page-label">runs 1–50 of 120</output>') == 2  # above and below
    options = re.findall(r'<option value="\d">([^<]*)</option>', html)
    assert options == ["1 of 3: latent dim 0–39", "2 of 3: latent dim 40–79", "3 of 3: latent dim 80–119"] * 2
    matrix = html.split('<section id="matrix">')[1]
    assert matrix.count('<table class="matrix" data-page="0">') == 3  # each kind's first page shows
    assert matrix.count('<table class="matrix off-page" data-page="2">') == 3

    site.write_site(plain_sweep(runs[:4]), tmp_path / "small")  # a demo's size: as before
    html = (tmp_path / "small" / "index.html").read_text()
    assert "page-bar" not in html and "off-page" not in html and html.count('data-page="0"') == 3


def test_matrix_pages_split_the_rows_evenly_and_name_each_page():
    from vaecore.gallery import matrix

    ax = lambda key, values: {"key": key, "label": key.split(".")[1].replace("_", " "), "values": values}  # noqa: E731
    latent, lik = ax("model.latent_dim", list(range(2, 27))), ax("loss.likelihood", ["mse", "cb"])
    mult = ax("loss.recon_multiplier", [500.0, 1000.0, 2000.0, 5000.0, 10000.0])
    pages = matrix.pages([latent, mult], [lik])  # the benchmark's 1,000 runs: 25 x 5 per likelihood
    assert [len(p["rows"]) for p in pages] == [9, 9, 7] * 2  # 45, 45, 35 cells: none over 48, none tiny
    assert [p["caption"] for p in pages[:3]] == [
        "likelihood = mse, latent dim 2–10",
        "likelihood = mse, latent dim 11–19",
        "likelihood = mse, latent dim 20–26",
    ]
    assert pages[3]["fixed"] == {"loss.likelihood": "cb"} and pages[3]["rows"] == list(range(2, 11))
    demo = matrix.pages([ax("model.latent_dim", [3, 32]), ax("loss.likelihood", ["mse", "cb"])], [])
    assert demo == [{"fixed": {}, "rows": [3, 32], "caption": ""}]  # one page, no caption: as before
    long = matrix.pages([ax("train.lr", list(range(1000)))], [])  # one axis of 1,000 values
    assert [len(p["rows"]) for p in long] == [48] * 20 + [40] and long[-1]["caption"] == "lr 960–999"


def test_with_replicates_a_page_of_the_runs_table_is_50_grid_points_with_their_runs():
    runs = [
        plain_run(f"z{i}-s{s}", params={"model.latent_dim": i, "train.seed": s})
        for i in range(60)
        for s in (0, 1)
    ]
    groups, axes, replicated = index.groups_and_axes(plain_sweep(runs))
    table = index.table(groups, axes, replicated)
    assert table["units"] == 60 and table["unit_name"] == "grid points" and len(table["rows"]) == 180
    unit = lambda u: [(r["kind"], r["off_page"]) for r in table["rows"] if r["unit"] == u]  # noqa: E731
    assert unit("u49") == [("group", False), ("member", False), ("member", False)]
    assert unit("u50") == [("group", True), ("member", True), ("member", True)]


def test_the_rate_distortion_plot_names_at_most_12_of_many_lines_spread_first_to_last():
    st = lambda v: groups.Stat(v, 0.0, 1)  # noqa: E731
    points = [
        {"kl": st(5.0 + i + j), "mse": st(0.01 * (i + 1) / (j + 1)), "fid": st(50.0), "label": f"p{i}-{j}"}
        | {"series": f"line {i}", "order": (False, float(j), j)}
        for i in range(40)
        for j in range(2)
    ]
    plt, fig, ax = plots.rate_distortion_figure(points, "a line joins ...")
    names = [t.get_text() for t in ax.texts]
    title = ax.get_title()
    plt.close(fig)
    assert len(names) == plots.LINE_LABELS == 12 and names[0] == "line 0" and names[-1] == "line 39"
    assert "(12 of 40 named)" in title and len(ax.lines) == 40  # every line drawn, a few named
