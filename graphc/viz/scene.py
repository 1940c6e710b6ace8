"""The scene: a typed Graph and its compiled Plan -> what a picture shows, as plain data.

Input: a typed Graph, its Plan, and what to show (the backward schedule;
schedule numbers and buffers). Output: a `Scene` of boxes (VNode), arrows
(VEdge), block clusters (VCluster) and a legend, which every back end (dot.py,
draw.py, html.py) draws without looking at the graph again.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphc.compiler.graph import Graph
from graphc.compiler.plan import Plan
from graphc.ops import REQUIRED, OpDef, literal
from graphc.tensor_type import format_shape, num_elements

# Fill colours by what a node is: data, parameters, constants, then op families.
COLOURS = {
    "data": "#e0e0e0", "parameter": "#fff3c4", "constant": "#ffffff",
    "gate": "#ffcc80", "layer": "#90caf9", "activation": "#a5d6a7", "norm": "#ce93d8",
    "loss": "#ef9a9a", "reduce": "#80cbc4", "shape": "#cfd8dc", "regularize": "#bcaaa4",
}
GRAD_COLOUR = "#c62828"      # backward steps and fan-in sums
EDGE_COLOUR = "#546e7a"


@dataclass
class VNode:
    """One box: a value of the plan (op output, input, label, parameter or constant)."""

    id: str
    title: str                  # the node's name (under --plan with its schedule number)
    lines: list[str]            # op and key attributes, shape, buffer
    family: str                 # a key of COLOURS
    cluster: str = ""           # block instance path ("" at model level)
    small: bool = False         # parameters and constants are drawn small, as side inputs
    note: str = ""              # drawn in the gradient colour: the fan-in sum
    details: dict = field(default_factory=dict)


@dataclass
class VEdge:
    """One arrow: a tensor flowing forward (data, param) or a backward step's gradient (grad)."""

    src: str
    dst: str
    label: str
    kind: str                   # "data", "param" or "grad"
    step: int | None = None     # the backward step, for grad edges
    value: str = ""             # with --feed: the gradient a grad edge carries (forward edges show theirs as label)


@dataclass
class VCluster:
    """A block instance: its path, its label and the instance it is nested in."""

    id: str
    label: str
    parent: str


@dataclass
class Scene:
    """Everything a back end draws."""

    title: str
    nodes: list[VNode]
    edges: list[VEdge]
    clusters: dict[str, VCluster]
    legend: list[tuple[str, str]]    # (text, colour); "gradient step" uses GRAD_COLOUR
    backward: bool
    numbered: bool


def build_scene(graph: Graph, p: Plan, *, backward: bool, numbered: bool, values: dict | None = None,
                edge_grads: dict | None = None, grads: dict | None = None) -> Scene:
    """Return the boxes, arrows and clusters of a plan (with its backward steps if asked).

    With `values` (node -> array), every forward arrow is labelled with the value it carries; with
    `edge_grads` ((node, target) -> array), every gradient arrow with the gradient it carries, and with
    `grads` (value -> array) a fan-in box with the sum (`format_value` writes the numbers).
    """
    nodes: dict[str, VNode] = {}
    for s in p.forward:
        nodes[s.node] = _step_node(graph, p, s, numbered)
    for s in p.forward:
        for name in [*s.inputs, *s.params]:
            if name not in nodes:
                nodes[name] = _value_node(graph, p, name)
    edges = _forward_edges(graph, p, nodes)
    if backward:
        edges += _backward_edges(p, nodes)
    if values is not None or edge_grads is not None:
        _label_numbers(edges, nodes, p, values or {}, edge_grads or {}, grads or {})
    families = {v.family for v in nodes.values()}
    return Scene(title=_title(graph, backward, numbered), nodes=list(nodes.values()), edges=edges,
                 clusters=_clusters(graph, nodes), legend=_legend(families, backward),
                 backward=backward, numbered=numbered)


