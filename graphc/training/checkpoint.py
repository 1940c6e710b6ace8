"""Atomic, pickle-free weight and checkpoint files.

Input: name -> ndarray dicts (weights, optimizer state) plus JSON-serialisable
metadata. Output: uncompressed .npz files (readable by `np.load`) whose
metadata is stored as UTF-8 JSON bytes in a uint8 array under "__meta__";
and, on loading, the arrays and metadata back, or a GraphcError that says
which file is wrong and how.

Every write goes to a temporary file in the target's directory, is flushed
and fsync'd, and is then renamed over the target with `os.replace`, so a crash
at any moment leaves either the complete old file or the complete new one.
Nothing is ever pickled: arrays are written and read with allow_pickle=False.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import zipfile
import zlib

import numpy as np

from graphc.diagnostics import GraphcError, Note

META_KEY = "__meta__"
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # local file header; empty archive
# A fixed timestamp makes identical contents give byte-identical files.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def _fsync_dir(directory: str) -> None:
    # Makes the rename itself durable; not every platform/filesystem allows it.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(path, write) -> None:
    """Write a file through `write(binary_file)` atomically; returns None."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        # os.open with 0o666 (not mkstemp's 0o600) so the result gets the usual umask permissions.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise GraphcError(f"cannot write {path}: {e.strerror or e}",
                          help="check that the directory exists and is writable") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise GraphcError(f"cannot write {path}: {e.strerror or e}",
                              help="check free disk space and permissions; the previous file is unchanged") from e
        raise
    _fsync_dir(directory)


def save_arrays(path, arrays: dict[str, np.ndarray], meta: dict | None = None) -> None:
    """Atomically write `arrays` (and `meta`, JSON-serialisable) to the .npz file `path`; returns None.

    The file is written exactly at `path` (no ".npz" is appended). Raises
    ValueError/TypeError for names, object arrays or metadata that cannot be
    stored (caller bugs), GraphcError when the file cannot be written.
    """
    prepared: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not name or name == META_KEY:
            raise ValueError(f"array name {name!r} is empty, not a string, or the reserved {META_KEY!r}")
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise TypeError(f"array {name!r} has object dtype; only plain numeric arrays can be saved")
        prepared[name] = array
    if meta is not None:
        if not isinstance(meta, dict):
            raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
        text = json.dumps(meta, ensure_ascii=False)
        prepared[META_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    def write(f) -> None:
        # Same layout as np.savez (stored .npy members, zip64 allowed) without its keyword-name clashes.
        with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, array in prepared.items():
                info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_DATE)
                with zf.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)

    _atomic_write(path, write)


def _bad(path: str, what: str, help: str) -> GraphcError:
    return GraphcError(f"{path}: {what}", help=help)


_REWRITE = "the file is damaged or not a graphc weights/checkpoint file; save it again or use another copy"


def _open_checked(path: str):
    """Return the file opened for binary reading, once its first bytes look like a zip archive."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise _bad(path, "no such file", "check the path; weights are written by training") from None
    except IsADirectoryError:
        raise _bad(path, "is a directory, not a .npz file", "give the path of the .npz file") from None
    except OSError as e:
        raise _bad(path, f"cannot read: {e.strerror or e}", "check the file's permissions") from None
    with contextlib.ExitStack() as on_error:
        on_error.callback(f.close)
        head = f.read(len(_NPY_MAGIC))
        if not head:
            raise _bad(path, "file is empty", _REWRITE)
        if head.startswith(_NPY_MAGIC):
            raise _bad(path, "is a single .npy array, not a .npz archive of named arrays", _REWRITE)
        if not head.startswith(_ZIP_MAGICS):
            raise _bad(path, "is not a .npz archive (no zip signature at the start)", _REWRITE)
        f.seek(0)
        on_error.pop_all()
    return f


def load_arrays(path) -> tuple[dict[str, np.ndarray], dict]:
    """Return (arrays, meta) read from the .npz file `path` without unpickling anything.

    `meta` is {} when the file has none. A missing, empty, truncated or corrupt
    file, a non-npz file, or one holding object arrays raises GraphcError
    naming the file and the problem.
    """
    path = os.fspath(path)
    arrays: dict[str, np.ndarray] = {}
    key = None
    # np.load gets our own file object: given a path, numpy leaks the handle when the zip is bad.
    try:
        with _open_checked(path) as f, np.load(f, allow_pickle=False) as npz:
            for key in npz.files:
                value = npz[key]
                if not isinstance(value, np.ndarray):
                    raise _bad(path, f"member '{key}' is not a .npy array", _REWRITE)
                arrays[key] = value
    except GraphcError:
        raise
    except ValueError as e:
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            raise _bad(path, f"array '{key}' holds Python objects (object dtype), which graphc never loads",
                       "graphc files hold only numeric arrays; re-save the data as plain numeric arrays") from None
        raise _bad(path, _where(key) + f"is corrupt ({e})", _REWRITE) from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError, RuntimeError) as e:
        raise _bad(path, _where(key) + f"is truncated or corrupt ({e})", _REWRITE) from None
    raw = arrays.pop(META_KEY, None)
    if raw is None:
        return arrays, {}
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError("not a 1-D uint8 array")
        meta = json.loads(raw.tobytes().decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        raise _bad(path, f"metadata '{META_KEY}' is corrupt ({e})", _REWRITE) from None
    return arrays, meta


def _where(key) -> str:
    return f"array '{key}' " if key is not None else "file "


def _fmt(shape) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def check_matches(loaded: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]], *,
                  source: str) -> None:
    """Return None when `loaded` has exactly the names and shapes in `expected`.

    Otherwise raise one GraphcError whose notes list every difference: names
    the model needs but `source` lacks, names in `source` the model does not
    have, and shape mismatches as "c1.weight: file [6, 1, 5, 5], model [6, 1, 3, 3]".
    """
    notes = [Note(f"{name}: missing from the file (model {_fmt(shape)})")
             for name, shape in expected.items() if name not in loaded]
    notes += [Note(f"{name}: in the file {_fmt(np.shape(array))}, but the model has no such parameter")
              for name, array in loaded.items() if name not in expected]
    notes += [Note(f"{name}: file {_fmt(np.shape(loaded[name]))}, model {_fmt(shape)}")
              for name, shape in expected.items()
              if name in loaded and tuple(np.shape(loaded[name])) != tuple(shape)]
    if notes:
        count = f"{len(notes)} difference{'s' if len(notes) != 1 else ''}"
        raise GraphcError(f"{source} does not match the model ({count})", notes=tuple(notes),
                          help="load weights saved from this same model, or retrain after changing it")


def write_json_atomic(path, obj) -> None:
    """Atomically write `obj` as indented JSON (plus a newline) to `path`; returns None.

    Raises TypeError if `obj` is not JSON-serialisable (nothing is written then),
    GraphcError when the file cannot be written.
    """
    data = (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    _atomic_write(path, lambda f: f.write(data))
