"""Checkpoint files: round trips, atomic replacement, damaged files, shape checks."""
import json
import os
import zipfile

import numpy as np
import pytest

from graphc.diagnostics import GraphcError
from graphc.training import checkpoint
from graphc.training.checkpoint import check_matches, load_arrays, save_arrays, write_json_atomic


def sample_arrays():
    rng = np.random.default_rng(0)
    return {
        "c1.weight": rng.standard_normal((6, 1, 5, 5)).astype(np.float32),
        "fc.bias": rng.standard_normal(10),
        "adam.step/c1.weight": np.array(7, np.int64),
        "labels": np.arange(5, dtype=np.uint8),
        "file": np.zeros(2),          # names that would clash with np.savez's own arguments
        "allow_pickle": np.ones(3),
        "fortran": np.asfortranarray(rng.standard_normal((3, 4))),
    }


META = {"epoch": 3, "model": "lenet", "metrics": {"loss": [0.5, 0.25]}, "note": "héllo"}


def test_round_trip(tmp_path):
    path = tmp_path / "w.npz"
    arrays = sample_arrays()
    save_arrays(path, arrays, META)
    loaded, meta = load_arrays(path)
    assert meta == META
    assert list(loaded) == list(arrays)
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape, name
        np.testing.assert_array_equal(loaded[name], array)
    # Plain numpy can read the file too, without pickle.
    with np.load(path, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["c1.weight"], arrays["c1.weight"])
        assert json.loads(npz["__meta__"].tobytes()) == META


