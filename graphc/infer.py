"""Infer: graph -> a type, parameters, running state and FLOPs on every node.

Input: the Graph from build. Output: the same Graph with `type` and `flops`
on every node, `type` on every edge, and `graph.params`/`graph.state` filled
for the layers' own tensors. Shapes are decided only by each op's
`shape_rule`; a node whose inputs failed is skipped, so every independent
shape error is reported once.
"""
from __future__ import annotations

import networkx as nx

from .diagnostics import Diagnostic, Diagnostics
from .graph import Graph, ParamInfo, StateInfo, trace_notes
from .init import fans
from .ops import lookup
from .types import CLASS, ShapeError, format_shape

# The most elements one tensor may hold (per sample, or in total for a parameter):
# 2**40 float32 values are 4 TiB, far beyond any model graphc can run, and every
# element count, FLOP count and byte size below it still fits NumPy's int64.
MAX_ELEMENTS = 2 ** 40


def infer(graph: Graph, diagnostics: Diagnostics) -> Graph:
    """Type every node of the graph in topological order; return the graph."""
    G = graph.nx
    reported = set()   # a block used twice makes the same mistake twice: report it once

    def report(message, span, help, attrs):
        key = (message, span.source.path, span.start) if span is not None else (message, node)
        if key not in reported:
            reported.add(key)
            diagnostics.add(Diagnostic("error", message, span, help, trace_notes(attrs)))

    for node in nx.topological_sort(G):
        attrs = G.nodes[node]
        if attrs["kind"] != "op":
            attrs["type"] = attrs["declared"]
            attrs["flops"] = 0
            continue
        in_types = [G.nodes[i].get("type") for i in attrs["inputs"]]
        if any(t is None for t in in_types):
            continue
        op = lookup(attrs["op"])
        try:
            out_type = op.shape_rule(in_types, attrs["attrs"])
        except ShapeError as error:
            spans = attrs.get("arg_spans", {})
            span = spans.get(error.arg, attrs["span"]) if error.arg is not None else attrs["span"]
            message = error.message if error.message.startswith(op.name) or "`" in error.message \
                else f"{op.name}: {error.message}"
            if error.message.startswith(f"{op.name} "):
                message = error.message
            report(message, span, error.help, attrs)
            continue
        param_shapes = {spec.role: tuple(int(d) for d in spec.shape(in_types, attrs["attrs"]))
                        for spec in op.active_params(attrs["attrs"])}
        sizes = [_size(out_type.shape), *(_size(shape) for shape in param_shapes.values())]
        if max(sizes) > MAX_ELEMENTS:
            # Sizes are Python ints here, but NumPy (summary, init, run) needs them to fit int64.
            report(f"{op.name}: a tensor here would hold more than {MAX_ELEMENTS:,} elements", attrs["span"],
                   "check the sizes given; that is graphc's limit per tensor", attrs)
            continue
        attrs["type"] = out_type
        attrs["flops"] = int(op.flops(in_types, out_type, attrs["attrs"]))
        for src in set(attrs["inputs"]):
            G.edges[src, node]["type"] = G.nodes[src]["type"]
        for spec in op.active_params(attrs["attrs"]):
            name = attrs["params"][spec.role]
            shape = param_shapes[spec.role]
            graph.params[name] = ParamInfo(name, shape, spec.init, dict(spec.init_args),
                                           fans(shape, spec.layout), spec.decay, spec.follows_default,
                                           node, spec.role, attrs["span"])
        attrs["state"] = {}
        for spec in op.state:
            name = f"{node}.{spec.role}"
            attrs["state"][spec.role] = name
            graph.state[name] = StateInfo(name, tuple(spec.shape(in_types, attrs["attrs"])), spec.fill,
                                          node, spec.role)
    _check_loss(graph, diagnostics)
    return graph


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _check_loss(graph: Graph, diagnostics: Diagnostics) -> None:
    if graph.loss is None or "type" not in graph.nx.nodes[graph.loss]:
        return
    t = graph.type_of(graph.loss)
    if t.kind == CLASS:
        diagnostics.error("`loss` holds class labels, not a number to minimise", graph.loss_span,
                          help="compute a loss from the labels, e.g. cross_entropy(logits, label)")
    elif t.shape != ():
        diagnostics.error(f"`loss` must be a scalar, but it has shape {format_shape(t.shape)} per sample",
                          graph.loss_span,
                          help="reduce it with mean(...) or sum(...), or use a loss op such as cross_entropy")
