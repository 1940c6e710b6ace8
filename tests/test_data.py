"""Tests for graphc.training.data and batching: dataset loading, IDX parsing, downloads, fitting and batches."""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import shutil
import socket
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
from paths import shared_datasets

from graphc.diagnostics import GraphcError
from graphc.training.batching import batches, check_labels, fit_to_input
from graphc.training.data import Dataset, load_dataset, split_validation
from graphc.training.idx import IDX_FILES, cache_dir, download_idx

# read at import time: the autouse fixture below clears $GRAPHC_DATA for every test
SHARED = shared_datasets()
MNIST_MD5 = ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
             "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c")


def _needs(name: str) -> Path:
    directory = SHARED / name
    if not all((directory / (f + ".gz")).is_file() for f in IDX_FILES):
        pytest.skip(f"{name} IDX files not found in {directory} (set $GRAPHC_DATA to the shared datasets directory)")
    return directory


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Keep every test away from the real cache, $GRAPHC_DATA and the network."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for var in ("GRAPHC_DATA", "GRAPHC_MNIST_URL", "GRAPHC_FASHION_MNIST_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GRAPHC_FASHION_MNIST_URL", "http://127.0.0.1:9/")  # discard port: never the internet
    monkeypatch.setenv("GRAPHC_MNIST_URL", "http://127.0.0.1:9/")


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    _needs("mnist")
    return load_dataset("mnist", data_dir=str(SHARED), download=False)


def _check_mnist_like(ds: Dataset) -> None:
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    assert set(np.unique(ds.y_train)) == set(range(10)) == set(np.unique(ds.y_test))
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0 and ds.x_test.max() == 1.0
    assert ds.num_classes == 10 and ds.sample_shape == (28, 28)


def test_mnist_loads():
    _needs("mnist")
    ds = load_dataset("mnist", data_dir=str(SHARED), download=False)
    _check_mnist_like(ds)
    assert list(ds.y_train[:3]) == [5, 0, 4] and list(ds.y_test[:3]) == [7, 2, 1]


def test_fashion_mnist_found_via_env_and_alias(monkeypatch):
    _needs("fashion-mnist")
    monkeypatch.setenv("GRAPHC_DATA", str(SHARED))
    ds = load_dataset("fashion_mnist", download=False)
    _check_mnist_like(ds)
    assert ds.name == "fashion-mnist" and ds.y_train[0] == 9


def test_raw_idx_files_in_data_dir_itself(tmp_path, mnist):
    source = _needs("mnist")
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in IDX_FILES:
        (raw / name).write_bytes(gzip.decompress((source / (name + ".gz")).read_bytes()))
    ds = load_dataset("MNIST", data_dir=str(raw), download=False)
    assert np.array_equal(ds.x_train, mnist.x_train) and np.array_equal(ds.y_test, mnist.y_test)


def test_standard_scaling_uses_training_statistics(mnist):
    ds = load_dataset("mnist", data_dir=str(SHARED), download=False, scale="standard")
    flat = ds.x_train.reshape(60000, -1)
    varying = mnist.x_train.reshape(60000, -1).std(axis=0) > 0
    assert np.allclose(flat.mean(axis=0), 0, atol=1e-4)
    assert np.allclose(flat.std(axis=0)[varying], 1, atol=1e-3)
    assert np.all(flat[:, ~varying] == 0)  # constant border pixels stay finite
    assert ds.x_test.dtype == np.float32 and abs(ds.x_test.mean()) < 0.1


# ---------------------------------------------------------------- synthetic IDX files

