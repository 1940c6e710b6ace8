"""A pause of Python's cycle collector around compiling, and why it pays.

Input: nothing. Output: the `no_cycle_collection()` context manager that
`graphc.program` wraps around parse -> build -> infer.
"""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# After a check that left more new objects than this, collect at once (see below).
COLLECT_AFTER = 200_000


@contextmanager
def no_cycle_collection() -> Iterator[None]:
    """Pause Python's cycle collector while checking (reference counting still frees memory); yield None.

    The front end allocates a few objects per token and per node and keeps
    nearly all of them; each collection those allocations trigger walks them
    all again, which made checking a 50,000-node model ~40% slower and grow
    faster than linearly. Checking makes almost no reference cycles (a few
    per syntax error), so nothing piles up meanwhile. Left alone, the
    collector would then walk the new objects several times as they age
    through its generations; after a large check one full collection right
    away costs less. Nested uses (check_file -> check_modules) pause once.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        if gc.get_count()[0] > COLLECT_AFTER:
            gc.collect()
