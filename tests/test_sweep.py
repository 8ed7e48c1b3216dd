import time

import pytest

from vaecore import sweep
from vaecore.config import ConfigError

from procs import REPO, free_port, job

TINY = "jobs/configs/tiny.toml"


def write(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_grid_expands_in_order_with_names_from_values(tmp_path):
    path = write(
        tmp_path,
        'base = "seed"\n[set]\n"train.epochs" = 2\n'
        '[grid]\n"model.latent_dim" = [2, 3]\n"loss.recon_multiplier" = [500, 5000.0]\n'
        '"train.seed" = [0]\n',
    )
    trials = sweep.load(path).trials
    assert [t.name for t in trials] == ["z2-r500-s0", "z2-r5000-s0", "z3-r500-s0", "z3-r5000-s0"]
    last = trials[-1]
    assert last.params == {"model.latent_dim": 3, "loss.recon_multiplier": 5000.0, "train.seed": 0}
    assert last.config.model.arch == "seed" and last.config.train.epochs == 2


def test_names_cover_strings_other_keys_and_unsafe_characters():
    assert sweep.trial_name({"model.arch": "seed", "train.lr": 0.001}) == "seed-lr0.001"
    assert sweep.trial_name({"train.grad_clip": 10.0}) == "grad_clip10"
    assert sweep.trial_name({"data.dir": "/a b"}) == "_a_b"
    assert sweep.trial_name({}) == "base"


def test_cli_overrides_win_over_the_files_set_table():
    s = sweep.load(TINY, ["train.epochs=3"])
    assert all(t.config.train.epochs == 3 for t in s.trials)


def test_shipped_sweeps_are_valid_and_seed_holds_the_write_ups_point():
    assert len(sweep.load(TINY).trials) == 2
    assert len(sweep.load("jobs/configs/demo.toml").trials) == 4
    seed = sweep.load("jobs/configs/seed.toml").trials
    assert len(seed) == 16 and "z3-r5000" in [t.name for t in seed]
    point = next(t for t in seed if t.name == "z3-r5000")
    assert point.config.model.arch == "seed" and point.config.loss.kl_multiplier == 1.0


@pytest.mark.parametrize(
    "text, message",
    [
        ('[grid]\n"model.latent_dimm" = [2]\n', "did you mean 'model.latent_dim'"),
        ('[grid]\n"model.latent_dim" = []\n', "has no values"),
        ('[grid]\n"model.latent_dim" = [0]\n', "model.latent_dim must be > 0"),
        ("grids = 1\n", "unknown sweep key"),
        ('[grid]\n"data.dir" = ["a b", "a_b"]\n', "duplicate trial names"),
        ("replicates = 0\n", "replicates must be a whole number >= 1"),
        ('replicates = 2\n[grid]\n"train.seed" = [0, 1]\n', "remove train.seed"),
        ('extends = "missing.toml"\n', "config file not found"),
        ("extends = 3\n", "'extends' must be a string"),
    ],
)
def test_bad_sweep_files_are_rejected_before_anything_runs(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        sweep.load(write(tmp_path, text))


def test_replicates_add_a_seed_axis_that_survives_the_resolved_file(tmp_path):
    s = sweep.load("jobs/configs/replicates.toml")
    names = [t.name for t in s.trials]
    assert len(names) == 12 and names[:3] == ["z3-mse-s0", "z3-mse-s1", "z3-mse-s2"]
    assert [t.config.train.seed for t in s.trials[:3]] == [0, 1, 2]
    assert s.grid["train.seed"] == [0, 1, 2]
    demo = {t.name + "-s0": t.config for t in sweep.load("jobs/configs/demo.toml").trials}
    assert {t.name: t.config for t in s.trials if t.name in demo} == demo  # seed 0 is the demo run
    again = sweep.load(write(tmp_path, sweep.to_toml(s)))
    assert again.trials == s.trials


def test_extends_merges_the_tables_key_by_key_and_never_inherits_the_name(tmp_path):
    parent = write(
        tmp_path,
        'name = "p"\nbase = "default"\n[set]\n"train.epochs" = 2\n"train.lr" = 0.01\n'
        '[grid]\n"model.latent_dim" = [2, 3]\n[postprocess]\niwae_k = 5\n',
        "p.toml",
    )
    text = f'extends = "{parent.name}"\n[set]\n"train.lr" = 0.02\n[grid]\n"train.seed" = [0, 1]\n'
    child = sweep.load(write(tmp_path, text))
    assert child.name == "s"  # this file's stem, not the parent's name
    assert [t.name for t in child.trials] == ["z2-s0", "z2-s1", "z3-s0", "z3-s1"]
    assert {(t.config.train.epochs, t.config.train.lr) for t in child.trials} == {(2, 0.02)}
    assert child.postprocess == {"iwae_k": 5}
    again = sweep.load(write(tmp_path, sweep.to_toml(child), "resolved.toml"))  # sweep.toml needs no parent
    assert again.trials == child.trials
    write(tmp_path, f'extends = "{parent.name}"\n', "middle.toml")
    with pytest.raises(ConfigError, match="extends another sweep itself"):
        sweep.load(write(tmp_path, 'extends = "middle.toml"\n'))


def test_resolved_sweep_round_trips_through_toml(tmp_path):
    s = sweep.load(TINY, ["train.lr=0.002"])
    again = sweep.load(write(tmp_path, sweep.to_toml(s)))
    assert again.trials == s.trials


def test_a_different_sweep_is_refused_in_an_existing_folder_and_fresh_moves_it_aside(tmp_path):
    s = sweep.load(TINY)
    folder = tmp_path / "tiny"
    sweep.prepare(s, folder, fresh=False)
    (folder / "keep.txt").write_text("finished work")
    other = sweep.load(TINY, ["train.epochs=5"])
    with pytest.raises(ConfigError, match="holds a different sweep"):
        sweep.prepare(other, folder, fresh=False)
    sweep.prepare(other, folder, fresh=True)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("tiny.old-")]
    assert len(aside) == 1 and (aside[0] / "keep.txt").read_text() == "finished work"


def test_sweep_cli_reports_a_bad_override_in_one_line(tmp_path):
    proc = job("jobs.sweep", "--config", TINY, "--out", str(tmp_path), "--set", "train.epoch=1", timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == "error: unknown config key 'train.epoch'; did you mean 'train.epochs'?\n"
    assert list(tmp_path.iterdir()) == []


def test_an_address_nobody_listens_on_fails_fast_in_one_line(tmp_path):
    port = free_port()  # a port that was just free: nothing listens there
    proc = job(
        "jobs.sweep", "--config", TINY, "--out", str(tmp_path), "--address", f"127.0.0.1:{port}", timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: no Ray cluster answers at 127.0.0.1:{port}")
    assert proc.stderr.count("\n") == 1 and list(tmp_path.iterdir()) == []


def test_trials_that_cannot_fit_the_cluster_are_refused_and_concurrency_fills_it():
    from vaecore import distributed

    seed = sweep.load("jobs/configs/seed.toml").trials[0].config  # 2 CPUs + 0.25 GPU
    with pytest.raises(ConfigError, match="needs 0.25 GPUs .* the Ray cluster has 0"):
        distributed.check_fits({"CPU": 16.0}, seed)
    distributed.check_fits({"CPU": 16.0, "GPU": 1.0}, seed)
    assert distributed.max_concurrent({"CPU": 16.0, "GPU": 1.0}, seed) == 4  # GPU-bound
    assert distributed.max_concurrent({"CPU": 4.0, "GPU": 1.0}, seed) == 2  # CPU-bound
    tiny = sweep.load(TINY).trials[0].config  # 1 CPU, no GPU
    assert distributed.max_concurrent({"CPU": 2.0}, tiny) == 2


def test_a_negative_max_failures_is_refused_in_one_line(tmp_path):
    proc = job("jobs.sweep", "--config", TINY, "--out", str(tmp_path), "--max-failures=-1", timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == "error: --max-failures must be >= 0, got -1\n"
    assert list(tmp_path.iterdir()) == []


def test_the_live_gallery_rebuild_takes_at_most_a_tenth_of_the_drivers_time():
    from jobs.sweep import Printer

    p = Printer(sweep.load(REPO / "jobs" / "configs" / "tiny.toml").trials, REPO / "unused")
    assert p.gallery_due("start")  # never built: the first event builds it
    p.built, p.cost = time.time() - 5.0, 2.0  # the last rebuild took 2 s, 5 s ago
    assert not p.gallery_due("start") and not p.gallery_due("end")
    p.built = time.time() - 21.0  # 10 x 2 s have passed: a start or an end rebuilds
    assert p.gallery_due("end") and not p.gallery_due("epoch")  # epochs wait GALLERY_EVERY_S
    p.built = time.time() - 31.0
    assert p.gallery_due("epoch")
    p.cost = 0.3  # a small gallery: rebuilt on every start and end a few seconds apart
    p.built = time.time() - 4.0
    assert p.gallery_due("start")
