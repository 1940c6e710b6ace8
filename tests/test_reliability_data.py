"""Hostile data, weights and checkpoint files: bounded reads, validated contents, no silent fallbacks.

Each file is built by hand the way a damaged disk, a bad mirror or a hostile user would leave it; loading it must be
a GraphcError naming the file (exit 1 on the command line), never a traceback, a huge allocation, a download, or
weights accepted silently; and no bytes of the file are echoed.
"""
from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from paths import MODELS, REPO

from graphc.diagnostics import GraphcError
from graphc.program import Program, check_file
from graphc.training.checkpoint import load_arrays, load_weights, save_arrays
from graphc.training.data import load_dataset
from graphc.training.idx import IDX_FILES, remove_stale_parts

XOR = str(MODELS / "xor.nn")
SECRET = "SECRET-TOKEN-42"


def graphc(*argv, cwd) -> subprocess.CompletedProcess:
    """Return the finished `python -m graphc ARGV` (no network: a download fails at once)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(cwd / "cache"),
           "GRAPHC_MNIST_URL": "http://127.0.0.1:9/", "GRAPHC_DATA": ""}
    return subprocess.run([sys.executable, "-m", "graphc", *map(str, argv)], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=300)


def user_error(done: subprocess.CompletedProcess, says: str) -> None:
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and SECRET not in done.stderr, done.stderr


def npy_member(header_shape: tuple, payload: bytes = b"", dtype: str = "<f4") -> bytes:
    """Return the bytes of a .npy file whose header claims `header_shape` but which holds only `payload`."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": header_shape})
    return buffer.getvalue() + payload


