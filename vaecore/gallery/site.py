"""The static site: read a sweep folder defensively, render the pages, swap the site in atomically."""

from __future__ import annotations

import contextlib
import fcntl
import filecmp
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2

import vaecore
from vaecore import config, images, layout, runs
from vaecore.gallery import index, pages
from vaecore.gallery.format import number

log = logging.getLogger(__name__)
TEMPLATES = Path(vaecore.__file__).resolve().parent.parent / "gallery_templates"
STATIC = ("style.css", "gallery.js")
DOWNLOADS = tuple(layout.TRIAL_FILES[k] for k in ("model", "latents", "summary", "config", "metrics"))
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,80}")


# --- reading the sweep folder (every field may be missing or malformed) ---------------------------


def _toml(path: Path) -> dict:
    try:
        return config.read_toml(path)
    except (OSError, ValueError):  # ConfigError (missing, not TOML) and UnicodeDecodeError are ValueErrors
        return {}


def _grid(spec: dict, manifest: dict) -> dict:
    """The grid in the order the user wrote it: sweep.toml keeps it, manifest.json may have sorted keys."""
    raw = spec.get("grid")
    grid = config.flatten(raw) if isinstance(raw, dict) else manifest.get("grid")
    if not isinstance(grid, dict):
        return {}
    return {k: v if isinstance(v, list) else [v] for k, v in grid.items()}


def _inside(tdir: Path, rel: Any) -> str | None:
    """A trial-relative path to a file that really lies inside the trial folder, else None.

    Symbolic links that lead out of the folder are not followed: a shared sweep folder must not
    publish (or link to) files from elsewhere on the machine.
    """
    if not isinstance(rel, str) or not rel or rel.startswith("/") or ".." in Path(rel).parts:
        return None
    if not os.path.isfile(os.path.join(tdir, rel)):
        return None
    # Only a link at or below the trial folder can lead out of it. Resolving the whole path (an
    # lstat per folder up to /, through pathlib) for each of a run's ~20 files was half of
    # load_sweep at 1,000 runs (2.6 s, 1.3 s with these checks).
    parts = Path(rel).parts
    if not any(os.path.islink(os.path.join(tdir, *parts[:i])) for i in range(len(parts) + 1)):
        return rel
    return rel if (tdir / rel).resolve().is_relative_to(tdir.resolve()) else None


def _read(tdir: Path, rel: str) -> dict:
    return runs.read_dict(tdir / rel) if _inside(tdir, rel) else {}


def page_name(name: str) -> str:
    """A file name for a run page: the name itself when it is safe, else a slug plus a short hash."""
    if SAFE_NAME.fullmatch(name):
        return name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:60] or "run"
    return f"{slug}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def load_run(tdir: Path, entry: dict) -> dict:
    """Everything the gallery shows about one trial, as plain data; absent files become empty values."""
    files = layout.TRIAL_FILES
    raw = {**entry, **_read(tdir, files["status"])}
    status = layout.parse_status(raw)
    summary = _read(tdir, files["summary"]) or None
    params = _read(tdir, files["params"]) or entry.get("params") or (summary or {}).get("params")
    arts = (summary or {}).get("artifacts")
    artifacts = {k: p for k, v in (arts if isinstance(arts, dict) else {}).items() if (p := _inside(tdir, v))}
    per_epoch = {kind: epoch_images(tdir, kind) for kind in layout.EPOCH_IMAGES}
    shown = (layout.Status.COMPLETED, layout.Status.FAILED, layout.Status.RUNNING)
    state = status.status.value if status.status in shown else "pending"
    return {
        "name": tdir.name,
        "page": page_name(tdir.name) + ".html",
        "state": state,
        "post_processed": summary is not None,
        "reason": status.reason,
        "epochs": number(raw.get("epochs")),
        "seconds": number(raw.get("seconds")),
        "precision": status.precision,
        "params": params if isinstance(params, dict) else {},
        "config": _read(tdir, files["config"]) or (summary or {}).get("config") or {},
        "summary": summary or {},
        "history": runs.read_jsonl(tdir / files["metrics"]) if _inside(tdir, files["metrics"]) else [],
        "artifacts": artifacts,
        "frames": per_epoch["samples"],  # the prior samples' grids, epoch by epoch
        "epoch_images": per_epoch,
        "downloads": [f for f in DOWNLOADS if _inside(tdir, f)],
        "sizes": {
            rel: images.image_size(tdir / rel)
            for rel in [*artifacts.values(), *(r for rels in per_epoch.values() for r in rels)]
        },
    }


def epoch_images(tdir: Path, kind: str) -> list[str]:
    """epochs/<kind>_NNN.png inside the trial folder, in epoch order (trial-relative paths)."""
    folder = layout.Trial(tdir).file("epochs")
    names = sorted(p.name for p in folder.glob(f"{kind}_[0-9][0-9][0-9].png"))
    return [rel for n in names if (rel := _inside(tdir, f"{folder.name}/{n}"))]


def grid_order(grid: dict):
    """A sort key for runs: by their grid values in the grid's key order, numbers as numbers (z2
    before z10), other values in the order the grid lists them (mse before cb as the demo writes
    it), then by name; a run without a key sorts after those with it."""

    def key(run: dict) -> tuple:
        parts = []
        for k in grid:
            v = run["params"].get(k)
            n = number(v)
            if n is None and v in grid[k]:
                n = float(grid[k].index(v))
            parts.append((0, n, "") if n is not None else (1, 0.0, str(v)) if v is not None else (2, 0.0, ""))
        return (*parts, run["name"])

    return key


