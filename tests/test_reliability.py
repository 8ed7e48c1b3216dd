"""A sweep folder you can trust: untrusted files, one driver, honest configs, validated input.

These use the real filesystem, real flock() between real processes and the real command-line
entry points; the scenarios that need Ray or Slurm are in test_reliability_ray.py / test_slurm.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from jobs import _cli
from jobs import gallery as gallery_cli
from jobs import postprocess as postprocess_cli
from jobs import sweep as sweep_cli
from vaecore import config, model, runs, train
from vaecore import sweep as sweeps
from vaecore.config import ConfigError
from vaecore.gallery import site
from vaecore.post import sweep as post_sweep

from gallery_fixtures import make_fake_sweep
from procs import REPO, write_sweep

TINY = REPO / "jobs" / "configs" / "tiny.toml"


def cli(main, *args: str) -> int:
    """Run a job's main() as the console script does: expected errors become one line, exit 2."""
    with pytest.raises(SystemExit) as e:
        _cli.run(lambda: main(list(args)))
    return e.value.code


# --- untrusted files never run code -------------------------------------------------------------


class Payload:
    """Unpickling this runs a shell command (what a crafted model.pt in a shared folder could do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def crafted(path: Path, marker: Path) -> None:
    torch.save({"model": Payload(marker), "config": asdict(config.load("default"))}, path)


def test_a_crafted_model_file_is_reported_unreadable_and_its_payload_never_runs(tmp_path):
    trial = tmp_path / "s" / "trials" / "evil"
    trial.mkdir(parents=True)
    marker = tmp_path / "pwned"
    crafted(trial / "model.pt", marker)
    runs.write_json(trial / "config.json", asdict(config.load("default")))
    runs.write_json(trial / "status.json", {"status": "completed", "reason": ""})
    row = post_sweep.process_trial(trial, post_sweep.Options(), {"info": {"key": ""}})
    assert row["status"] == "failed" and "model.pt is unreadable" in row["reason"]
    with pytest.raises(Exception, match="Weights only load failed"):
        model.load(trial / "model.pt")
    assert not marker.exists()


def test_a_crafted_checkpoint_stops_the_run_without_running_its_payload(few, tiny_cfg, tmp_path):
    marker = tmp_path / "pwned"
    crafted(tmp_path / "checkpoint.pt", marker)
    with pytest.raises(Exception, match="Weights only load failed"):
        train.fit(tiny_cfg, few, tmp_path)
    assert not marker.exists()


def test_our_own_checkpoints_load_as_plain_data(few, tiny_cfg, tmp_path):
    train.fit(tiny_cfg, few, tmp_path)
    state = model.torch_load(tmp_path / "checkpoint.pt")  # weights_only=True
    assert state["epoch"] == 2 and state["config"] == asdict(tiny_cfg)
    assert state["rng"][0]["cpu"].dtype == torch.uint8 and len(state["history"]) == 2


# --- one driver per sweep folder ----------------------------------------------------------------


@pytest.fixture
def holder(tmp_path):
    """A real second process that holds the lock of <tmp>/out/tiny until it is ended."""
    code = (
        "import sys, time; from pathlib import Path; from vaecore import sweep\n"
        "with sweep.lock(Path(sys.argv[1]), 'a test holder'):\n"
        "    print('held', flush=True); time.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "out" / "tiny")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline() == "held\n"
    yield proc
    proc.kill()
    proc.wait()


def test_a_second_driver_fresh_and_postprocess_are_refused_while_the_folder_is_held(holder, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "tiny").mkdir()
    (out / "tiny" / "keep.txt").write_text("finished work")
    for args in ([], ["--fresh"]):
        assert cli(sweep_cli.main, "--config", str(TINY), "--out", str(out), *args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is in use by a test holder" in err and f"pid {holder.pid}" in err
    assert cli(postprocess_cli.main, str(out / "tiny")) == 2
    assert "is in use by a test holder" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [".tiny.lock", "tiny"]  # nothing moved or written
    assert [p.name for p in (out / "tiny").iterdir()] == ["keep.txt"]
    holder.kill()  # the kernel drops a dead holder's lock: no stale lock to clean up
    holder.wait()
    with sweeps.lock(out / "tiny", "after"):
        assert json.loads((out / ".tiny.lock").read_text())["pid"] == os.getpid()


# --- identity is the resolved configs -----------------------------------------------------------


def test_a_changed_config_is_refused_and_the_trials_config_json_is_never_rewritten(tmp_path):
    s = sweeps.load(TINY)
    sweeps.prepare(s, tmp_path / "tiny", fresh=False)
    cfg_file = tmp_path / "tiny" / "trials" / "z2" / "config.json"
    before = (cfg_file.read_bytes(), cfg_file.stat().st_mtime_ns)
    drifted = sweeps.load(TINY, ["train.lr=0.002"])
    with pytest.raises(
        ConfigError, match=r"trial z2 was created with a different config: train.lr: 0.001 -> 0.002"
    ):
        sweeps.prepare(drifted, tmp_path / "tiny", fresh=False)
    sweeps.prepare(s, tmp_path / "tiny", fresh=False)  # the same sweep again: accepted, nothing rewritten
    assert (cfg_file.read_bytes(), cfg_file.stat().st_mtime_ns) == before


def test_the_same_sweep_by_another_path_spelling_is_the_same_and_new_grid_points_are_added(
    tmp_path, monkeypatch
):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "run.toml").write_text('base = "default"\n[train]\nepochs = 1\n')
    for file, dims in (("p.toml", [2]), ("p3.toml", [2, 3])):
        write_sweep(
            tmp_path / "cfg" / file, "p", "run.toml", {"data.train_per_class": 10}, {"model.latent_dim": dims}
        )
    folder = tmp_path / "out" / "p"
    sweeps.prepare(sweeps.load(tmp_path / "cfg" / "p.toml"), folder, fresh=False)
    monkeypatch.chdir(tmp_path / "cfg")
    sweeps.prepare(sweeps.load("p.toml"), folder, fresh=False)
    sweeps.prepare(sweeps.load(Path("..") / "cfg" / "./p3.toml"), folder, fresh=False)
    assert sorted(p.name for p in (folder / "trials").iterdir()) == ["z2", "z3"]
    with pytest.raises(ConfigError, match="its trials include z3, which this sweep does not have"):
        sweeps.prepare(sweeps.load("p.toml"), folder, fresh=False)


def test_resuming_a_checkpoint_under_another_config_is_refused_with_what_differs(few, tiny_cfg, tmp_path):
    def stop(row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.fit(tiny_cfg, few, tmp_path, on_epoch=stop)
    other = config.apply(tiny_cfg, {"train.lr": 0.01})
    with pytest.raises(ConfigError, match=r"different config \(train.lr: 0.001 -> 0.01\)"):
        train.fit(other, few, tmp_path)
    assert len(runs.read_jsonl(tmp_path / "metrics.jsonl")) == 1


def test_crashed_trials_are_pending_on_a_rerun_diverged_ones_only_with_retry_failed(tmp_path):
    s = sweeps.load(TINY)
    folder = tmp_path / "tiny"
    sweeps.prepare(s, folder, fresh=False)
    runs.write_json(folder / "trials" / "z2" / "status.json", {"status": "failed", "reason": "node lost"})
    runs.write_json(
        folder / "trials" / "z3" / "status.json", {"status": "failed", "reason": "NaN", "final": True}
    )
    assert [t.name for t in sweeps.pending(s, folder, retry_failed=False)] == ["z2"]
    assert [t.name for t in sweeps.pending(s, folder, retry_failed=True)] == ["z2", "z3"]


# --- bad input: one line, a non-zero exit, nothing written --------------------------------------

BAD = [
    ('name = "../x"', "not a plain folder name"),
    ('name = "/abs"', "not a plain folder name"),
    ('name = ""', "not a plain folder name"),
    ('name = ".."', "not a plain folder name"),
    ("description = 2024-01-01", "'description' must be a string"),
    ("grid = [1, 2]", "'grid' must be a table"),
    ('set = "x"', "'set' must be a table"),
    ('[set]\n"loss.kl_multiplier" = inf', "loss.kl_multiplier must be a finite number"),
    ('[set]\n"train.grad_clip" = nan', "train.grad_clip must be a finite number"),
    ("[postprocess]\niwae_kk = 3", "unknown [postprocess] key 'iwae_kk'"),
    ('[grid]\n"data.dir" = ["a", "A"]', "duplicate trial names (ignoring case)"),
    (
        '[grid]\n"model.latent_dim" = [1, 2, 3, 4]',
        "more than the limit of 3; shrink the grid or pass --max-trials 4",
    ),
]


@pytest.mark.parametrize("text, message", BAD, ids=[b[1][:30] for b in BAD])
def test_bad_sweep_input_is_one_line_a_nonzero_exit_and_nothing_written(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(f'base = "default"\n{text}\n')
    out = tmp_path / "out"
    assert cli(sweep_cli.main, "--config", str(path), "--out", str(out), "--max-trials", "3") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_awkward_but_valid_strings_and_names_survive_the_written_sweep_toml(tmp_path):
    path = tmp_path / "ok.toml"
    path.write_text(
        'name = "ok"\ndescription = """two\nlines, a \\u0007 bell, a \\u007f and "quotes" \\\\"""\n'
        '[grid]\n"data.dir" = [".", "..", "' + "d" * 300 + '"]\n'
    )
    s = sweeps.load(path)
    names = [t.name for t in s.trials]
    assert names[:2] == ["_.", "_.."] and len(names[2]) == sweeps.NAME_BYTES and names[2].startswith("ddd")
    sweeps.prepare(s, tmp_path / "ok", fresh=False)
    back = config.read_toml(tmp_path / "ok" / "sweep.toml")
    assert back["description"] == 'two\nlines, a \x07 bell, a \x7f and "quotes" \\'


# --- readers, the gallery, durability -----------------------------------------------------------


def test_readers_skip_torn_lines_and_treat_binary_files_as_unreadable(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"epoch": 1}\n{"epoch": 2, "lo\n[1]\n{"epoch": 3}\n')
    assert runs.read_jsonl(tmp_path / "m.jsonl") == [{"epoch": 1}, {"epoch": 3}]
    (tmp_path / "b.json").write_bytes(b"\xff\xfe\x00\x01garbage")
    assert runs.read_json(tmp_path / "b.json", "unreadable") == "unreadable"
    assert runs.read_dict(tmp_path / "b.json") == {}


def test_gallery_survives_math_like_names_and_never_follows_links_out_of_the_sweep(tmp_path):
    sweep = make_fake_sweep(tmp_path)
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "config.json").write_text('{"data": {"dir": "SECRET-VALUE"}}')
    (sweep / "trials" / "linked").symlink_to(outside)
    math = sweep / "trials" / "$x^{2}$"
    math.mkdir()
    runs.write_json(math / "status.json", {"status": "failed", "reason": "$\\frac{1}{0}$"})
    index = site.build(sweep)
    text = "".join(p.read_text() for p in index.parent.rglob("*.html"))
    assert "SECRET-VALUE" not in text and "linked" not in text
    assert "$x^{2}$" in index.read_text()


def test_the_viewing_hint_serves_only_on_localhost(tmp_path, capsys):
    sweep = make_fake_sweep(tmp_path)
    assert cli(gallery_cli.main, str(sweep)) == 0
    out = capsys.readouterr().out
    assert "--bind 127.0.0.1" in out and "http://127.0.0.1:8000/gallery/" in out


def test_an_atomic_write_makes_the_rename_durable_by_syncing_the_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    runs.write_json(tmp_path / "a" / "x.json", {"x": 1})
    assert synced[-1] == str(tmp_path / "a")  # the folder, after the file itself


def test_postprocessing_that_fails_for_a_trial_exits_3_not_0(tmp_path, capsys):
    trial = tmp_path / "s" / "trials" / "broken"
    trial.mkdir(parents=True)
    (trial / "model.pt").write_bytes(b"truncated by a full disk")
    runs.write_json(trial / "config.json", asdict(config.load("default")))
    runs.write_json(trial / "status.json", {"status": "completed", "reason": ""})
    assert cli(postprocess_cli.main, str(tmp_path / "s"), "--no-gallery") == 3
    out, err = capsys.readouterr()
    assert "broken" in out and "model.pt is unreadable" in out
    assert err == "1 of 1 trials failed post-processing\n"
