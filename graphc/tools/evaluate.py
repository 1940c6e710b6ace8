"""Evaluate once: `graphc run` on a model without training.

Input: a Program and `--feed NAME=VALUE` strings (or nothing: seeded random
data). Output: the text `graphc run` prints — each output's value, then the
gradient of the objective with respect to every input, parameter and
intermediate, in schedule order.
"""
from __future__ import annotations

import numpy as np

from graphc.diagnostics import GraphcError
from graphc.tensor_type import CLASS


def parse_feeds(program, feed_args: list[str]) -> dict:
    """Return the arrays `--feed NAME=VALUE` arguments give (a number or a comma list each)."""
    feeds = {}
    for item in feed_args:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise GraphcError(f"--feed {item!r} is not NAME=VALUE", help="e.g. --feed x=-2 or --feed x=1,2,3")
        if name not in program.graph.inputs + program.graph.labels:
            raise GraphcError(f"--feed names `{name}`, which is not an input or label",
                              help="inputs: " + ", ".join(program.graph.inputs + program.graph.labels))
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            raise GraphcError(f"--feed {name}={text}: not a number or a comma-separated list of numbers") from None
        t = program.graph.node(name)["declared"]
        per_sample = max(t.size, 1)
        if len(values) % per_sample:
            raise GraphcError(f"--feed {name}: {len(values)} numbers do not fill samples of shape {t}",
                              help=f"give a multiple of {per_sample} numbers")
        feeds[name] = np.array(values).reshape((-1, *t.shape)) if t.kind != CLASS else np.array(values)
    return feeds


def evaluate_once(program, feed_args: list[str], *, weights: str | None = None, seed: int = 0) -> str:
    """Return the report of one forward and backward pass on fed (or seeded random) data."""
    if weights:
        from graphc.training.weights import load_weights
        load_weights(program, weights)
    from graphc.runtime.feeds import random_feeds
    feeds = parse_feeds(program, feed_args)
    batch = next(iter(feeds.values())).shape[0] if feeds else 1
    drawn = random_feeds(program.graph, batch, seed, skip=set(feeds))
    random_names = list(drawn)
    feeds.update(drawn)
    lines = []
    if random_names:
        lines.append(f"(seeded random values for {', '.join(random_names)}; set them with --feed NAME=VALUE)")
    outputs = program.run(feeds)
    for name, value in outputs.items():
        lines.append(f"{name} = {_show(value)}")
    graph = program.graph
    if graph.objective is None:
        return "\n".join(lines)
    grads = program.gradients(feeds, intermediates=True)
    objective = "loss" if graph.loss else next(iter(graph.outputs))
    lines.append(f"gradient of {objective}:")
    order = [*graph.inputs, *[p for p in program.params if graph.params[p].role is None]]
    order += [n for n in graph.op_nodes() if n != graph.objective]
    order += [p for p in program.params if p not in order]
    for name in order:
        if name in grads:
            lines.append(f"  {name}: {_show(grads[name])}")
    return "\n".join(lines)


def _show(value) -> str:
    a = np.asarray(value)
    if a.size == 1:
        return f"{float(a.reshape(-1)[0]):g}"
    if a.size <= 12:
        return np.array2string(a.astype(np.float64), precision=4, separator=", ", suppress_small=True)
    return (f"array of shape [{', '.join(map(str, a.shape))}], mean {a.mean():.4g}, "
            f"min {a.min():.4g}, max {a.max():.4g}")
