"""Viz: a typed Graph -> a picture of its compiled plan (.svg .png .pdf .dot .html).

Input: a typed Graph and what to show (the backward schedule; schedule numbers
and buffers). Output: a file. The picture is first described as a `Scene` —
boxes, arrows, block clusters and a legend, as plain data — and then written
by one back end: Graphviz `dot` when it is on PATH (DOT text run through
`dot -T<format>`), else graphc's own layered layout (layout.py) drawn with
matplotlib (viz_draw.py). `.html` is always laid out by graphc and written as
one self-contained page (viz_html.py). A leaf: nothing in the pipeline
imports it.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graphc.compiler.graph import Graph
from graphc.compiler.plan import Plan
from graphc.diagnostics import GraphcError
from graphc.ops import REQUIRED, lookup
from graphc.tensor_type import format_shape

FORMATS = (".svg", ".png", ".pdf", ".dot", ".html")

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


def viz(graph: Graph, path: str | Path, *, backward: bool = False, numbered: bool = False,
        engine: str = "auto") -> str:
    """Draw the compiled plan of `graph` into `path`; return what laid it out.

    The format follows the extension (.svg .png .pdf .dot .html). `engine`
    "auto" uses Graphviz `dot` when it is on PATH, else graphc's own layout;
    "dot" and "graphc" force one. Returns "Graphviz dot" or "graphc" for a
    picture, "dot" or "html" for text.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in FORMATS:
        raise GraphcError(f"cannot draw into `{path}`: unknown format `{ext or '(none)'}`",
                          help="give the output one of the extensions " + ", ".join(FORMATS))
    if backward and graph.objective is None:
        raise GraphcError(f"model `{graph.model}` has no objective, so no backward schedule to draw",
                          span=graph.model_span, help="declare `loss = ...` or exactly one `output`, "
                                                      "or drop --backward")
    if not path.parent.is_dir():
        raise GraphcError(f"cannot write `{path}`: directory `{path.parent}` does not exist")
    from graphc.compiler.plan import compiled_plan
    p = compiled_plan(graph, backward=True)
    scene = build_scene(graph, p, backward=backward, numbered=numbered)
    if ext == ".html":
        from graphc.viz.html import html_page
        _write(path, html_page(scene).encode())
        return "html"
    from graphc.viz.dot import run_dot, scene_dot
    if ext == ".dot":
        _write(path, scene_dot(scene).encode())
        return "dot"
    if engine == "auto":
        engine = "dot" if shutil.which("dot") else "graphc"
    if engine == "dot":
        _write(path, run_dot(scene_dot(scene), ext[1:]))
        return "Graphviz dot"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise GraphcError("drawing without Graphviz needs matplotlib",
                          help="install Graphviz (`dot`), or pip install 'graphc[train]'; .dot and .html need neither") from None
    from graphc.viz.draw import draw_scene
    draw_scene(scene, path)
    return "graphc"


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as error:
        raise GraphcError(f"cannot write `{path}`: {error.strerror}") from None


# ---- the scene: what is drawn ---------------------------------------------------------

