"""Feeds: user arrays -> arrays the plan can run on, or a clear error.

Input: a typed Graph and a dict of fed values (arrays, lists, numbers).
Output: arrays of the model's dtype (class labels as int64) with the batch
axis leading, and the batch size. A sample whose element count equals the
declared shape is reshaped to it (MNIST's 784 pixels feed [1, 28, 28]).
"""
from __future__ import annotations

import numpy as np

from graphc.compiler.graph import Graph
from graphc.diagnostics import GraphcError
from graphc.runtime.memory import check_memory
from graphc.tensor_type import CLASS, format_shape, num_elements


def check_feeds(graph: Graph, feeds: dict, dtype, *, need_labels: bool) -> tuple[dict, int]:
    """Return (converted feeds, batch size); raise GraphcError naming any bad input."""
    unknown = set(feeds) - set(graph.inputs) - set(graph.labels)
    if unknown:
        raise GraphcError(f"fed value `{sorted(unknown)[0]}` is not an input or label of `{graph.model}`",
                          help="inputs: " + ", ".join(graph.inputs + graph.labels))
    wanted = graph.inputs + (graph.labels if need_labels else [n for n in graph.labels if n in feeds])
    out, batch, first = {}, None, None
    for name in wanted:
        if name not in feeds:
            kind = "label" if name in graph.labels else "input"
            raise GraphcError(f"{kind} `{name}` is not fed", span=graph.node(name).span,
                              help=f"give a value for `{name}`")
        t = graph.node(name).declared
        try:
            arr = np.asarray(feeds[name])
        except (ValueError, TypeError):
            raise GraphcError(f"`{name}` is not an array of numbers") from None
        if arr.dtype.kind not in "biuf":
            raise GraphcError(f"`{name}` must hold numbers, got {arr.dtype}")
        per_sample = t.size
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.ndim == len(t.shape) and tuple(arr.shape) == t.shape:
            arr = arr.reshape((1, *t.shape))   # one sample without a batch axis
        n = arr.shape[0]
        if int(np.prod(arr.shape[1:], dtype=np.int64)) != per_sample:
            raise GraphcError(f"`{name}` is declared {t} per sample, but was fed an array of shape "
                              f"{format_shape(arr.shape)}",
                              span=graph.node(name).span,
                              help=f"feed shape [N, {', '.join(map(str, t.shape))}]".replace(", ]", "]")
                              if t.shape else "feed one number per sample")
        if batch is None:
            batch, first = n, name
        elif n != batch:
            raise GraphcError(f"`{name}` has {n} samples but `{first}` has {batch}",
                              help="every fed array must have the same batch size")
        if t.kind == CLASS:
            if arr.dtype.kind == "f" and not np.all(np.mod(arr, 1) == 0):
                raise GraphcError(f"label `{name}` must hold whole class numbers")
            arr = arr.reshape(n).astype(np.int64)
            if arr.size and (arr.min() < 0 or arr.max() >= t.classes):
                bad = int(arr[(arr < 0) | (arr >= t.classes)][0])
                raise GraphcError(f"label `{name}` holds class {bad}, outside [0, {t.classes})",
                                  span=graph.node(name).span,
                                  help=f"`{name}` is declared class[{t.classes}]")
        else:
            arr = np.ascontiguousarray(arr.reshape((n, *t.shape)), dtype=dtype)
        out[name] = arr
    if batch is None:
        batch = 1
    return out, batch


def random_feeds(graph: Graph, batch: int, seed: int, skip=()) -> dict:
    """Return seeded random values for every input and label not in `skip`.

    Float inputs are standard normal, class labels uniform over [0, K).
    """
    names = [n for n in graph.inputs + graph.labels if n not in skip]
    check_memory(sum(8 * batch * num_elements(graph.node(n).declared.shape) for n in names),
                 f"random inputs for a batch of {batch}")
    rng = np.random.default_rng(seed)
    feeds = {}
    for name in graph.inputs + graph.labels:
        if name in skip:
            continue
        t = graph.node(name).declared
        if t.kind == CLASS:
            feeds[name] = rng.integers(0, t.classes, batch)
        else:
            feeds[name] = rng.standard_normal((batch, *t.shape))
    return feeds
