"""Memory budget: refuse an allocation no machine here can hold, with the numbers, before making it.

Input: the bytes a step is about to allocate (a plan's buffers at a batch size,
the parameters, generated feeds). Output: nothing, or a GraphcError saying how
many bytes were needed and what the limit is. The limit is GRAPHC_MEMORY_LIMIT
(bytes, or with a K/M/G/T suffix: powers of 1024) when set, else the machine's
physical memory (os.sysconf), lowered to the address-space limit (`ulimit -v`)
when one is set: what no amount of waiting would free.
Without it, `input x: [100000, 100000]` ends in NumPy's MemoryError (a traceback)
or in the kernel's OOM killer after swapping.
"""
from __future__ import annotations

import os
import resource

from graphc.diagnostics import GraphcError

MEMORY_ENV = "GRAPHC_MEMORY_LIMIT"
_SUFFIXES = {"": 1, "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}


def memory_limit() -> int:
    """Return the bytes graphc may allocate: GRAPHC_MEMORY_LIMIT, else physical memory (and `ulimit -v`)."""
    text = os.environ.get(MEMORY_ENV, "").strip()
    if text:
        return _parse_bytes(text)
    limit = _physical_bytes()
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limit = min(limit, soft)
    return limit


def check_memory(needed: int, what: str) -> None:
    """Return None when `needed` bytes fit the limit; else raise GraphcError naming both numbers."""
    limit = memory_limit()
    if needed > limit:
        raise GraphcError(f"{what} would need {format_bytes(needed)} ({needed:,} bytes), "
                          f"more than the limit of {format_bytes(limit)} ({limit:,} bytes)",
                          help=f"use a smaller batch or smaller shapes; {MEMORY_ENV}=BYTES (e.g. 64G) sets the limit")


def format_bytes(n: int) -> str:
    """Return n bytes in binary units with three significant digits: `74.5 GiB`."""
    value, unit = float(n), "bytes"
    for name in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024:
            break
        value, unit = value / 1024, name
    return f"{n} bytes" if unit == "bytes" else f"{value:.3g} {unit}"


def _parse_bytes(text: str) -> int:
    upper = text.upper().removesuffix("IB").removesuffix("B")
    suffix = upper[-1:] if upper[-1:] in _SUFFIXES else ""
    number = upper[:len(upper) - len(suffix)].strip()
    try:
        value = float(number) * _SUFFIXES[suffix]
    except ValueError:
        value = -1.0
    if not 0 < value < 2 ** 63:
        raise GraphcError(f"{MEMORY_ENV}={text!r} is not a size in bytes",
                          help="write bytes, or a number with K, M, G or T (powers of 1024), e.g. 16G")
    return int(value)


def _physical_bytes() -> int:
    # The machine's memory, not what is free this instant: free memory moves with other
    # processes and the page cache, and a limit that moved with it would fail runs at random.
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2 ** 63 - 1   # unknown: no limit rather than a wrong one
