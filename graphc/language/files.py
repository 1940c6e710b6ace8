"""`.nn` files on disk: read safely, written atomically.

Input: a path (the file named on the command line, or one an `include` names).
Output: its text, or an `UnreadableSource` saying why in words; a file (a
formatted program, a picture) replaced atomically. A `.nn` file is a regular
UTF-8 text file of at most MAX_SOURCE_BYTES; anything else is refused before
it is read: a directory, a device such as /dev/zero, a FIFO (which would
block forever), a binary or non-UTF-8 file (whose bytes are never echoed). A UTF-8 byte-order mark at the
start is skipped, as editors on Windows write one.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

# Every shipped model is under 2 KB and a generated 10,000-node chain about 0.3 MB;
# the cap only keeps a mistaken path from filling memory.
MAX_SOURCE_BYTES = 4 * 1024 * 1024
_BOM = "\ufeff"


class UnreadableSource(Exception):
    """A path that names no readable `.nn` text; `reason` completes "FILE ...", `help` says what to do."""

    def __init__(self, reason: str, help: str = "check the path and that the file is UTF-8 text"):
        super().__init__(reason)
        self.reason, self.help = reason, help


def read_source(path: str | Path) -> str:
    """Return the text of the `.nn` file at `path` (newlines as `\\n`, a leading byte-order mark removed).

    Raises UnreadableSource when the path is missing, not a regular file, larger
    than MAX_SOURCE_BYTES, binary or not UTF-8.
    """
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer. It
        # changes nothing for a regular file, and fstat below refuses everything else.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise UnreadableSource("not found") from None
    except IsADirectoryError:
        raise UnreadableSource("is a directory, not a file") from None
    except OSError as error:
        raise UnreadableSource(f"cannot be opened: {error.strerror or error}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise UnreadableSource("is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableSource("is not a regular file (a device, FIFO or socket)")
        chunks, size = [], 0
        while size <= MAX_SOURCE_BYTES:
            chunk = os.read(fd, MAX_SOURCE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    except OSError as error:
        raise UnreadableSource(f"cannot be read: {error.strerror or error}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_SOURCE_BYTES:
        raise UnreadableSource(f"is larger than {MAX_SOURCE_BYTES // (1024 * 1024)} MB",
                               "a `.nn` file is a short text; check the path")
    if b"\0" in data:
        raise UnreadableSource("is a binary file, not `.nn` text", "check the path")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise UnreadableSource(f"is not UTF-8 text (an invalid byte on line {line})",
                               "save the file as UTF-8") from None
    # Universal newlines, as Path.read_text reads them: a CRLF or CR file parses and formats like an LF one.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text[1:] if text.startswith(_BOM) else text


def write_atomically(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file in the same folder and `os.replace`; return None.

    A crash or a full disk leaves the old file whole, never half of the new one.
    An existing file keeps its permission bits.
    """
    path = Path(path)
    mode = stat.S_IMODE(os.stat(path).st_mode) if path.exists() else None
    fd, scratch = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        # mkstemp makes the file 0600; a new file gets the usual bits (0666 less the umask).
        os.chmod(scratch, mode if mode is not None else 0o666 & ~_umask())
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """Return the process's umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
