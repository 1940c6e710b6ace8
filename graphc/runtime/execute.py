"""Execute: a Plan + parameters + feeds -> values and gradients, on NumPy.

Input: the typed Graph, a Plan, parameter and state arrays, and fed arrays.
Output: the value of every planned node and, when asked, the gradient of the
objective with respect to every value that carries one. Each forward step
calls its op's kernel with the planned output buffer; each backward step
calls its op's backward rule, and gradients that fan in to one value are
summed (the add gate, reversed). The NaN guard names the first node whose
output is not finite, with its source line.
"""
from __future__ import annotations

import time

import numpy as np

from graphc.compiler.graph import Graph, trace_notes
from graphc.compiler.plan import Plan
from graphc.diagnostics import GraphcError
from graphc.ops import Ctx
from graphc.runtime.memory import check_memory


class _StepInfo:
    """What a forward step needs at run time, computed once per plan."""

    __slots__ = ("op", "attrs", "in_types", "out_type", "state", "needs", "args", "output")

    def __init__(self, graph: Graph, step, needs):
        node = graph.node(step.node)
        self.op = node.op
        self.attrs = node.attrs
        self.in_types = [graph.type_of(i) for i in step.inputs]
        self.out_type = node.type
        self.state = node.state
        self.needs = needs
        self.args = step.inputs + step.params
        self.output = step.output


class Executor:
    """Runs one plan; buffers are allocated once per batch size and reused."""

    def __init__(self, graph: Graph, plan: Plan, dtype: np.dtype):
        # A rewritten plan names the nodes of its own graph (compiler/rewrite.py): run that one.
        graph = plan.graph if plan.graph is not None else graph
        self.graph, self.plan, self.dtype = graph, plan, np.dtype(dtype)
        needs = {b.node: tuple(b.needs) for b in plan.backward}
        self.steps = [_StepInfo(graph, s, needs.get(s.node, ())) for s in plan.forward]
        self.back_ops = [graph.node(b.node).op for b in plan.backward]   # resolved once, not per step
        self.constants = {n.name: np.asarray(n.value, self.dtype) for n in graph.nodes() if n.kind == "const"}
        self._outs: dict[int, list] = {}
        self._ctxs: list[Ctx] = []

    def _out_views(self, batch: int) -> list:
        views = self._outs.get(batch)
        if views is None:
            check_memory(self.plan.peak_bytes(batch, self.dtype.itemsize),
                         f"running `{self.graph.model}` on a batch of {batch}")
            flat = [np.empty(b.elements * (batch if b.batched else 1), self.dtype) for b in self.plan.buffers]
            views = []
            for s, info in zip(self.plan.forward, self.steps):
                if s.buffer is None:
                    views.append(None)
                else:
                    shape = info.out_type.runtime_shape(batch)
                    n = int(np.prod(shape, dtype=np.int64))
                    views.append(flat[s.buffer][:n].reshape(shape))
            self._outs = {batch: views}   # keep one batch size: the last one used
        return views

    def forward(self, feeds: dict, params: dict, state: dict, *, train: bool, rng, batch: int,
                profile: dict | None = None) -> dict:
        """Return every planned value (feeds, params and constants included).

        With `profile`, add each step's seconds to profile[node] (graphc bench).
        """
        values = dict(self.constants)
        values.update(feeds)
        values.update(params)
        outs = self._out_views(batch)
        ctxs = []
        for info, out in zip(self.steps, outs):
            st = {role: state[name] for role, name in info.state.items()}
            ctx = Ctx(info.attrs, info.in_types, info.out_type, train=train, state=st, rng=rng,
                      needs=info.needs, out=out)
            if profile is None:
                values[info.output] = info.op.forward(ctx, *[values[a] for a in info.args])
            else:
                started = time.perf_counter()
                values[info.output] = info.op.forward(ctx, *[values[a] for a in info.args])
                profile[info.output] = profile.get(info.output, 0.0) + time.perf_counter() - started
            ctxs.append(ctx)
        self._ctxs = ctxs
        return values

    def backward(self, values: dict, seed: np.ndarray, profile: dict | None = None) -> dict:
        """Return d objective / d value for every value that carries a gradient.

        Must follow `forward` on the same values (it reads the steps' contexts).
        With `profile`, add each step's seconds (rule and fan-in sums) to profile[node].
        """
        plan = self.plan
        ctx_of = {s.node: c for s, c in zip(plan.forward, self._ctxs)}
        grads = {plan.objective: seed}
        owned: set[str] = set()
        for b, op in zip(plan.backward, self.back_ops):
            g = grads.get(b.node)
            if g is None:
                continue
            args = [values[t] for t in b.targets] if op.saves in ("inputs", "both") else None
            out = values[b.node] if op.saves in ("output", "both") else None
            started = time.perf_counter() if profile is not None else 0.0
            results = op.backward(ctx_of[b.node], g, args, out)
            for target, need, r in zip(b.targets, b.needs, results):
                if not need or r is None:
                    continue
                if target not in grads:
                    grads[target] = r
                elif target in owned:
                    grads[target] += r
                else:
                    # Fan-in: the add gate reversed. Never write into an array a rule returned.
                    grads[target] = grads[target] + r
                    owned.add(target)
            if profile is not None:
                profile[b.node] = profile.get(b.node, 0.0) + time.perf_counter() - started
        return grads

    def first_nonfinite(self, values: dict) -> str | None:
        """Return the first node (in schedule order) whose output is not finite, or None.

        Reliable only on a plan without buffer reuse (Plan.without_reuse).
        """
        for info in self.steps:
            v = values.get(info.output)
            if v is not None and not np.all(np.isfinite(v)):
                return info.output
        return None


def nonfinite_error(graph: Graph, node: str, where: str) -> GraphcError:
    """Return the error for a NaN/Inf first produced by `node`.

    `node` may be a node a rewrite made (compiler/rewrite.py: `<pool>.pool`), which the
    program's graph does not hold: the error then points at the node it was made from.
    """
    if node not in graph.nx:
        node = node.rsplit(".", 1)[0] if node.rsplit(".", 1)[0] in graph.nx else graph.op_nodes()[0]
    record = graph.node(node)
    return GraphcError(f"`{node}` ({record.op_name}) produced NaN or Inf {where}", span=record.span,
                       notes=trace_notes(record),
                       help="lower the learning rate, check the data's scale, or check log/div inputs")