def load_sweep(sweep_dir: Path) -> dict:
    """The manifest plus every trial folder (a trial only in the manifest shows as pending)."""
    folder = layout.SweepDir(sweep_dir)
    manifest = folder.manifest()
    spec = _toml(folder.file("sweep"))
    entries = manifest.get("trials") if isinstance(manifest.get("trials"), dict) else {}
    names = list(entries) + [t.name for t in folder.trials() if t.name not in entries]
    found = [
        load_run(folder.trial(n).path, entries.get(n) if isinstance(entries.get(n), dict) else {})
        for n in names
        if "/" not in n and n not in ("", ".", "..") and not folder.trial(n).path.is_symlink()
    ]
    found.sort(key=grid_order(_grid(spec, manifest)))
    inputs = [folder.file("manifest")] + [
        folder.trial(r["name"]).path / f
        for r in found
        for f in (layout.TRIAL_FILES[k] for k in ("status", "summary", "metrics"))
    ]
    newest = max((p.stat().st_mtime for p in inputs if p.is_file()), default=0.0)
    return {
        "name": str(manifest.get("sweep") or sweep_dir.name),
        "manifest": manifest,
        "runs": found,
        "grid": _grid(spec, manifest),
        "description": str(spec.get("description") or ""),
        "inputs_time": datetime.fromtimestamp(newest, timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


# --- rendering ------------------------------------------------------------------------------------


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def js_data(obj: Any) -> str:
    """JSON safe to put in a .js file or an inline script: '<' escaped so '</script>' cannot end it."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=True).replace("<", "\\u003c")


def write_site(sweep: dict, out: Path) -> None:
    """Render every page of the site into the (empty, temporary) folder out."""
    env = environment()
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(exist_ok=True)
    for name in STATIC:
        shutil.copyfile(TEMPLATES / name, out / name)
    front = index.index_context(sweep)
    for plot in front["plots"]:
        (out / plot["src"]).write_bytes(plot.pop("png"))
    (out / "index.html").write_text(env.get_template("index.html").render(front))
    trials = sweep["runs"]
    for i, run in enumerate(trials):
        ctx = pages.run_context(
            sweep, run, trials[i - 1] if i else None, trials[i + 1] if i + 1 < len(trials) else None
        )
        (out / "runs" / run["page"]).write_text(env.get_template("run.html").render(ctx))
    data = pages.compare_data(sweep)
    (out / "runs.json").write_text(json.dumps(data, sort_keys=True, indent=1) + "\n")
    (out / "runs.js").write_text(f"window.GALLERY_RUNS = {js_data(data)};\n")
    (out / "compare.html").write_text(
        env.get_template("compare.html").render(pages.compare_context(sweep, data))
    )


def _same_tree(a: Path, b: Path) -> bool:
    if not b.is_dir():
        return False
    files_a = sorted(p.relative_to(a) for p in a.rglob("*"))
    files_b = sorted(p.relative_to(b) for p in b.rglob("*"))
    return files_a == files_b and all(
        (a / p).is_dir() or filecmp.cmp(a / p, b / p, shallow=False) for p in files_a
    )


def _clean_leftovers(sweep_dir: Path) -> None:
    """Remove what a killed build left behind: old sites always, temp sites once surely abandoned."""
    for p in sweep_dir.glob(".gallery.old-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in sweep_dir.glob(".gallery.tmp-*"):
        if time.time() - p.stat().st_mtime > 3600:  # an hour: no live build takes that long
            shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def _swap_lock(sweep_dir: Path):
    with open(sweep_dir / ".lock-gallery", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # closing the file releases it
        yield


def build(sweep_dir: Path) -> Path:
    """Build <sweep_dir>/gallery/ from the sweep's files; returns the index.html path.

    The site is rendered into a temporary folder next to it, then renamed into place, so a build
    killed half-way leaves the previous gallery intact. An unchanged rebuild touches nothing.
    """
    sweep_dir = Path(sweep_dir)
    folder = layout.SweepDir(sweep_dir)
    if not folder.file("manifest").is_file() and not folder.file("trials").is_dir():
        raise FileNotFoundError(
            f"{sweep_dir} is not a sweep folder (no manifest.json or trials/); "
            "pass <out>/<sweep>, e.g. runs/demo"
        )
    _clean_leftovers(sweep_dir)
    start = time.perf_counter()
    sweep = load_sweep(sweep_dir)
    final = folder.file("gallery")
    tmp = Path(tempfile.mkdtemp(prefix=".gallery.tmp-", dir=sweep_dir))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a web server may run as another user
        write_site(sweep, tmp)
        with _swap_lock(sweep_dir):  # two builds at once (the sweep and a user) swap one at a time
            if _same_tree(tmp, final):
                shutil.rmtree(tmp)
            else:
                old = sweep_dir / f".gallery.old-{tmp.name.rsplit('-', 1)[-1]}"
                if final.exists():
                    os.replace(final, old)
                os.replace(tmp, final)  # between these renames there is briefly no gallery/, never half a one
                runs.fsync_dir(sweep_dir)
                shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.debug("gallery: %d runs in %.2f s -> %s", len(sweep["runs"]), time.perf_counter() - start, final)
    return final / "index.html"
