"""The real-data FID statistics: equal to a fresh computation, cached on disk, reused, self-healing."""

from __future__ import annotations

import pytest
import torch

from vaecore.post import classifier, metrics, reference


@pytest.fixture
def setup(fmnist, tmp_path, monkeypatch):
    """The shipped classifier, 600 test and 300 floor images, an empty cache and an empty memo."""
    monkeypatch.setenv("VAE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(reference, "_MEMO", {})
    clf, _ = classifier.load_reference()
    return clf, fmnist.test_x[:600], reference.floor_images(fmnist.train_x, 300)


def count_computes(monkeypatch) -> list:
    calls, real = [], reference.compute
    monkeypatch.setattr(reference, "compute", lambda *a: calls.append(1) or real(*a))
    return calls


def test_cached_stats_equal_a_fresh_computation(setup):
    clf, test_x, floor_x = setup
    stats = reference.real_stats(clf, test_x, floor_x)
    real, floor = (classifier.predict(clf, x)[0].double() for x in (test_x, floor_x))
    assert torch.allclose(stats.mean, real.mean(0)) and torch.allclose(stats.cov, torch.cov(real.T))
    assert torch.allclose(stats.cov_half @ stats.cov_half, stats.cov, atol=1e-8)
    assert stats.floor_fid == pytest.approx(metrics.fid(floor, real), rel=1e-6)
    assert reference.cache_path(stats.key).is_file()


def test_stats_are_computed_once_then_read_from_memory_or_disk(setup, monkeypatch):
    clf, test_x, floor_x = setup
    calls = count_computes(monkeypatch)
    first = reference.real_stats(clf, test_x, floor_x)
    path = reference.cache_path(first.key)
    mtime = path.stat().st_mtime_ns
    assert reference.real_stats(clf, test_x, floor_x) is first  # the in-process memo
    monkeypatch.setattr(reference, "_MEMO", {})  # a new process: read from disk
    again = reference.real_stats(clf, test_x, floor_x)
    assert calls == [1] and path.stat().st_mtime_ns == mtime
    assert torch.equal(again.cov, first.cov) and again.floor_fid == first.floor_fid
    other = reference.real_stats(clf, test_x[:500], floor_x)  # other images: another key
    assert other.key != first.key and calls == [1, 1]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other key"])
def test_a_corrupt_cache_file_is_recomputed_and_rewritten(setup, monkeypatch, damage):
    clf, test_x, floor_x = setup
    good = reference.real_stats(clf, test_x, floor_x)
    path = reference.cache_path(good.key)
    raw = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not a torch file")
    elif damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    else:  # a valid file holding some other classifier's statistics
        state = torch.load(path, weights_only=True)
        torch.save({**state, "key": "someone else"}, path)
    monkeypatch.setattr(reference, "_MEMO", {})
    calls = count_computes(monkeypatch)
    fixed = reference.real_stats(clf, test_x, floor_x)
    assert calls == [1] and torch.equal(fixed.cov, good.cov) and fixed.floor_fid == good.floor_fid
    monkeypatch.setattr(reference, "_MEMO", {})
    assert reference._read(path, good.key) is not None  # rewritten whole
