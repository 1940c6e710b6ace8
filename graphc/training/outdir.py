"""The output folder of a training run: created with clear errors, and locked while a run writes to it.

Input: the path the user gave (`--out`, or `out_dir` of `train`). Output: the
folder, existing and writable, or a GraphcError saying why not (a file is in
the way, a parent is a file, no permission). `out_dir_lock` holds an exclusive
`flock` on `<out>/.lock` for the run: a second run into the same folder fails
at once with a diagnostic naming the first run's process id, instead of both
writing checkpoints over each other. The kernel drops the lock when the process
ends, however it ends (even SIGKILL), so a stale `.lock` file never blocks;
the next run into the folder deletes the temporary files a killed run left.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from graphc.diagnostics import GraphcError

try:
    import fcntl
except ImportError:   # not POSIX (Windows): runs are simply not locked
    fcntl = None

LOCK_FILE = ".lock"


def prepare_out_dir(path) -> Path:
    """Return `path` as a Path after creating it (and its parents); GraphcError when that is impossible."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise GraphcError(f"output folder {out} is a file, not a folder",
                          help="give --out a folder name (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise GraphcError(f"cannot create output folder {out}: a part of the path is a file",
                          help="give --out a path whose parents are folders") from None
    except NotADirectoryError:
        raise GraphcError(f"cannot create output folder {out}: a part of the path is a file, not a folder",
                          help="give --out a path whose parents are folders") from None
    except OSError as e:
        raise GraphcError(f"cannot create output folder {out}: {e.strerror or e}",
                          help="choose a folder you can write to with --out") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise GraphcError(f"output folder {out} is not writable",
                          help="choose a folder you can write to with --out, or fix its permissions")
    return out


def remove_stale_temporaries(out: Path) -> None:
    """Delete the half-written `.<name>.<pid>.<hex>.tmp` files (see checkpoint.atomic_write) that a killed
    run left in `out`; returns None. Call it only while holding the folder's lock: then no other
    process is writing there, so every such file of another process is a leftover."""
    for path in out.glob(".*.tmp"):
        parts = path.name.split(".")
        if len(parts) >= 4 and parts[-3].isdigit() and int(parts[-3]) != os.getpid():
            with contextlib.suppress(OSError):
                path.unlink()


@contextlib.contextmanager
def out_dir_lock(out: Path):
    """Hold an exclusive lock on the output folder `out` for the `with` block; yields None.

    Raises GraphcError naming the other process when another run holds it.
    """
    if fcntl is None:
        yield
        return
    path = Path(out) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise GraphcError(f"cannot create {path}: {e.strerror or e}",
                          help="choose a folder you can write to with --out") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode("ascii", "replace").strip()
            other = text if text.isdigit() else "unknown"   # only digits: never echo a file's bytes
            raise GraphcError(f"another graphc run (pid {other}) is writing to {out}",
                              help="wait for it to finish, or train into another folder with --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        remove_stale_temporaries(Path(out))
        yield
    finally:
        os.close(fd)   # closing releases the lock
