"""Atomic, pickle-free weight and checkpoint files, and resuming training from them.

Input: name -> ndarray dicts (weights, optimizer state) plus JSON-serialisable
metadata. Output: uncompressed .npz files (readable by `np.load`) whose
metadata is stored as UTF-8 JSON bytes in a uint8 array under "__meta__";
and, on loading, the arrays and metadata back, or a GraphcError that says
which file is wrong and how.

Every write goes to a temporary file in the target's directory, is flushed
and fsync'd, and is then renamed over the target with `os.replace`, so a crash
at any moment leaves either the complete old file or the complete new one.
Nothing is ever pickled: arrays are written and read with allow_pickle=False.

On top of that: a Program's weights <-> `weights.npz` (save_weights,
load_weights), and the training checkpoint — parameters, running state,
optimizer state and the loop's progress — written after epochs and restored
by `--resume` only when the model and the train settings that shape the
numbers (the fingerprint) are the same (save_checkpoint, load_checkpoint).
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
from graphc.training.bounded import check_npz_sizes
from graphc.training.optim import format_call

META_KEY = "__meta__"
CHECKPOINT = "checkpoint.npz"
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


def atomic_write(path, write) -> None:
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

    atomic_write(path, write)


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
        with _open_checked(path) as f:
            check_npz_sizes(f)   # before numpy allocates what a header claims
            with np.load(f, allow_pickle=False) as npz:
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
        # Our own messages name the array; numpy's may quote header bytes, so only its kind is shown.
        detail = str(e) if str(e).startswith("array '") else type(e).__name__
        raise _bad(path, _where(key) + f"is corrupt ({detail})", _REWRITE) from None
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


def check_values(loaded: dict[str, np.ndarray], targets: dict[str, np.ndarray], *, source: str) -> None:
    """Return None when every array of `loaded` that `targets` names has a usable dtype and values.

    A float target needs a real floating-point array of finite values (not a
    string, structured, complex, datetime or bool array; no NaN or Inf); an
    integer target (an optimizer's step counter) needs non-negative integers.
    Otherwise raise one GraphcError whose notes name every bad array.
    """
    notes = []
    for name, target in targets.items():
        if name not in loaded:
            continue
        array = loaded[name]
        if target.dtype.kind == "f":
            if array.dtype.kind != "f":
                notes.append(Note(f"{name}: holds {array.dtype} values, not floating-point numbers"))
            elif not np.all(np.isfinite(array)):
                bad = int(array.size - np.count_nonzero(np.isfinite(array)))
                notes.append(Note(f"{name}: {bad} of {array.size} values are NaN or infinite"))
        elif target.dtype.kind in "iu":
            if array.dtype.kind not in "iu":
                notes.append(Note(f"{name}: holds {array.dtype} values, not integers"))
            elif array.size and int(array.min()) < 0:
                notes.append(Note(f"{name}: holds a negative count"))
    if notes:
        raise GraphcError(f"{source} holds unusable values ({len(notes)} array{'s' if len(notes) != 1 else ''})",
                          notes=tuple(notes),
                          help="the file is damaged or was written by a diverged run; use another copy or retrain")


def write_json_atomic(path, obj) -> None:
    """Atomically write `obj` as indented JSON (plus a newline) to `path`; returns None.

    Raises TypeError if `obj` is not JSON-serialisable (nothing is written then),
    GraphcError when the file cannot be written.
    """
    data = (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


# ---- weights --------------------------------------------------------------------------------

def save_weights(program, path, meta: dict | None = None) -> None:
    """Write the program's parameters and state to `path` atomically; returns None."""
    arrays = {**program.params, **program.state}
    save_arrays(path, arrays, {"model": program.graph.model, **(meta or {})})


def load_weights(program, path) -> dict:
    """Load parameters and state from `path` into the program (in place); return the file's metadata.

    `path` may also be a training checkpoint (checkpoint.npz): its `param/` and
    `state/` arrays are loaded and its optimizer state is ignored.
    """
    arrays, meta = load_arrays(path)
    if any(k.startswith("param/") for k in arrays):
        # A checkpoint names arrays "param/<name>", "state/<name>", "opt/<...>": weights are the first two.
        arrays = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(("param/", "state/"))}
    expected = {name: tuple(a.shape) for name, a in {**program.params, **program.state}.items()}
    check_matches(arrays, expected, source=str(path))
    check_values(arrays, {**program.params, **program.state}, source=str(path))
    for name, target in {**program.params, **program.state}.items():
        np.copyto(target, arrays[name].astype(target.dtype, copy=False))
    return meta


# ---- training checkpoints -----------------------------------------------------------------------