def test_no_meta_and_deterministic_bytes(tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    save_arrays(a, {"x": np.arange(3.0)})
    save_arrays(b, {"x": np.arange(3.0)})
    assert load_arrays(a)[1] == {}
    assert a.read_bytes() == b.read_bytes()
    save_arrays(a, {})
    assert load_arrays(a) == ({}, {})


def test_path_is_used_exactly_and_permissions_follow_umask(tmp_path):
    path = tmp_path / "weights.bin"
    save_arrays(str(path), {"x": np.ones(2)})
    assert sorted(os.listdir(tmp_path)) == ["weights.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_invalid_arrays_rejected_before_writing(tmp_path):
    path = tmp_path / "w.npz"
    with pytest.raises(ValueError):
        save_arrays(path, {"__meta__": np.ones(2)})
    with pytest.raises(TypeError):
        save_arrays(path, {"x": np.array([{}], dtype=object)})
    with pytest.raises(TypeError):
        save_arrays(path, {"x": np.ones(2)}, meta={"bad": object()})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_replace_keeps_old_file(tmp_path, monkeypatch, exc):
    path = tmp_path / "w.npz"
    save_arrays(path, {"x": np.ones(3)}, {"v": 1})
    old = path.read_bytes()

    def boom(src, dst):
        assert os.path.exists(src)  # the new file was fully written first
        raise exc

    monkeypatch.setattr(checkpoint.os, "replace", boom)
    with pytest.raises(GraphcError if isinstance(exc, OSError) else KeyboardInterrupt) as err:
        save_arrays(path, {"x": np.zeros(1000)}, {"v": 2})
    if isinstance(exc, OSError):
        assert "No space left" in str(err.value) and "unchanged" in str(err.value)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["w.npz"]
    monkeypatch.undo()
    assert load_arrays(path)[1] == {"v": 1}


def test_failure_while_writing_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "w.npz"
    save_arrays(path, {"x": np.ones(3)})
    old = path.read_bytes()
    calls = []

    def write_then_fail(fp, array, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed half-way through the archive
        return real(fp, array, **kwargs)

    real = np.lib.format.write_array
    monkeypatch.setattr(np.lib.format, "write_array", write_then_fail)
    with pytest.raises(KeyboardInterrupt):
        save_arrays(path, {"a": np.zeros(100), "b": np.zeros(100)})
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["w.npz"]


def test_unwritable_directory(tmp_path):
    with pytest.raises(GraphcError, match="cannot write"):
        save_arrays(tmp_path / "missing" / "w.npz", {"x": np.ones(1)})


def expect_error(path, *fragments):
    with pytest.raises(GraphcError) as err:
        load_arrays(path)
    text = str(err.value)
    assert str(path) in text
    for fragment in fragments:
        assert fragment in text, text
    assert "help:" in text
    return text


def test_missing_and_directory(tmp_path):
    expect_error(tmp_path / "nope.npz", "no such file")
    expect_error(tmp_path, "directory")


def test_truncated(tmp_path):
    path = tmp_path / "w.npz"
    save_arrays(path, sample_arrays(), META)
    data = path.read_bytes()
    for cut in [len(data) // 2, len(data) - 10, 100, 30, 4, 1]:
        path.write_bytes(data[:cut])
        expect_error(path)
    path.write_bytes(b"")
    expect_error(path, "empty")


def test_random_bytes_and_other_formats(tmp_path):
    path = tmp_path / "w.npz"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    expect_error(path, "not a .npz archive")
    path.write_bytes(b"PK\x03\x04" + np.random.default_rng(1).bytes(5000))
    expect_error(path, "truncated or corrupt")
    np.save(tmp_path / "single.npy", np.ones(3))
    expect_error(tmp_path / "single.npy", "single .npy array")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    expect_error(path, "'readme.txt' is not a .npy array")


def test_corrupted_member_data(tmp_path):
    path = tmp_path / "w.npz"
    save_arrays(path, {"x": np.arange(1000, dtype=np.float64)})
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the array's bytes: caught by the zip CRC
    path.write_bytes(bytes(data))
    expect_error(path, "'x'", "truncated or corrupt")


def test_object_array_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, w=np.ones(3), obj=np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    expect_error(path, "'obj'", "object dtype")


def test_corrupt_meta(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, x=np.ones(2), __meta__=np.frombuffer(b"{not json", np.uint8))
    expect_error(path, "metadata")
    np.savez(path, x=np.ones(2), __meta__=np.frombuffer(b"[1, 2]", np.uint8))
    expect_error(path, "metadata", "JSON object")
    np.savez(path, x=np.ones(2), __meta__=np.ones(3))
    expect_error(path, "metadata")


def test_check_matches_lists_every_difference():
    loaded = {"c1.weight": np.zeros((6, 1, 5, 5)), "c1.bias": np.zeros(6), "old.weight": np.zeros((2, 2)),
              "fc.weight": np.zeros((10, 4))}
    expected = {"c1.weight": (6, 1, 3, 3), "c1.bias": (6,), "fc.weight": (4, 10), "fc.bias": (10,)}
    with pytest.raises(GraphcError) as err:
        check_matches(loaded, expected, source="runs/lenet.npz")
    text = str(err.value)
    assert "runs/lenet.npz" in text and "4 differences" in text
    assert "c1.weight: file [6, 1, 5, 5], model [6, 1, 3, 3]" in text
    assert "fc.weight: file [10, 4], model [4, 10]" in text
    assert "fc.bias: missing from the file (model [10])" in text
    assert "old.weight: in the file [2, 2], but the model has no such parameter" in text
    assert "c1.bias" not in text
    assert "help:" in text
    assert len(err.value.diagnostics[0].notes) == 4
    check_matches({"a": np.zeros(3)}, {"a": (3,)}, source="x")  # no error


def test_write_json_atomic(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"loss": [1.5, 0.5], "name": "ü"})
    assert json.loads(path.read_text("utf-8")) == {"loss": [1.5, 0.5], "name": "ü"}
    assert path.read_text("utf-8").endswith("\n")
    old = path.read_bytes()
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": {1, 2}})

    def boom(src, dst):
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(checkpoint.os, "replace", boom)
    with pytest.raises(GraphcError, match="Permission denied"):
        write_json_atomic(path, {"new": True})
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["metrics.json"]