def op_summary(op: OpDef, attrs: dict) -> str:
    """Return `conv filters=6 kernel=5 pad=2`: the op and its attributes that say something.

    Shown: required attributes, attributes changed from their default, and
    window sizes (pair attributes) unless they are zero or one.
    """
    parts = [op.name]
    for a in op.attrs:
        value = attrs.get(a.name)
        shown = a.default is REQUIRED or value != a.default
        if a.kind == "pair":
            shown = value is not None and (shown or tuple(value) not in ((0, 0), (1, 1)))
        if shown and value is not None:
            parts.append(f"{a.name}={literal(value, short=True)}")
    return " ".join(parts)


def _step_node(graph: Graph, p: Plan, s, numbered: bool) -> VNode:
    """Return the box of one forward step: its op and attributes, type, and (numbered) buffer."""
    a = graph.node(s.node)
    lines = [op_summary(a.op, a.attrs), "→ " + str(a.type)]
    title = f"#{s.index}  {s.node}" if numbered else s.node
    if numbered:
        lines.append(f"buf {s.buffer}" if s.buffer is not None else f"view of {s.inputs[0]} (no buffer)")
    return VNode(s.node, title, lines, a.op.family, cluster=a.block, details=_details(graph, s.node, p))


def _value_node(graph: Graph, p: Plan, name: str) -> VNode:
    """Return the box of a value no step computes: a parameter, a constant, an input or a label."""
    if name not in graph.nx or graph.node(name).kind == "param":
        # A layer's own parameter (`c1.filters`) is not a graph node: only graph.params knows it.
        info = graph.params[name]
        return VNode(name, name, [f"{format_shape(info.shape)} · {num_elements(info.shape):,}"], "parameter",
                     cluster=_param_cluster(graph, info), small=True, details=_param_details(graph, name))
    a = graph.node(name)
    if a.kind == "const":
        text = f"{a.value:g}" if isinstance(a.value, (int, float)) else str(a.value)
        return VNode(name, name, [text], "constant", cluster=a.block, small=True, details=_details(graph, name, p))
    return VNode(name, name, [f"{a.kind} {a.type}"], "data", cluster=a.block, details=_details(graph, name, p))


def _forward_edges(graph: Graph, p: Plan, nodes: dict[str, VNode]) -> list[VEdge]:
    """Return the arrows of the forward steps: data inputs labelled with their type, parameters unlabelled."""
    edges = []
    for s in p.forward:
        for i in dict.fromkeys(s.inputs):
            e = graph.nx.edges[i, s.node] if graph.nx.has_edge(i, s.node) else {}
            small = nodes[i].small
            edges.append(VEdge(i, s.node, "" if small else str(e.get("type", graph.type_of(i))),
                               "param" if small else "data"))
        for q in s.params:
            edges.append(VEdge(q, s.node, "", "param"))
    return edges


def _backward_edges(p: Plan, nodes: dict[str, VNode]) -> list[VEdge]:
    """Return the gradient arrows of the backward steps; mark fan-in sums and the objective on their boxes."""
    edges = []
    for b in p.backward:
        targets = [t for t, need in zip(b.targets, b.needs) if need and t in nodes]
        # The rule goes on the arrow to the data input (the path a student follows), else the first.
        main = next((t for t in targets if not nodes[t].small), targets[0] if targets else None)
        for t in targets:
            label = f"∇{b.index} {b.rule}" if t == main else f"∇{b.index}"
            edges.append(VEdge(b.node, t, label, "grad", b.index))
    for t, n in p.fan_in.items():
        if n > 1 and t in nodes:
            nodes[t].note = f"Σ of {n} gradients"
    if p.objective in nodes:
        nodes[p.objective].note = "∇ starts here"
    return edges


def format_value(value) -> str:
    """Return a value as an arrow shows it: `-4` for one number, `[0.1, -2, 3]` for up to six, else
    `[4, 100] mean 0.0123` (its shape and mean)."""
    a = np.asarray(value, dtype=np.float64)
    if a.size == 1:
        return f"{float(a.reshape(-1)[0]):.4g}"
    if a.size <= 6:
        return "[" + ", ".join(f"{v:.3g}" for v in a.reshape(-1)) + "]"
    return f"{format_shape(a.shape)} mean {a.mean():.3g}"


