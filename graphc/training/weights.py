"""Weights: a Program's parameters and running state <-> a `.npz` file.

Input: a Program and a path. Output: `weights.npz` written atomically
(parameters and running statistics under their graph names, no pickle), or
arrays loaded into the Program after checking that every name and shape
matches — a mismatch is an error listing each difference.
"""
from __future__ import annotations

import numpy as np

from graphc.training.checkpoint import check_matches, load_arrays, save_arrays


def save_weights(program, path, meta: dict | None = None) -> None:
    """Write the program's parameters and state to `path` atomically."""
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
    for name, target in {**program.params, **program.state}.items():
        np.copyto(target, arrays[name].astype(target.dtype, copy=False))
    return meta
