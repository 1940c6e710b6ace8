"""Infer: graph -> a type, parameters, running state and FLOPs on every node.

Input: the Graph from build. Output: the same Graph with `type` and `flops`
on every node, `type` on every edge, and `graph.params`/`graph.state` filled
for the layers' own tensors. Shapes are decided only by each op's
`shape_rule`; a node whose inputs failed is skipped, so every independent
shape error is reported once.
"""
from __future__ import annotations

import networkx as nx

from graphc.compiler.graph import Graph, ParamInfo, StateInfo, trace_notes
from graphc.diagnostics import Diagnostic, Diagnostics
from graphc.ops import lookup
from graphc.ops.init import fans
from graphc.tensor_type import CLASS, MAX_ELEMENTS, ShapeError, format_shape, num_elements

# The most elements one tensor may hold (per sample, or in total for a parameter):
# 2**40 float32 values are 4 TiB, far beyond any model graphc can run, and every
# element count, FLOP count and byte size below it still fits NumPy's int64.


def infer(graph: Graph, diagnostics: Diagnostics) -> Graph:
    """Type every node of the graph in topological order; return the graph."""
    G = graph.nx
    nodes = dict(G.nodes(data=True))   # name -> its attribute dict (the graph's own dicts)
    pred = G.pred
    params, state = graph.params, graph.state
    reported = set()   # a block used twice makes the same mistake twice: report it once

    def report(message, span, help, attrs):
        key = (message, span.source.path, span.start) if span is not None else (message, node)
        if key not in reported:
            reported.add(key)
            diagnostics.add(Diagnostic("error", message, span, help, trace_notes(attrs)))

    for node in topological_order(G):
        attrs = nodes[node]
        if attrs["kind"] != "op":
            attrs["type"] = attrs["declared"]
            attrs["flops"] = 0
            continue
        in_types = [nodes[i].get("type") for i in attrs["inputs"]]
        if any(t is None for t in in_types):
            continue
        op = lookup(attrs["op"])
        op_attrs = attrs["attrs"]
        try:
            out_type = op.shape_rule(in_types, op_attrs)
        except ShapeError as error:
            spans = attrs.get("arg_spans", {})
            span = spans.get(error.arg, attrs["span"]) if error.arg is not None else attrs["span"]
            message = error.message if error.message.startswith(op.name) or "`" in error.message \
                else f"{op.name}: {error.message}"
            if error.message.startswith(f"{op.name} "):
                message = error.message
            report(message, span, error.help, attrs)
            continue
        active = op.active_params(op_attrs) if op.params else ()
        param_shapes = [tuple(int(d) for d in spec.shape(in_types, op_attrs)) for spec in active]
        too_large = num_elements(out_type.shape) > MAX_ELEMENTS
        for shape in param_shapes:
            too_large = too_large or num_elements(shape) > MAX_ELEMENTS
        if too_large:
            # Sizes are Python ints here, but NumPy (summary, init, run) needs them to fit int64.
            report(f"{op.name}: a tensor here would hold more than {MAX_ELEMENTS:,} elements", attrs["span"],
                   "check the sizes given; that is graphc's limit per tensor", attrs)
            continue
        attrs["type"] = out_type
        attrs["flops"] = int(op.flops(in_types, out_type, op_attrs))
        edges = pred[node]
        for src in set(attrs["inputs"]):
            edges[src]["type"] = nodes[src]["type"]
        for spec, shape in zip(active, param_shapes):
            name = attrs["params"][spec.role]
            params[name] = ParamInfo(name, shape, spec.init, dict(spec.init_args), fans(shape, spec.layout),
                                     spec.decay, spec.follows_default, node, spec.role, attrs["span"])
        attrs["state"] = {}
        for spec in op.state:
            name = f"{node}.{spec.role}"
            attrs["state"][spec.role] = name
            state[name] = StateInfo(name, tuple(spec.shape(in_types, op_attrs)), spec.fill, node, spec.role)
    _check_loss(graph, diagnostics)
    return graph


def topological_order(G: nx.DiGraph) -> list:
    """Return the nodes in `nx.topological_sort`'s order (generation by generation), computed faster.

    The order decides which error is reported first and the order of
    `graph.params` (and so which random numbers initialise which weight), so
    it must be networkx's exactly: Kahn's algorithm over `G.in_degree()` and
    `G.succ`, both in insertion order. Raises NetworkXUnfeasible on a cycle.
    """
    indegree = {}
    zero = []
    for v, d in G.in_degree():
        if d:
            indegree[v] = d
        else:
            zero.append(v)
    succ = G.succ
    order = []
    while zero:
        generation, zero = zero, []
        for v in generation:
            for child in succ[v]:
                d = indegree[child] - 1
                if d:
                    indegree[child] = d
                else:
                    zero.append(child)
                    del indegree[child]
        order += generation
    if indegree:
        raise nx.NetworkXUnfeasible("Graph contains a cycle or graph changed during iteration")
    return order


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