def build_scene(graph: Graph, p: Plan, *, backward: bool, numbered: bool) -> Scene:
    """Return the boxes, arrows and clusters of a plan (with its backward steps if asked)."""
    G = graph.nx
    nodes: dict[str, VNode] = {}
    edges: list[VEdge] = []
    used_families = set()

    def add_value(name: str) -> None:
        if name in nodes:
            return
        if name in G:
            a = G.nodes[name]
            kind = a["kind"]
        else:
            a, kind = None, "layer-param"
        if kind in ("param", "layer-param"):
            info = graph.params[name]
            count = int(np.prod(info.shape, dtype=np.int64))
            nodes[name] = VNode(name, name, [f"{format_shape(info.shape)} · {count:,}"], "parameter",
                                cluster=_param_cluster(graph, info), small=True,
                                details=_param_details(graph, name))
        elif kind == "const":
            nodes[name] = VNode(name, name, [f"{a['value']:g}" if isinstance(a["value"], (int, float))
                                             else str(a["value"])], "constant", cluster=a.get("block", ""),
                                small=True, details=_details(graph, name, p))
        else:
            nodes[name] = VNode(name, name, [f"{kind} {a['type']}"], "data", cluster=a.get("block", ""),
                                details=_details(graph, name, p))
        used_families.add(nodes[name].family)

    for s in p.forward:
        a = G.nodes[s.node]
        op = lookup(s.op)
        lines = [op_summary(s.op, a["attrs"]), "→ " + str(a["type"])]
        title = f"#{s.index}  {s.node}" if numbered else s.node
        if numbered:
            lines.append(f"buf {s.buffer}" if s.buffer is not None else f"view of {s.inputs[0]} (no buffer)")
        nodes[s.node] = VNode(s.node, title, lines, op.family, cluster=a.get("block", ""),
                              details=_details(graph, s.node, p))
        used_families.add(op.family)
    for s in p.forward:
        for i in s.inputs:
            add_value(i)
        for q in s.params:
            add_value(q)
    for s in p.forward:
        for i in dict.fromkeys(s.inputs):
            e = G.edges[i, s.node] if G.has_edge(i, s.node) else {}
            t = e.get("type", G.nodes[i].get("type"))
            small = nodes[i].small
            edges.append(VEdge(i, s.node, "" if small else str(t), "param" if small else "data"))
        for q in s.params:
            edges.append(VEdge(q, s.node, "", "param"))
    if backward:
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
    return Scene(title=_title(graph, backward, numbered), nodes=list(nodes.values()), edges=edges,
                 clusters=_clusters(graph, nodes), legend=_legend(used_families, backward),
                 backward=backward, numbered=numbered)


def op_summary(op_name: str, attrs: dict) -> str:
    """Return `conv filters=6 kernel=5 pad=2`: the op and its attributes that say something.

    Shown: required attributes, attributes changed from their default, and
    window sizes (pair attributes) unless they are zero or one.
    """
    op = lookup(op_name)
    parts = [op.name]
    for a in op.attrs:
        value = attrs.get(a.name)
        shown = a.default is REQUIRED or value != a.default
        if a.kind == "pair":
            shown = value is not None and (shown or tuple(value) not in ((0, 0), (1, 1)))
        if shown and value is not None:
            parts.append(f"{a.name}={_short(value)}")
    return " ".join(parts)


