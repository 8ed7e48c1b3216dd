import gzip
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from vaecore import cluster, data, datafiles
from vaecore.datafiles import DataError


def idx_bytes(array: np.ndarray, magic_dtype: int = 0x08) -> bytes:
    header = bytes([0, 0, magic_dtype, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)


@pytest.fixture
def copied(tmp_path):
    """A writable copy of the real (gzipped) Debian files."""
    folder = tmp_path / "fm"
    shutil.copytree(datafiles.DEBIAN_DIR, folder)
    return folder


def test_real_dataset_has_the_official_shapes_counts_and_balance(fmnist):
    assert fmnist.train_x.shape == (60000, 28, 28) and fmnist.test_x.shape == (10000, 28, 28)
    assert fmnist.train_x.dtype.is_floating_point is False and fmnist.train_x.max() == 255
    assert fmnist.train_y.bincount().tolist() == [6000] * 10
    assert fmnist.test_y.bincount().tolist() == [1000] * 10
    assert len(data.CLASS_NAMES) == 10 and data.CLASS_NAMES[3] == "Dress"


def test_per_class_subset_is_balanced_and_deterministic(fmnist):
    a = data.subset(fmnist, 30, 5)
    b = data.subset(fmnist, 30, 5)
    assert a.train_y.bincount().tolist() == [30] * 10 and a.test_y.bincount().tolist() == [5] * 10
    assert (a.train_x == b.train_x).all()
    first_dress = int((fmnist.train_y == 3).nonzero()[0])
    assert (a.train_x[(a.train_y == 3).nonzero()[0]] == fmnist.train_x[first_dress]).all()


def test_to_device_keeps_uint8_and_is_a_no_op_where_the_data_already_is(fmnist):
    small = data.subset(fmnist, 5, 2)
    same = data.to_device(small, "cpu")
    assert same.train_x is small.train_x and same.test_y is small.test_y
    moved = data.to_device(small, "meta")  # a device without memory: only where and what type
    assert moved.train_x.device.type == "meta" and moved.train_x.dtype == small.train_x.dtype
    assert moved.train_x.shape == (50, 28, 28) and moved.source == small.source


def test_plain_and_gzipped_files_load_the_same(copied, fmnist):
    for gz in copied.glob("*.gz"):
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    plain = data.load(str(copied))
    assert (plain.test_x == fmnist.test_x).all() and (plain.train_y == fmnist.train_y).all()


def test_torchvision_layout_is_found(tmp_path):
    raw = tmp_path / "root" / "FashionMNIST" / "raw"
    shutil.copytree(datafiles.DEBIAN_DIR, raw)
    assert datafiles.find(str(tmp_path / "root")) == raw


def test_env_var_comes_before_the_debian_package(copied, monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(copied))
    assert datafiles.find() == copied


def test_the_verification_stamp_is_reused_until_a_file_changes(copied, monkeypatch):
    data.load(str(copied))
    stamps = list((copied.parent / "cache").glob("verified-*.json"))
    assert len(stamps) == 1  # in $VAE_CACHE_DIR
    checked = []
    real_check = datafiles.check
    monkeypatch.setattr(datafiles, "check", lambda name, *a: checked.append(name) or real_check(name, *a))
    data.load(str(copied))
    assert checked == []  # trusted from the stamp: not hashed again
    labels = copied / "t10k-labels-idx1-ubyte.gz"
    os.utime(labels, ns=(labels.stat().st_atime_ns, labels.stat().st_mtime_ns + 1_000_000))
    data.load(str(copied))
    assert sorted(checked) == sorted(datafiles.FILES)  # a touched file: all verified again
    checked.clear()
    data.load(str(copied))
    assert checked == []  # and remembered again


def test_a_changed_file_is_verified_again_and_its_bad_hash_reported(copied):
    data.load(str(copied))  # verified once, stamp written
    labels = copied / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[-1] = (raw[-1] + 1) % 10  # still a valid label, same size
    labels.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: SHA-256 mismatch"):
        data.load(str(copied))


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("t10k-labels-idx1-ubyte", idx_bytes(np.zeros(10000))[:-7], "truncated"),
        ("t10k-labels-idx1-ubyte", b"\x12\x34" + idx_bytes(np.zeros(10000))[2:], "bad magic"),
        ("t10k-labels-idx1-ubyte", idx_bytes(np.zeros(10000), 0x0D), "dtype 0x0d"),
        ("t10k-images-idx3-ubyte", idx_bytes(np.zeros((10000, 28, 27))), r"shape \(10000, 28, 27\)"),
        ("t10k-labels-idx1-ubyte", idx_bytes(np.full(10000, 12)), "label 12 outside 0..9"),
        ("t10k-labels-idx1-ubyte", idx_bytes(np.zeros(10000)), "SHA-256 mismatch"),
    ],
)
def test_corrupt_files_give_one_clear_error_naming_the_file(copied, name, content, message):
    (copied / f"{name}.gz").unlink()
    (copied / name).write_bytes(content)
    with pytest.raises(DataError, match=message) as err:
        data.load(str(copied))
    assert name in str(err.value) and "dataset-fashion-mnist" in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_data_lists_the_three_ways_to_provide_it(tmp_path, monkeypatch):
    monkeypatch.setattr(datafiles, "DEBIAN_DIR", tmp_path / "no-debian")
    with pytest.raises(DataError, match="not a folder") as err:
        datafiles.find(str(tmp_path / "nowhere"))
    assert "FASHION_MNIST_DIR" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="Fashion-MNIST not found in .*empty"):
        datafiles.find(str(tmp_path / "empty"))


def test_the_cli_prints_one_line_and_exits_2_on_missing_data(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.train",
            "--out",
            str(tmp_path / "run"),
            "--set",
            f"data.dir={tmp_path / 'nowhere'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: data.dir") and proc.stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_a_nodes_check_names_the_node_and_what_it_cannot_see_or_verify(copied, tmp_path):
    # vaecore.cluster.node_problem is what each node of a joined cluster runs before a sweep
    marker = tmp_path / "sweep" / ".shared-check-x"
    marker.parent.mkdir()
    host = f"node {socket.gethostname()} (10.0.0.7)"
    assert cluster.node_problem("10.0.0.7", str(marker), [(str(copied), False)]) == (
        f"{host} cannot see {marker.parent}: --out must be on storage shared by every node of the Ray cluster"
    )
    marker.write_text("driver")
    assert cluster.node_problem("10.0.0.7", str(marker), [(str(copied), False)]) == ""
    labels = copied / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes())[:-1] + b"\x01"))
    problem = cluster.node_problem("10.0.0.7", str(marker), [(str(copied), False)])
    assert problem.startswith(f"{host}: ") and "t10k-labels-idx1-ubyte.gz: SHA-256 mismatch" in problem
    assert (
        "torch"
        not in subprocess.run(
            [sys.executable, "-c", "import sys, vaecore.cluster; print(sorted(sys.modules))"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    )  # the node's Ray task starts without importing torch
