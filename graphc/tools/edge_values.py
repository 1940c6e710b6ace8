"""Edge values: a Program and fed inputs -> the number on every arrow of `graphc viz --feed`.

Input: a Program (fresh, or with loaded weights) and feeds for some inputs (the rest are drawn
seeded random, as `graphc run --feed` does). Output: `EdgeNumbers`: the value of every node
(forward arrows), the gradient each backward rule sends along each of its arrows (one per
(node, target) pair: what that gate hands back), and the total gradient of every value (the
fan-in sum of its arrows), all from one forward and backward pass in inference mode over the
plan `graphc viz` draws. micrograd's picture, for any graph.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphc.compiler.plan import compiled_plan
from graphc.runtime.execute import Executor
from graphc.runtime.feeds import random_feeds


@dataclass
class EdgeNumbers:
    """values: node -> its value; edge_grads: (node, target) -> the gradient that node's rule sends to
    target; grads: value -> d objective / d value (the sum over its gradient arrows); random: the inputs
    that were not fed and were drawn seeded random."""

    values: dict
    edge_grads: dict
    grads: dict
    random: list


def edge_numbers(program, feeds: dict, *, seed: int = 0) -> EdgeNumbers:
    """Return the EdgeNumbers of one inference-mode pass on `feeds` (missing inputs and labels seeded random)."""
    graph = program.graph
    feeds = dict(feeds)
    batch = next(iter(feeds.values())).shape[0] if feeds else 1
    drawn = random_feeds(graph, batch, seed, skip=set(feeds))
    feeds.update(drawn)
    schedule = compiled_plan(graph, backward=True)   # the plan `graphc viz` draws, its node names
    # Every step its own buffer: the picture shows every value, and later steps must not overwrite them.
    executor = Executor(graph, schedule.without_reuse(), program.dtype)
    checked, batch = program.check_feeds(feeds, need_labels=graph.loss is not None)
    state = {k: v.copy() for k, v in program.state.items()}
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        values = executor.forward(checked, program.params, state, train=False, rng=np.random.default_rng(seed),
                                  batch=batch)
        edge_grads, grads = _backward_per_edge(graph, executor, values, batch) if graph.objective else ({}, {})
    return EdgeNumbers({k: np.array(v) for k, v in values.items()}, edge_grads, grads, list(drawn))


def _backward_per_edge(graph, executor: Executor, values: dict, batch: int) -> tuple[dict, dict]:
    """Return (per-arrow gradients, totals): Executor.backward's loop, keeping each rule's result per arrow
    (the executor keeps only the sums) and seeded as `Program.forward_backward` seeds it."""
    plan = executor.plan
    objective = values[plan.objective]
    per_sample = graph.loss is not None and graph.type_of(plan.objective).batched
    seed = np.full(objective.shape, 1.0 / batch if per_sample else 1.0, executor.dtype)
    ctx_of = {s.node: c for s, c in zip(plan.forward, executor._ctxs)}   # the forward pass just run
    grads, edge_grads = {plan.objective: seed}, {}
    for b, op in zip(plan.backward, executor.back_ops):
        g = grads.get(b.node)
        if g is None:
            continue
        args = [values[t] for t in b.targets] if op.saves in ("inputs", "both") else None
        out = values[b.node] if op.saves in ("output", "both") else None
        for target, need, r in zip(b.targets, b.needs, op.backward(ctx_of[b.node], g, args, out)):
            if not need or r is None:
                continue
            r = np.array(r)   # rules may return views of their buffers
            key = (b.node, target)
            # x * x sends two gradients along one arrow: the arrow carries their sum.
            edge_grads[key] = edge_grads[key] + r if key in edge_grads else r
            grads[target] = grads[target] + r if target in grads else r
    return edge_grads, grads