def _label_numbers(edges: list[VEdge], nodes: dict[str, VNode], p: Plan, values: dict, edge_grads: dict,
                   grads: dict) -> None:
    """Put the numbers of one pass on the arrows (micrograd's picture); returns None. Forward arrows show
    the value they carry instead of its type (the box above says the type)."""
    for e in edges:
        if e.kind != "grad" and e.src in values:
            e.label = format_value(values[e.src])
        elif e.kind == "grad" and (e.src, e.dst) in edge_grads:
            e.value = "grad " + format_value(edge_grads[(e.src, e.dst)])
    # A value no arrow leaves (the outputs, the loss) shows its number in its box.
    feeding = {e.src for e in edges if e.kind != "grad"}
    for name, v in nodes.items():
        if name not in feeding and name in values:
            v.lines.append("= " + format_value(values[name]))
    for t, n in p.fan_in.items():
        if n > 1 and t in nodes and t in grads:
            nodes[t].note = f"Σ of {n} gradients = {format_value(grads[t])}"


def _title(graph: Graph, backward: bool, numbered: bool) -> str:
    what = "forward and backward plan" if backward else "forward graph"
    return f"{graph.model}: {what}" + (" (schedule order, buffers)" if numbered else "")


def _legend(families: set, backward: bool) -> list[tuple[str, str]]:
    items = [(f, c) for f, c in COLOURS.items() if f in families]
    if backward:
        items.append(("gradient step", GRAD_COLOUR))
    return items


def _param_cluster(graph: Graph, info) -> str:
    return graph.node(info.owner).block if info.owner in graph.nx else ""


def _clusters(graph: Graph, nodes: dict[str, VNode]) -> dict[str, VCluster]:
    """Return every block instance that holds a drawn node, nested by instance path.

    A node's `block` is its innermost instance path and its `trace` lists the
    block call sites innermost first (so its length is the nesting depth); an
    instance nests in the longest other instance whose path prefixes its own.
    """
    found: dict[str, tuple[str, int]] = {}    # path -> (block name, depth)
    for v in nodes.values():
        owner = v.id if v.id in graph.nx else graph.params[v.id].owner
        trace = graph.node(owner).trace if owner in graph.nx else ()
        if v.cluster and trace:
            found.setdefault(v.cluster, (trace[0][0], len(trace)))
    clusters = {}
    for path, (block, depth) in found.items():
        parents = [q for q in found if path.startswith(q + ".") and found[q][1] < depth]
        parent = max(parents, key=len) if parents else ""
        clusters[path] = VCluster(path, f"{path}: block {block}", parent)
    return clusters


def _source(span) -> dict | None:
    if span is None:
        return None
    return {"file": span.source.path, "line": span.line, "col": span.col,
            "text": span.source.line_text(span.line).strip()}


def _details(graph: Graph, name: str, p: Plan) -> dict:
    """Return what the HTML panel shows about a node."""
    a = graph.node(name)
    d = {"name": name, "kind": a.kind, "op": a.op_name or a.kind, "shape": str(a.type) if a.type else "?",
         "block": a.block, "flops": a.flops, "source": _source(a.span)}
    if a.kind == "op":
        d["family"] = a.op.family
        d["attrs"] = {k: literal(v, short=True) for k, v in a.attrs.items() if v is not None}
        d["params"] = [_param_entry(graph, q) for q in a.params.values()]
        d["called_from"] = [{"block": blk, **(_source(span) or {})} for blk, span in a.trace]
    for s in p.forward:
        if s.node == name:
            d["step"] = s.index
            d["buffer"] = s.buffer
    for b in p.backward:
        if b.node == name:
            d["backward"] = {"step": b.index, "rule": b.rule,
                             "to": [t for t, need in zip(b.targets, b.needs) if need]}
    if p.fan_in.get(name, 0) > 1:
        d["fan_in"] = p.fan_in[name]
    return d


def _param_entry(graph: Graph, name: str) -> dict:
    info = graph.params[name]
    return {"name": name, "shape": format_shape(info.shape), "count": num_elements(info.shape),
            "init": info.init if not info.follows_default else f"{info.init} (or the train section's init)"}


def _param_details(graph: Graph, name: str) -> dict:
    info = graph.params[name]
    entry = _param_entry(graph, name)
    return {"name": name, "kind": "param", "op": "parameter", "shape": entry["shape"], "block": "",
            "flops": 0, "params": [entry], "owner": info.owner, "source": _source(info.span)}