def write_zip(path, members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def idx(magic: int, dims: tuple, body: bytes | None = None) -> bytes:
    """Return an IDX file: magic, dimensions, and `body` (zeros of the claimed size by default)."""
    header = b"".join(int(v).to_bytes(4, "big") for v in (magic, *dims))
    return header + (bytes(int(np.prod(dims))) if body is None else body)


def mnist_folder(root, *, images=5, labels=5, skip=()) -> None:
    """Write a tiny gzipped MNIST folder (`images`/`labels` items per split), leaving out the files in `skip`."""
    root.mkdir(parents=True, exist_ok=True)
    for name in IDX_FILES:
        if name in skip:
            continue
        data = idx(2051, (images, 28, 28)) if "images" in name else idx(2049, (labels,))
        (root / (name + ".gz")).write_bytes(gzip.compress(data))


# ---- IDX ---------------------------------------------------------------------------------------

def test_idx_headers_saying_zero_items_do_not_train(tmp_path):
    mnist_folder(tmp_path / "mnist", images=0, labels=0)
    with pytest.raises(GraphcError, match="holds no samples"):
        load_dataset("mnist", data_dir=str(tmp_path), download=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "weights.npz").write_bytes(b"good weights")
    done = graphc("run", MODELS / "mlp.nn", "--data", tmp_path, "--out", out, cwd=tmp_path)
    user_error(done, "holds no samples (its header says 0 items)")
    assert (out / "weights.npz").read_bytes() == b"good weights"


def test_idx_header_claiming_more_than_the_gzip_can_hold(tmp_path):
    mnist_folder(tmp_path / "mnist")
    bomb = gzip.compress(idx(2051, (60000, 28, 28), body=b""))   # 47 MB promised by a 40-byte file
    (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(bomb)
    with pytest.raises(GraphcError, match="header promises 47,040,016 bytes but the file can hold at most"):
        load_dataset("mnist", data_dir=str(tmp_path), download=False)


def test_gzip_bomb_is_not_decompressed_past_the_header(tmp_path, monkeypatch):
    mnist_folder(tmp_path / "mnist")
    # 2 images promised, 64 MB of zeros behind them: reading stops one byte after the promise.
    bomb = gzip.compress(idx(2051, (2, 28, 28), body=bytes(64 << 20)), compresslevel=1)
    assert len(bomb) < 1 << 20
    (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(bomb)
    reads = []
    real_read = gzip.GzipFile.read
    monkeypatch.setattr(gzip.GzipFile, "read", lambda self, n=-1: reads.append(n) or real_read(self, n))
    with pytest.raises(GraphcError, match="header promises 2 images .* but it holds more"):
        load_dataset("mnist", data_dir=str(tmp_path), download=False)
    assert reads and all(0 <= n <= 2 * 28 * 28 + 1 for n in reads)


def test_a_folder_missing_one_idx_file_does_not_download(tmp_path):
    mnist_folder(tmp_path / "data", skip=("t10k-labels-idx1-ubyte",))
    with pytest.raises(GraphcError, match="holds 3 of the 4 mnist IDX files; missing: t10k-labels-idx1-ubyte"):
        load_dataset("mnist", data_dir=str(tmp_path / "data"))
    done = graphc("run", MODELS / "mlp.nn", "--data", tmp_path / "data", "--out", "out", cwd=tmp_path)
    user_error(done, "missing: t10k-labels-idx1-ubyte")
    assert "downloading" not in done.stderr


def test_stale_part_files_of_a_killed_download_are_removed(tmp_path):
    target = tmp_path / "train-images-idx3-ubyte.gz"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"{target.name}.{dead.stdout.strip()}.x1y2.part"
    live = tmp_path / f"{target.name}.{os.getpid()}.a3b4.part"
    other = tmp_path / "t10k-images-idx3-ubyte.gz.1.zz.part"
    for path in (stale, live, other):
        path.write_bytes(b"partial")
    remove_stale_parts(target)
    assert not stale.exists() and live.exists() and other.exists()


# ---- .npz headers claiming more than the file holds ---------------------------------------------

@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_npz_dataset_header_claiming_1e12_rows(tmp_path, compression):
    path = tmp_path / "big.npz"
    write_zip(path, {"x.npy": npy_member((10 ** 12, 2)), "y.npy": npy_member((10 ** 12,), dtype="<i8")},
              compression)
    with pytest.raises(GraphcError, match=r"claims shape \[1000000000000, 2\]"):
        load_dataset(str(path))


def test_weights_header_claiming_1e12_rows(tmp_path):
    path = tmp_path / "w.npz"
    write_zip(path, {"h.weight.npy": npy_member((10 ** 12, 4))}, zipfile.ZIP_DEFLATED)
    with pytest.raises(GraphcError, match="claims shape"):
        load_arrays(path)
    user_error(graphc("run", XOR, "--eval", "--weights", path, cwd=tmp_path), "claims shape [1000000000000, 4]")


# ---- weights and checkpoint contents -------------------------------------------------------------

def xor_arrays() -> dict[str, np.ndarray]:
    program = Program(check_file(XOR))
    return {k: v.copy() for k, v in {**program.params, **program.state}.items()}


@pytest.mark.parametrize("kind", ["string", "structured", "complex", "datetime", "bool", "nan", "inf"])
def test_weights_with_unusable_values_are_refused(tmp_path, kind):
    arrays = xor_arrays()
    w = arrays["h.weight"]
    arrays["h.weight"] = {
        "string": np.full(w.shape, SECRET),
        "structured": np.zeros(w.shape, dtype=[("a", "<f4"), ("b", "<f4")]),
        "complex": w.astype(np.complex64),
        "datetime": np.zeros(w.shape, dtype="datetime64[s]"),
        "bool": w > 0,
        "nan": np.where(w > 0, np.nan, w),
        "inf": np.full_like(w, np.inf),
    }[kind]
    path = tmp_path / "w.npz"
    save_arrays(path, arrays, {"model": "xor"})
    program = Program(check_file(XOR))
    before = program.params["h.weight"].copy()
    with pytest.raises(GraphcError, match="h.weight: ") as error:
        load_weights(program, path)
    assert "unusable values" in str(error.value) and SECRET not in str(error.value)
    assert np.array_equal(program.params["h.weight"], before)
    user_error(graphc("run", XOR, "--eval", "--weights", path, cwd=tmp_path), "holds unusable values")


@pytest.fixture
def checkpoint(tmp_path):
    """Return the folder of a finished 3-epoch XOR run (checkpoint.npz, weights.npz)."""
    done = graphc("run", XOR, "--epochs", "3", "--out", "out", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return tmp_path / "out"


@pytest.mark.parametrize("change, says", [
    ({"epoch": -1}, "epoch is -1"),
    ({"epoch": "3"}, "not a training checkpoint"),
    ({"epoch": True}, "not a training checkpoint"),
    ({"history": "not a list"}, "history is not a list"),
    ({"history": [1, 2, 3]}, "history is not a list"),
    ({"best_val": "low"}, "best_val is not a finite number"),
    ({"stale_epochs": -2}, "stale_epochs is not a non-negative whole number"),
])
def test_checkpoint_with_a_damaged_record_is_refused(checkpoint, change, says):
    path = checkpoint / "checkpoint.npz"
    arrays, meta = load_arrays(path)
    save_arrays(path, arrays, {**meta, **change})
    user_error(graphc("run", XOR, "--epochs", "5", "--resume", "--out", checkpoint, cwd=checkpoint.parent), says)


@pytest.mark.parametrize("key, damage", [
    ("param/h.weight", lambda a: np.full_like(a, np.nan)),
    ("opt/sgd.step/h.weight", lambda a: a - 100),
    ("opt/sgd.step/h.bias", lambda a: a.astype(np.float64)),
    ("param/h.bias", lambda a: a.astype(np.complex128)),
], ids=["nan-param", "negative-step", "float-step", "complex-param"])
def test_checkpoint_with_unusable_arrays_is_refused(checkpoint, key, damage):
    path = checkpoint / "checkpoint.npz"
    arrays, meta = load_arrays(path)
    arrays[key] = damage(arrays[key])
    save_arrays(path, arrays, meta)
    weights_before = (checkpoint / "weights.npz").read_bytes()
    done = graphc("run", XOR, "--epochs", "5", "--resume", "--out", checkpoint, cwd=checkpoint.parent)
    user_error(done, key)
    assert (checkpoint / "weights.npz").read_bytes() == weights_before



def test_malformed_npy_headers_are_not_echoed(tmp_path):
    header = b"{'descr': '" + SECRET.encode() + b"', 'fortran_order': False, 'shape': (4,)}"
    member = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
    good = npy_member((4,), bytes(16))
    path = tmp_path / "hostile.npz"
    write_zip(path, {"x.npy": member, "y.npy": good})
    for load in (load_dataset, load_arrays):
        with pytest.raises(GraphcError, match="malformed .npy header") as error:
            load(str(path))
        assert SECRET not in str(error.value)
    user_error(graphc("run", XOR, "--eval", "--weights", path, cwd=tmp_path), "malformed .npy header")


def test_npz_dataset_member_that_is_not_an_array(tmp_path):
    path = tmp_path / "odd.npz"
    write_zip(path, {"x": SECRET.encode(), "y.npy": npy_member((4,), bytes(32), dtype="<i8")})
    with pytest.raises(GraphcError, match="member 'x' is not a .npy array") as error:
        load_dataset(str(path))
    assert SECRET not in str(error.value)
