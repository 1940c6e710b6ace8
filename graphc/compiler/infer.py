"""Infer: graph -> a type, parameters, running state and FLOPs on every node.

Input: the Graph from build. Output: the same Graph with `type` and `flops`
on every node, `type` on every edge, and `graph.params`/`graph.state` filled
for the layers' own tensors. Shapes are decided only by each op's
`shape_rule`; a node whose inputs failed is skipped, so every independent
shape error is reported once.
"""
from __future__ import annotations

from graphc.compiler.graph import Graph, ParamInfo, StateInfo, trace_notes
from graphc.diagnostics import Diagnostic, Diagnostics
from graphc.ops.init import fans
from graphc.tensor_type import CLASS, MAX_ELEMENTS, MAX_RANK, ShapeError, TensorType, format_shape, num_elements

# The most elements one tensor may hold (per sample, or in total for a parameter):
# 2**40 float32 values are 4 TiB, far beyond any model graphc can run, and every
# element count, FLOP count and byte size below it still fits NumPy's int64.


def infer(graph: Graph, diagnostics: Diagnostics) -> Graph:
    """Type every node of the graph in topological order; return the graph."""
    pred = graph.nx.pred
    params, state = graph.params, graph.state
    reported = set()   # a block used twice makes the same mistake twice: report it once

    def report(message, span, help, node, level="error"):
        key = (level, message, span.source.path, span.start) if span is not None else (level, message, node.name)
        if key not in reported:
            reported.add(key)
            diagnostic = Diagnostic(level, message, span, help, trace_notes(node))
            if level == "warning":
                graph.warnings.append(diagnostic)   # on the graph, like the builder's: a clean check keeps them
            else:
                diagnostics.add(diagnostic)

    types: dict[str, TensorType] = {}   # node name -> its inferred type (absent: not typed)
    node_of = graph.node
    for name in graph.topological_order():
        node = node_of(name)
        if node.kind != "op":
            node.type = types[name] = node.declared
            continue
        in_types = [types.get(i) for i in node.inputs]
        if any(t is None for t in in_types):
            continue
        op, op_attrs = node.op, node.attrs
        try:
            out_type = op.shape_rule(in_types, op_attrs)
        except ShapeError as error:
            span = node.arg_spans.get(error.arg, node.span) if error.arg is not None else node.span
            message = error.message if error.message.startswith(op.name) or "`" in error.message \
                else f"{op.name}: {error.message}"
            if error.message.startswith(f"{op.name} "):
                message = error.message
            report(message, span, error.help, node)
            continue
        active = op.active_params(op_attrs) if op.params else ()
        param_shapes = [tuple(int(d) for d in spec.shape(in_types, op_attrs)) for spec in active]
        if len(out_type.shape) > MAX_RANK:
            report(f"{op.name}: the result would have {len(out_type.shape)} axes per sample; the limit is {MAX_RANK}",
                   node.span, "NumPy arrays hold at most 64 axes; flatten some with reshape", node)
            continue
        if any(num_elements(shape) > MAX_ELEMENTS for shape in (out_type.shape, *param_shapes)):
            # Sizes are Python ints here, but NumPy (summary, init, run) needs them to fit int64.
            report(f"{op.name}: a tensor here would hold more than {MAX_ELEMENTS:,} elements", node.span,
                   "check the sizes given; that is graphc's limit per tensor", node)
            continue
        types[name] = out_type
        for warning in op.warn_rule(in_types, op_attrs, out_type) if op.warn_rule is not None else ():
            span = node.arg_spans.get(warning.arg, node.span) if warning.arg is not None else node.span
            report(warning.message, span, warning.help, node, level="warning")
        edges = pred[name]
        for src in set(node.inputs):
            edges[src]["type"] = types[src]
        for spec, shape in zip(active, param_shapes):
            param = node.params[spec.role]
            params[param] = ParamInfo(param, shape, spec.init, dict(spec.init_args), fans(shape, spec.layout),
                                      spec.decay, spec.follows_default, name, spec.role, node.span)
        node_state = {}
        for spec in op.state:
            state_name = node_state[spec.role] = f"{name}.{spec.role}"
            state[state_name] = StateInfo(state_name, tuple(spec.shape(in_types, op_attrs)), spec.fill, name,
                                          spec.role)
        node.type, node.flops, node.state = out_type, int(op.flops(in_types, out_type, op_attrs)), node_state
    _check_loss(graph, diagnostics)
    return graph


def _check_loss(graph: Graph, diagnostics: Diagnostics) -> None:
    t = graph.type_of(graph.loss) if graph.loss is not None else None
    if t is None:
        return
    if t.kind == CLASS:
        diagnostics.error("`loss` holds class labels, not a number to minimise", graph.loss_span,
                          help="compute a loss from the labels, e.g. cross_entropy(logits, label)")
    elif t.shape != ():
        diagnostics.error(f"`loss` must be a scalar, but it has shape {format_shape(t.shape)} per sample",
                          graph.loss_span,
                          help="reduce it with mean(...) or sum(...), or use a loss op such as cross_entropy")
