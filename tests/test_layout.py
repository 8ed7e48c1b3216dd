"""The folder layout has one owner (vaecore.layout), and docs/LAYOUT.md says what it writes."""

import re
from dataclasses import fields
from pathlib import Path

import pytest

from vaecore import layout, runs
from vaecore import sweep as sweeps

LAYOUT_MD = Path(__file__).resolve().parent.parent / "docs" / "LAYOUT.md"


def tree() -> list[str]:
    """The names in LAYOUT.md's folder tree (its first code block): the first word of each entry
    (continuation lines of an explanation are indented further, past column 20)."""
    block = LAYOUT_MD.read_text().split("```")[1]
    lines = [line for line in block.splitlines()[1:] if line.strip() and line.strip()[0] != "#"]
    words = [line.split()[0] for line in lines if len(line) - len(line.lstrip()) < 20]
    return [w for w in words if not w.startswith("<") or w.startswith("<out>/.")]


def documented_status_fields() -> list[str]:
    section = LAYOUT_MD.read_text().split("## status.json", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(\w+)` \|", section, re.M)


def test_every_file_the_code_names_is_in_layout_md_and_every_documented_file_is_named():
    names = {w.split("/")[0] for w in tree()}  # epochs/samples_NNN.png -> epochs, gallery/ -> gallery
    code = set(layout.TRIAL_FILES.values()) | set(layout.SWEEP_FILES.values())
    assert code - names == set(), "named in vaecore/layout.py, missing from docs/LAYOUT.md"
    assert names - code - {"<out>", "trials"} == set(), "in docs/LAYOUT.md, no longer named by the code"
    assert "<out>/.<sweep>.lock" in tree()  # SweepDir.lock, beside the folder
    assert layout.SweepDir(Path("/o/s")).lock == Path("/o/.s.lock")


def test_every_status_field_and_value_is_documented_and_nothing_documented_is_gone():
    assert documented_status_fields() == [f.name for f in fields(layout.TrialStatus)]
    section = LAYOUT_MD.read_text().split("## status.json", 1)[1]
    for state in layout.Status:
        assert f"`{state.value}`" in section


def test_the_manifest_keys_written_are_the_documented_ones(tmp_path):
    sweep = sweeps.load(Path("jobs/configs/tiny.toml"))
    sweeps.prepare(sweep, tmp_path / "tiny", fresh=False)
    extra = {"hardware": {"nodes": 1}, "timings": {"ray_init_s": 1.0}}
    manifest = sweeps.write_manifest(sweep, tmp_path / "tiny", extra, new_run=True)
    section = LAYOUT_MD.read_text().split("## manifest.json", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r'"(\w+)":', section))
    assert set(manifest) <= documented
    assert set(manifest["trials"]["z2"]) <= documented
    assert set(manifest["history"][0]) <= documented
    assert manifest["trials"]["z2"]["status"] == "pending"  # created, no status.json yet


def test_status_json_has_one_shape_and_tolerates_what_it_finds(tmp_path):
    trial = layout.Trial(tmp_path / "t")
    trial.mark_running()
    written = runs.read_json(trial.file("status"))
    assert set(written) == {f.name for f in fields(layout.TrialStatus)}
    assert written["status"] == "running" and written["host"]
    runs.write_json(trial.file("status"), {"status": "exploded", "epochs": "three", "seconds": True})
    assert trial.status() == layout.TrialStatus()  # unknown state and wrong types: the defaults
    trial.file("status").write_text("{not json")
    assert trial.status().status is layout.Status.PENDING


def test_completed_is_decided_by_the_status_and_the_model_file_together(tmp_path):
    trial = layout.Trial(tmp_path / "t")
    assert "no status.json" in trial.why_not_completed()
    trial.write_status(layout.TrialStatus(layout.Status.COMPLETED, epochs=2))
    assert trial.why_not_completed() == "no model.pt" and not trial.completed()
    trial.file("model").write_bytes(b"weights")
    assert trial.completed()
    trial.create({"model.latent_dim": 3}, {"train": {"epochs": 2}, "model": {"latent_dim": 3}})
    assert trial.completed({"train": {"epochs": 2}, "model": {"latent_dim": 3}})
    assert not trial.completed({"train": {"epochs": 3}, "model": {"latent_dim": 3}})
    assert not trial.completed({"train": {"epochs": 2}, "model": {"latent_dim": 4}})


@pytest.mark.parametrize(
    "files, error, expect",
    [
        ({"model": b"w"}, "", ("completed", "", False)),
        ({}, "", ("failed", "training ended without writing model.pt", False)),
        ({"model": b"w"}, "RuntimeError: boom", ("failed", "RuntimeError: boom", False)),
        ({"diverged": b'{"reason": "NaN at epoch 2"}'}, "", ("failed", "NaN at epoch 2", True)),
    ],
)
def test_a_training_attempt_ends_as_its_files_say(tmp_path, files, error, expect):
    trial = layout.Trial(tmp_path / "t")
    trial.path.mkdir()
    for key, data in files.items():
        trial.file(key).write_bytes(data)
    trial.write_history([{"epoch": 1}, {"epoch": 2}])
    st = trial.outcome(error, 12.345, config_digest="abc", setup_s=0.5)
    assert (st.status.value, st.reason, st.final) == expect
    assert (st.epochs, st.seconds, st.config_digest, st.setup_s) == (2, 12.35, "abc", 0.5)


def test_an_interrupt_relabels_only_what_a_rerun_would_train_again(tmp_path):
    states = {
        "running": layout.TrialStatus(layout.Status.RUNNING),
        "crashed": layout.TrialStatus(layout.Status.FAILED, "lost node"),
        "diverged": layout.TrialStatus(layout.Status.FAILED, "NaN", final=True),
        "done": layout.TrialStatus(layout.Status.COMPLETED, epochs=2),
    }
    for name, st in states.items():
        trial = layout.Trial(tmp_path / name)
        trial.write_status(st)
        trial.mark_interrupted()
    after = {name: layout.Trial(tmp_path / name).status().status.value for name in states}
    assert after == {
        "running": "interrupted",
        "crashed": "interrupted",
        "diverged": "failed",
        "done": "completed",
    }