def checkpoint_arrays(program, optimizer) -> dict[str, np.ndarray]:
    """Return every array needed to continue training exactly: param/, state/ and opt/ names."""
    arrays = {f"param/{k}": v for k, v in program.params.items()}
    arrays.update({f"state/{k}": v for k, v in program.state.items()})
    arrays.update({f"opt/{k}": v for k, v in optimizer.state_arrays().items()})
    return arrays


def save_checkpoint(path, program, optimizer, *, fingerprint: dict, progress: dict) -> None:
    """Atomically write the checkpoint: the arrays, the fingerprint and the loop's `progress`
    (epoch, history, best_val, stale_epochs, lr: JSON values); returns None."""
    meta = {"model": program.graph.model, **progress, "config": fingerprint}
    save_arrays(path, checkpoint_arrays(program, optimizer), meta)


def load_checkpoint(path, program, optimizer, *, fingerprint: dict) -> dict:
    """Restore parameters, state and optimizer from the checkpoint at `path` (in place); return its
    progress metadata (epoch, history, best_val, stale_epochs).

    Raises GraphcError when there is no checkpoint, it is not one, another model
    wrote it, its fingerprint differs from `fingerprint` (a note per differing
    setting), or its arrays do not match the model.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise GraphcError(f"nothing to resume: {path} does not exist",
                          help="run without --resume first, or pass the --out of the earlier run")
    arrays, meta = load_arrays(path)
    if not isinstance(meta.get("config"), dict) or not _is_int(meta.get("epoch")):
        # e.g. a weights.npz copied over the checkpoint: it records no epoch or settings to continue from.
        raise GraphcError(f"{path} is not a training checkpoint (it records no epoch or train settings)",
                          help="resume from the checkpoint.npz a run wrote, or start afresh without --resume")
    model = program.graph.model
    if meta.get("model") != model:
        raise GraphcError(f"{path} was written by model `{meta.get('model')}`, not `{model}`",
                          help="resume with the same file, or start afresh without --resume")
    now = jsonable(fingerprint)
    saved = meta["config"]
    if saved != now:
        # Say which settings differ: "different settings" alone leaves the user guessing.
        notes = tuple(Note(f"{key}: checkpoint {_show_setting(saved.get(key))}, now {_show_setting(now.get(key))}")
                      for key in dict.fromkeys([*now, *saved]) if saved.get(key) != now.get(key))
        raise GraphcError(f"{path} was written with different train settings", notes=notes,
                          help="resume with the same settings (only `epochs` and `early_stop` may change), "
                               "or start afresh without --resume")
    progress = _checkpoint_progress(path, meta)
    targets = checkpoint_arrays(program, optimizer)
    expected = {k: tuple(v.shape) for k, v in targets.items() if not k.startswith("opt/")}
    check_matches({k: v for k, v in arrays.items() if not k.startswith("opt/")}, expected, source=path)
    check_values(arrays, targets, source=path)
    for key, target in targets.items():
        if key.startswith(("param/", "state/")):
            np.copyto(target, arrays[key])
    optimizer.load_state_arrays({k[4:]: v for k, v in arrays.items() if k.startswith("opt/")})
    return progress


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _checkpoint_progress(path: str, meta: dict) -> dict:
    """Return the checked progress metadata of a checkpoint: epoch, history, best_val, stale_epochs."""
    history = meta.get("history", [])
    best_val = meta.get("best_val")
    stale = meta.get("stale_epochs", 0)
    problems = []
    if meta["epoch"] < 0:
        problems.append(f"epoch is {meta['epoch']}")
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        problems.append("history is not a list of per-epoch records")
    if best_val is not None and (isinstance(best_val, bool) or not isinstance(best_val, (int, float))
                                 or not np.isfinite(best_val)):
        problems.append("best_val is not a finite number")
    if not _is_int(stale) or stale < 0:
        problems.append("stale_epochs is not a non-negative whole number")
    if problems:
        raise GraphcError(f"{path} holds a damaged training record: {'; '.join(problems)}",
                          help="the file was changed by hand or damaged; start afresh without --resume")
    return {"epoch": meta["epoch"], "history": history, "best_val": best_val, "stale_epochs": stale}


def jsonable(obj):
    """Return `obj` as it reads back from JSON (tuples become lists), to compare with stored metadata."""
    return json.loads(json.dumps(obj))


def _show_setting(value) -> str:
    """Return a fingerprint value as the user wrote it: `64`, `adam(lr=0.001)`, `(absent)`."""
    if value is None:
        return "(absent)"
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], dict):
        return format_call(value[0], value[1])
    return str(value)
