"""NaN guard: a training step whose loss or gradients are not finite -> the node to blame.

Input: the typed Graph, the training Plan, the step's feeds, parameters,
running state and the noise generator's state before the step, and the loss
and gradients the step produced. Output: nothing when all are finite;
otherwise a GraphcError with the source line of the first node that produced
NaN or Inf (forward), or of the node whose backward rule turned a finite
gradient into a non-finite one. Nothing the model holds is changed.
"""
from __future__ import annotations

import numpy as np

from graphc.compiler.graph import Graph, trace_notes
from graphc.compiler.plan import Plan
from graphc.diagnostics import GraphcError
from graphc.runtime.execute import Executor, nonfinite_error


def check_step(graph: Graph, plan: Plan, dtype, *, feeds: dict, params: dict, state: dict, rng_state: dict,
               loss: float, grads: dict, where: str) -> None:
    """Return None when `loss` and every parameter gradient are finite; else raise the GraphcError naming
    the node that produced the NaN/Inf `where` (e.g. "in epoch 3, step 17")."""
    if not np.isfinite(loss):
        node = first_nonfinite(graph, plan, dtype, feeds=feeds, params=params, state=state,
                               rng_state=rng_state) or graph.loss
        raise nonfinite_error(graph, node, where)
    # A non-finite gradient with a finite loss (pow/log/div at a singular point) would poison
    # the weights and be blamed on the next step's first node: catch it here. Summing is the
    # cheap test; the exact one runs only when a sum is not finite.
    if any(not np.isfinite(np.sum(grads[p])) and not np.all(np.isfinite(grads[p])) for p in params if p in grads):
        raise nonfinite_gradient_error(graph, plan, params, grads, where)


def first_nonfinite(graph: Graph, plan: Plan, dtype, *, feeds: dict, params: dict, state: dict,
                    rng_state: dict) -> str | None:
    """Return the first node, in schedule order, whose output is NaN or Inf on this batch (None if none is).

    The batch is replayed through a copy of the training plan in which every step
    has a buffer of its own: the real plan reuses buffers, so after a full pass an
    early node's array may hold a later node's (non-finite) values and be blamed.
    The noise generator is restored to `rng_state` so dropout draws the same masks.
    """
    executor = Executor(graph, plan.without_reuse(), dtype)
    rng = np.random.default_rng()
    rng.bit_generator.state = rng_state
    # Running statistics are updated again by the replay; copies keep the model's own untouched.
    state = {k: v.copy() for k, v in state.items()}
    batch = next(iter(feeds.values())).shape[0] if feeds else 1   # no inputs: `data = none`
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        values = executor.forward(feeds, params, state, train=True, rng=rng, batch=batch)
    return executor.first_nonfinite(values)


def nonfinite_gradient_error(graph: Graph, plan: Plan, params: dict, grads: dict, where: str) -> GraphcError:
    """Return the error for a NaN/Inf gradient: it names the first node, in backward order, that
    received a finite gradient but passed a non-finite one on (else the first such parameter)."""

    def finite(name):
        return name not in grads or bool(np.all(np.isfinite(grads[name])))

    for b in plan.backward:
        if b.node in grads and finite(b.node) and any(need and not finite(t) for t, need in zip(b.targets, b.needs)):
            a = graph.node(b.node)
            return GraphcError(f"the gradient flowing back through `{b.node}` ({a.op_name}) became NaN or Inf {where}",
                               span=a.span, notes=trace_notes(a),
                               help="its backward rule is infinite at these inputs (log, pow or div near 0?); "
                                    "keep its inputs away from that point, or lower the learning rate")
    name = next(p for p in params if not finite(p))
    return GraphcError(f"the gradient of `{name}` became NaN or Inf {where}", span=graph.params[name].span,
                       help="lower the learning rate, check the data's scale, or check log/div/pow inputs")