def _short(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return str(value[0]) if len(value) == 2 and value[0] == value[1] else "×".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _title(graph: Graph, backward: bool, numbered: bool) -> str:
    what = "forward and backward plan" if backward else "forward graph"
    return f"{graph.model}: {what}" + (" (schedule order, buffers)" if numbered else "")


def _legend(families: set, backward: bool) -> list[tuple[str, str]]:
    items = [(f, c) for f, c in COLOURS.items() if f in families]
    if backward:
        items.append(("gradient step", GRAD_COLOUR))
    return items


def _param_cluster(graph: Graph, info) -> str:
    owner = graph.nx.nodes.get(info.owner) if info.owner in graph.nx else None
    return owner.get("block", "") if owner else ""


def _clusters(graph: Graph, nodes: dict[str, VNode]) -> dict[str, VCluster]:
    """Return every block instance that holds a drawn node, nested by instance path.

    A node's `block` is its innermost instance path and its `trace` lists the
    block call sites innermost first (so its length is the nesting depth); an
    instance nests in the longest other instance whose path prefixes its own.
    """
    found: dict[str, tuple[str, int]] = {}    # path -> (block name, depth)
    for v in nodes.values():
        owner = v.id if v.id in graph.nx else graph.params[v.id].owner
        trace = graph.nx.nodes[owner].get("trace", ()) if owner in graph.nx else ()
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
    a = graph.nx.nodes[name]
    d = {"name": name, "kind": a["kind"], "op": a.get("op") or a["kind"], "shape": str(a.get("type", "?")),
         "block": a.get("block", ""), "flops": int(a.get("flops", 0) or 0), "source": _source(a.get("span"))}
    if a["kind"] == "op":
        op = lookup(a["op"])
        d["family"] = op.family
        d["attrs"] = {k: _short(v) for k, v in a["attrs"].items() if v is not None}
        d["params"] = [_param_entry(graph, q) for q in a["params"].values()]
        d["called_from"] = [{"block": blk, **(_source(span) or {})} for blk, span in a.get("trace", ())]
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
    return {"name": name, "shape": format_shape(info.shape), "count": int(np.prod(info.shape, dtype=np.int64)),
            "init": info.init if not info.follows_default else f"{info.init} (or the train section's init)"}


def _param_details(graph: Graph, name: str) -> dict:
    info = graph.params[name]
    entry = _param_entry(graph, name)
    return {"name": name, "kind": "param", "op": "parameter", "shape": entry["shape"], "block": "",
            "flops": 0, "params": [entry], "owner": info.owner, "source": _source(info.span)}


# ---- graphc's own layout of a scene (matplotlib and HTML back ends) -----------------------

TITLE_PT, LINE_PT, SMALL_PT = 9.0, 8.0, 7.0
PAD_X, PAD_Y, LEADING = 0.08, 0.05, 1.3      # inches; line height = size * LEADING


def node_lines(v: VNode) -> list[tuple[str, float, bool, str]]:
    """Return a box's text lines as (text, point size, bold, role: title/text/note)."""
    size = SMALL_PT if v.small else LINE_PT
    rows = [(v.title, SMALL_PT + 0.5 if v.small else TITLE_PT, True, "title")]
    rows += [(t, size, False, "text") for t in v.lines]
    if v.note:
        rows.append((v.note, size, False, "note"))
    return rows


def box_size(v: VNode, measure) -> tuple[float, float]:
    """Return a box's (width, height) in inches; `measure(text, pt, bold)` gives a text width in inches."""
    rows = node_lines(v)
    width = max(measure(t, pt, bold) for t, pt, bold, _ in rows) + 2 * PAD_X
    height = sum(pt * LEADING for _, pt, _, _ in rows) / 72 + 2 * PAD_Y
    return width, height


def scene_layout(scene: Scene, measure):
    """Return graphc's layered layout of the scene's forward edges (inches)."""
    from graphc.viz.layout import layered_layout
    sizes = {v.id: box_size(v, measure) for v in scene.nodes}
    edges = [(e.src, e.dst) for e in scene.edges if e.kind != "grad"]
    consumers: dict[str, list[str]] = {}
    for u, w in edges:
        consumers.setdefault(u, []).append(w)
    side = {v.id: consumers[v.id][0] for v in scene.nodes if v.small and len(consumers.get(v.id, ())) == 1}
    return layered_layout(sizes, edges, side=side, groups={v.id: cluster_chain(scene, v.cluster)
                                                           for v in scene.nodes},
                          node_gap=0.3, layer_gap=0.42, margin=0.3)


def cluster_chain(scene: Scene, cluster: str) -> tuple[str, ...]:
    """Return the block instances a node lies in, outermost first."""
    chain = []
    while cluster in scene.clusters:
        chain.append(cluster)
        cluster = scene.clusters[cluster].parent
    return tuple(reversed(chain))


def estimate_width(text: str, pt: float, bold: bool = False) -> float:
    """Return the width in inches of text in a Helvetica-like font (no font files needed)."""
    em = 0.0
    for ch in text:
        if ch in "il.,:;|'![]()/ ":
            em += 0.29
        elif ch in "mwMW@":
            em += 0.85
        elif ch.isupper() or ch in "∇Σ→#%&":
            em += 0.68
        else:
            em += 0.56
    return em * pt / 72 * (1.08 if bold else 1.0)
