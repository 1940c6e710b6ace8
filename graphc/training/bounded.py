"""Bounded reads: check what a file's header claims before allocating for it.

Input: an open .npz archive (a zip of .npy members), or the size of a gzip file. Output:
nothing when every header is consistent with the bytes that are really there;
otherwise a ValueError saying which member claims what (the caller wraps it in
a GraphcError naming the file). Nothing of the file's content is echoed.

Why: numpy allocates the array a .npy header describes before reading its
data, so a 200-byte member claiming 10^12 rows asks for terabytes; a gzip
bomb decompresses a few kilobytes into gigabytes. Deflate cannot expand data
more than 1032-fold, so a compressed member's real size is bounded by its
compressed size, and a stored member's by the archive's length.
"""
from __future__ import annotations

import math
import os
import zipfile

import numpy as np

# Deflate's largest expansion is 1032:1; a little slack for headers.
DEFLATE_RATIO = 1032
_SLACK = 1 << 16


def check_npz_sizes(f) -> None:
    """Return None when every .npy member of the zip archive `f` (a binary file) claims at most
    the bytes it holds; else raise ValueError naming the member. `f` is left at offset 0."""
    f.seek(0, os.SEEK_END)
    length = f.tell()
    f.seek(0)
    with zipfile.ZipFile(f) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[:-4]
            if info.compress_type == zipfile.ZIP_STORED:
                bound = min(info.file_size, length)
            else:
                bound = min(info.file_size, deflate_bound(info.compress_size))
            with zf.open(info) as member:
                shape, dtype = _npy_header(member, name)
            if dtype.hasobject:
                continue   # numpy refuses these itself (allow_pickle=False), with a clearer message
            claimed = math.prod(shape) * dtype.itemsize
            if claimed > bound:
                raise ValueError(f"array '{name}' claims shape {list(shape)} of {dtype} ({claimed:,} bytes) "
                                 f"but the archive holds at most {bound:,} bytes for it")
    f.seek(0)


def _npy_header(member, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """Return (shape, dtype) from the header of a .npy stream (ValueError when it is not one)."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(member)
        elif version in ((2, 0), (3, 0)):
            shape, _, dtype = fmt.read_array_header_2_0(member)
        else:
            raise ValueError("unknown .npy version")
    except Exception as e:  # noqa: BLE001 -- numpy's header parser raises ValueError, SyntaxError,
        # tokenize.TokenError, ... for hostile bytes; its message may quote them: name only the kind.
        raise ValueError(f"array '{name}' has a malformed .npy header ({type(e).__name__})") from None
    if any(int(d) < 0 for d in shape):
        raise ValueError(f"array '{name}' has a malformed .npy header (a negative dimension)")
    return tuple(int(d) for d in shape), np.dtype(dtype)


def deflate_bound(compressed_bytes: int) -> int:
    """Return the most bytes `compressed_bytes` of deflate (zip or gzip) data can decompress to."""
    return compressed_bytes * DEFLATE_RATIO + _SLACK