def _write_idx(directory: Path, n_train=6, n_test=4, gz=True) -> dict[str, bytes]:
    """Write a tiny valid IDX dataset; return the (uncompressed) bytes per file name."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    contents = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        contents[f"{prefix}-images-idx3-ubyte"] = struct.pack(">4I", 2051, n, 28, 28) + images.tobytes()
        contents[f"{prefix}-labels-idx1-ubyte"] = struct.pack(">2I", 2049, n) + bytes(range(n))
    for name, data in contents.items():
        if gz:
            (directory / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)
    return contents


def test_synthetic_idx_in_named_subdirectory(tmp_path):
    contents = _write_idx(tmp_path / "data" / "mnist")
    ds = load_dataset("mnist", data_dir=str(tmp_path / "data"), download=False)
    assert ds.x_train.shape == (6, 28, 28) and ds.x_test.shape == (4, 28, 28)
    assert list(ds.y_train) == [0, 1, 2, 3, 4, 5]
    pixels = np.frombuffer(contents["train-images-idx3-ubyte"], np.uint8, offset=16)
    assert np.array_equal(ds.x_train.ravel(), pixels / np.float32(255))


@pytest.mark.parametrize("target, damage, expect", [
    ("train-images-idx3-ubyte", lambda b: b[:-100], "corrupt"),
    ("train-images-idx3-ubyte", lambda b: b + b"extra", "corrupt"),
    ("t10k-labels-idx1-ubyte", lambda b: b[:5], "shorter than"),
    ("train-images-idx3-ubyte", lambda b: struct.pack(">I", 2049) + b[4:], "magic number 2049"),
    ("t10k-labels-idx1-ubyte", lambda b: struct.pack(">I", 1234) + b[4:], "magic number 1234"),
    ("train-labels-idx1-ubyte", lambda b: b[:8] + bytes([10]) + b[9:], "outside 0..9"),
    ("train-labels-idx1-ubyte", lambda b: struct.pack(">2I", 2049, 5) + b[8:13], "labels"),
])
def test_corrupt_raw_idx_is_a_graphc_error_naming_the_file(tmp_path, target, damage, expect):
    contents = _write_idx(tmp_path, gz=False)
    (tmp_path / target).write_bytes(damage(contents[target]))
    with pytest.raises(GraphcError) as info:
        load_dataset("mnist", data_dir=str(tmp_path), download=False)
    assert target in str(info.value) and expect in str(info.value)


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b[:10] + b"\0" * (len(b) - 10)])
def test_corrupt_gzip_is_a_graphc_error_naming_the_file(tmp_path, damage):
    _write_idx(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(GraphcError, match="train-images-idx3-ubyte.gz"):
        load_dataset("mnist", data_dir=str(tmp_path), download=False)


def test_directory_of_the_other_dataset_is_not_used(tmp_path):
    _write_idx(tmp_path / "mnist")
    with pytest.raises(GraphcError, match="`fashion-mnist` not found"):
        load_dataset("fashion-mnist", data_dir=str(tmp_path / "mnist"), download=False)
    assert load_dataset("mnist", data_dir=str(tmp_path / "mnist"), download=False).x_train.shape == (6, 28, 28)


def test_missing_files_without_download_say_where_to_put_them(tmp_path):
    (tmp_path / "partial").mkdir()
    with pytest.raises(GraphcError) as info:
        load_dataset("fashion-mnist", data_dir=str(tmp_path / "partial"), download=False)
    text = str(info.value)
    assert "not found" in text and str(tmp_path / "partial") in text
    assert "--data" in text and "GRAPHC_DATA" in text


# ---------------------------------------------------------------- downloads from a local server

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1; yield (directory, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_download_into_cache_then_load(server, monkeypatch, mnist):
    source = _needs("mnist")
    www, url = server
    (www / "mirror" / "mnist").mkdir(parents=True)
    for name in IDX_FILES:  # copyfile, not copytree: the shared files are read-only
        shutil.copyfile(source / (name + ".gz"), www / "mirror" / "mnist" / (name + ".gz"))
    monkeypatch.setenv("GRAPHC_MNIST_URL", url + "mirror/mnist")  # no trailing slash on purpose
    ds = load_dataset("mnist")
    cache = cache_dir("mnist")
    assert _leftovers(cache) == sorted(n + ".gz" for n in IDX_FILES)
    for name, md5 in zip(IDX_FILES, MNIST_MD5):
        assert hashlib.md5((cache / (name + ".gz")).read_bytes()).hexdigest() == md5
    assert np.array_equal(ds.y_train, mnist.y_train) and np.array_equal(ds.x_test, mnist.x_test)
    shutil.rmtree(www / "mirror")  # a second load must come from the cache
    assert load_dataset("mnist").x_train.shape == (60000, 28, 28)


def test_md5_mismatch_leaves_no_partial_file(server, tmp_path):
    source = _needs("mnist")
    www, url = server
    for name in IDX_FILES:
        shutil.copyfile(source / (name + ".gz"), www / (name + ".gz"))
    bad = www / "train-labels-idx1-ubyte.gz"
    data = bytearray(bad.read_bytes())
    data[-20] ^= 0xFF
    bad.write_bytes(bytes(data))
    dest = tmp_path / "dl"
    with pytest.raises(GraphcError) as info:
        download_idx("mnist", dest, base_url=url)
    assert "MD5" in str(info.value) and "train-labels-idx1-ubyte.gz" in str(info.value)
    assert "--data" in str(info.value)
    # the file fetched before the bad one was verified and kept; nothing else is left behind
    assert _leftovers(dest) == ["train-images-idx3-ubyte.gz"]


def test_http_404_is_a_graphc_error(server):
    www, url = server
    with pytest.raises(GraphcError, match="HTTP Error 404") as info:
        download_idx("fashion-mnist", base_url=url)
    assert "GRAPHC_DATA" in str(info.value)
    assert _leftovers(cache_dir("fashion-mnist")) == []


def test_unreachable_mirror_is_a_graphc_error(tmp_path, monkeypatch):
    with socket.socket() as s:  # find a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("GRAPHC_MNIST_URL", f"http://127.0.0.1:{port}/")
    with pytest.raises(GraphcError, match="could not download"):
        load_dataset("mnist", data_dir=str(tmp_path))
    assert _leftovers(cache_dir("mnist")) == []


# ---------------------------------------------------------------- built-in small datasets

def test_xor():
    ds = load_dataset("xor")
    assert ds.x_train.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]] and ds.y_train.tolist() == [0, 1, 1, 0]
    assert ds.x_train.dtype == np.float32 and ds.num_classes == 2
    assert np.array_equal(ds.x_test, ds.x_train) and ds.sample_shape == (2,)


def test_spiral_shapes_and_determinism():
    a, b, c = load_dataset("spiral", seed=1), load_dataset("spiral", seed=1), load_dataset("spiral", seed=2)
    assert a.x_train.shape == (240, 2) and a.x_test.shape == (60, 2) and a.num_classes == 3
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)
    assert np.bincount(np.concatenate([a.y_train, a.y_test])).tolist() == [100, 100, 100]
    assert np.abs(a.x_train).max() <= 1.0


def test_digits_shapes_scale_and_determinism():
    a, b, c = load_dataset("digits"), load_dataset("digits", seed=0), load_dataset("digits", seed=5)
    assert a.x_train.shape == (1438, 64) and a.x_test.shape == (359, 64) and a.num_classes == 10
    assert a.x_train.dtype == np.float32 and a.x_train.min() == 0 and a.x_train.max() == 1
    assert np.array_equal(a.x_train, b.x_train) and not np.array_equal(a.y_train, c.y_train)


def test_unknown_dataset_suggests_a_name():
    with pytest.raises(GraphcError, match="unknown dataset `mnsit`") as info:
        load_dataset("mnsit")
    assert "did you mean `mnist`" in str(info.value) and "fashion-mnist" in str(info.value)
    with pytest.raises(GraphcError, match="unknown scale"):
        load_dataset("xor", scale="minmax")


# ---------------------------------------------------------------- npz and csv files

def test_npz_train_and_test(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.arange(12).reshape(6, 2), y_train=np.array([0, 1, 2, 0, 1, 2]),
             x_test=np.ones((2, 2)), y_test=np.array([4, 0]))
    ds = load_dataset(str(path))
    assert ds.x_train.dtype == np.float32 and ds.x_train.max() == 11  # generic data is not rescaled
    assert ds.y_train.dtype == np.int64 and ds.num_classes == 5 and ds.x_test.shape == (2, 2)


def test_npz_x_y_float_targets_relative_to_data_dir(tmp_path):
    np.savez(tmp_path / "r.npz", x=np.linspace(0, 1, 10), y=np.linspace(0, 2, 10).reshape(10, 1))
    ds = load_dataset("r.npz", data_dir=str(tmp_path))
    assert ds.x_train.shape == (10, 1) and ds.y_train.dtype == np.float32 and ds.y_train.shape == (10, 1)
    assert ds.num_classes is None and ds.x_test is None and ds.y_test is None


@pytest.mark.parametrize("arrays, expect", [
    ({"inputs": np.ones(3)}, "expected x_train"),
    ({"x": np.ones((3, 2)), "y": np.zeros(4, int)}, "same non-zero number"),
    ({"x": np.array([[np.nan]]), "y": np.zeros(1, int)}, "NaN"),
    ({"x": np.array(["a", "b"]), "y": np.zeros(2, int)}, "numeric"),
    ({"x": np.ones((2, 1)), "y": np.array([-1, 0])}, "labels include -1"),
    ({"x_train": np.ones((2, 3)), "y_train": np.zeros(2, int), "x_test": np.ones((2, 4)),
      "y_test": np.zeros(2, int)}, "sample shape"),
])
def test_bad_npz_contents(tmp_path, arrays, expect):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(GraphcError, match=expect):
        load_dataset(str(tmp_path / "bad.npz"))


def test_npz_unreadable_files(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    np.savez(tmp_path / "obj.npz", x=np.array([{}, {}], dtype=object), y=np.zeros(2, int))
    np.save(tmp_path / "single.npy", np.ones(3))
    os.rename(tmp_path / "single.npy", tmp_path / "single.npz")
    for name, expect in [("junk.npz", "cannot read"), ("obj.npz", "cannot read"),
                         ("single.npz", "not an .npz"), ("absent.npz", "does not exist")]:
        with pytest.raises(GraphcError, match=expect):
            load_dataset(str(tmp_path / name))


def test_csv_with_header_and_class_labels(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("\ufeffa,b,label\n0.5,1,0\n\n2,3,2\n4,5,1\n")
    ds = load_dataset(str(path))
    assert ds.x_train.tolist() == [[0.5, 1], [2, 3], [4, 5]] and ds.y_train.tolist() == [0, 2, 1]
    assert ds.y_train.dtype == np.int64 and ds.num_classes == 3 and ds.x_test is None


def test_csv_without_header_float_targets(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("1,2,0.5\n3,4,-1.5\n")
    ds = load_dataset(str(path))
    assert ds.x_train.shape == (2, 2) and ds.y_train.dtype == np.float32 and ds.num_classes is None


@pytest.mark.parametrize("text, expect", [
    ("a,b\n1,2\n3,oops\n", r"r\.csv:3: column 2 is `oops`"),
    ("1,2,3\n4,5\n", r"r\.csv:2: row has 2 columns, expected 3"),
    ("\n\n", "no data rows"),
    ("x,y\n", "no data rows"),
    ("1\n2\n", "a feature column and a label column"),
])
def test_bad_csv(tmp_path, text, expect):
    (tmp_path / "r.csv").write_text(text)
    with pytest.raises(GraphcError, match=expect):
        load_dataset(str(tmp_path / "r.csv"))


# ---------------------------------------------------------------- fitting to a model

def test_fit_to_input_reshapes_by_element_count(mnist):
    assert fit_to_input(mnist.x_test, (784,), dataset="mnist", input_name="image").shape == (10000, 784)
    assert fit_to_input(mnist.x_test, [1, 28, 28], dataset="mnist", input_name="image").shape == (10000, 1, 28, 28)


def test_fit_to_input_mismatch_message():
    digits = load_dataset("digits")
    with pytest.raises(GraphcError) as info:
        fit_to_input(digits.x_train, (1, 28, 28), dataset="digits", input_name="image")
    text = str(info.value)
    assert "dataset `digits` gives samples of shape [64], but input `image` is declared [1, 28, 28]" in text
    assert "help: declare `image` with 64 elements per sample, e.g. [64] or [1, 8, 8]" in text


def test_check_labels_classes():
    y = np.array([0, 3, 9])
    out = check_labels(y.astype(np.uint8), num_classes=10, target_shape=None, dataset="mnist", label_name="digit")
    assert out.dtype == np.int64 and out.tolist() == [0, 3, 9]
    assert check_labels(np.array([[1.0], [2.0]]), num_classes=3, target_shape=None, dataset="d",
                        label_name="c").tolist() == [1, 2]
    with pytest.raises(GraphcError) as info:
        check_labels(y, num_classes=5, target_shape=None, dataset="mnist", label_name="digit")
    assert "dataset `mnist` has class labels 0..9 (10 classes), but label `digit` is declared with 5 classes" \
        in str(info.value)
    with pytest.raises(GraphcError, match="non-negative"):
        check_labels(np.array([-1, 0]), num_classes=5, target_shape=None, dataset="d", label_name="c")
    with pytest.raises(GraphcError, match="gives float targets of shape \\[\\], but label `c` is a class label"):
        check_labels(np.array([0.5, 1.0], np.float32), num_classes=2, target_shape=None, dataset="d",
                     label_name="c")
    with pytest.raises(GraphcError, match="targets of shape \\[3\\]"):
        check_labels(np.zeros((4, 3)), num_classes=3, target_shape=None, dataset="d", label_name="c")


def test_check_labels_targets():
    out = check_labels(np.arange(6, dtype=np.float64).reshape(3, 2), num_classes=None, target_shape=(2, 1),
                       dataset="d", label_name="t")
    assert out.shape == (3, 2, 1) and out.dtype == np.float32
    onehot = check_labels(np.array([2, 0]), num_classes=None, target_shape=[3], dataset="d", label_name="t")
    assert onehot.tolist() == [[0, 0, 1], [1, 0, 0]] and onehot.dtype == np.float32
    as_values = check_labels(np.array([2, 0]), num_classes=None, target_shape=(1,), dataset="d", label_name="t")
    assert as_values.tolist() == [[2.0], [0.0]]
    with pytest.raises(GraphcError, match="class labels 0..7"):
        check_labels(np.array([7, 0]), num_classes=None, target_shape=(3,), dataset="d", label_name="t")
    with pytest.raises(GraphcError, match=r"gives targets of shape \[4\], but label `t` is declared \[3\]"):
        check_labels(np.zeros((2, 4)), num_classes=None, target_shape=(3,), dataset="d", label_name="t")


def test_split_validation_covers_every_sample_once():
    x, y = np.arange(103).reshape(103, 1), np.arange(103)
    x_tr, y_tr, x_val, y_val = split_validation(x, y, 0.2, seed=3)
    assert len(y_val) == 21 and sorted(np.concatenate([y_tr, y_val]).tolist()) == list(range(103))
    assert np.array_equal(x_tr[:, 0], y_tr) and np.array_equal(x_val[:, 0], y_val)
    again = split_validation(x, y, 0.2, seed=3)
    assert np.array_equal(again[3], y_val) and not np.array_equal(split_validation(x, y, 0.2, seed=4)[3], y_val)
    x_tr, y_tr, x_val, y_val = split_validation(x, y, 0.0, seed=3)
    assert len(x_tr) == 103 and x_val.shape == (0, 1) and y_val.shape == (0,)
    for bad in (1.0, -0.1):
        with pytest.raises(GraphcError, match="validation fraction"):
            split_validation(x, y, bad, seed=0)


@pytest.mark.parametrize("shuffle", [True, False])
def test_batches_cover_every_sample_once(shuffle):
    x, y = np.arange(10).reshape(10, 1) * 10, np.arange(10)
    rng = np.random.default_rng(0)
    got = list(batches(x, y, 4, shuffle=shuffle, rng=rng))
    assert [len(yb) for _, yb in got] == [4, 4, 2]
    seen = np.concatenate([yb for _, yb in got])
    assert sorted(seen.tolist()) == list(range(10)) and all(np.array_equal(xb[:, 0], yb * 10) for xb, yb in got)
    assert (seen.tolist() == list(range(10))) != shuffle
    dropped = list(batches(x, y, 4, shuffle=shuffle, rng=rng, drop_last=True))
    assert [len(yb) for _, yb in dropped] == [4, 4]
    with pytest.raises(GraphcError, match="batch size"):
        batches(x, y, 0, shuffle=shuffle, rng=rng)
