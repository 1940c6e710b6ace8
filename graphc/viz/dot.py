"""Viz as Graphviz: a viz Scene -> DOT text, and DOT -> a picture through `dot -T<format>`.

Input: a `scene.Scene`. Output: DOT in one of two forms.

- `scene_dot` (the `.dot` file of `graphc viz -o x.dot` and `graphc compile
  --emit dot`): readable by both Graphviz and Netron. Netron's DOT reader
  (lutzroeder/netron source/dot.js) takes a node's op type from a label of
  exactly `name: <id> type: <Op>` whose `<id>` is the node's identifier, so
  node ids are graphc names made identifiers (`c1.conv` -> `c1_conv`,
  collision-free) and everything else a picture shows is a named attribute
  (`graphc_name`, `op`, `out_shape`, `step`, `buffer`, `note`, ...), which
  Netron lists as metadata. Netron skips what is inside a `subgraph`, so
  every node is declared at the top and the block clusters only name their
  members. Netron's reader has no string escapes, so no quoted value holds `"`.
- `picture_dot` (what `dot -Tsvg|png|pdf` draws for the pictures): HTML-like
  labels (bold name, op, shape), block instances as nested `cluster_`
  subgraphs.

In both, backward steps are dashed red edges that do not constrain the
layout, the legend is the graph's label, and every node, edge and cluster has
an `id` (`node:NAME`, `edge:SRC->DST`, `grad:STEP:SRC->DST`, `cluster:PATH`),
which Graphviz carries into its SVG.
"""
from __future__ import annotations

import html
import re
import shutil
import subprocess
import textwrap

from graphc.diagnostics import GraphcError
from graphc.viz.scene import COLOURS, EDGE_COLOUR, GRAD_COLOUR, Scene, VEdge, VNode


def run_dot(dot_text: str, fmt: str) -> bytes:
    """Return the output of Graphviz `dot -T<fmt>` on DOT text."""
    exe = shutil.which("dot")
    if exe is None:
        raise GraphcError("Graphviz `dot` is not on PATH", help="install graphviz, or use graphc's own layout")
    try:
        done = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode(), capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise GraphcError("Graphviz `dot` took longer than 120 s", help="draw with graphc's own layout") from None
    if done.returncode != 0:
        raise GraphcError(f"Graphviz `dot` failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


# Netron's reader: a node's type comes from a label `name: <id> type: <Op>` with identifier id and type.
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# DOT keywords (case-insensitive in Graphviz); Netron reads a node named `node`/`edge`/`graph` as defaults.
_KEYWORDS = {"node", "edge", "graph", "digraph", "subgraph", "strict"}


def scene_dot(scene: Scene) -> str:
    """Return the scene as DOT that Graphviz draws and Netron reads with op types (the `.dot` file).

    Node ids are identifiers (`dot_ids`), each label is `name: <id> type: <Op>`,
    and the rest of what a box shows is in named attributes; see the module docstring.
    """
    ids = dot_ids([v.id for v in scene.nodes])
    out = _header(scene)
    for v in scene.nodes:
        out.append("  " + _netron_node(v, ids[v.id], scene.numbered))
    children = _children(scene)
    members: dict[str, list[str]] = {}
    for v in scene.nodes:
        if v.cluster in scene.clusters:
            members.setdefault(v.cluster, []).append(ids[v.id])

    def emit_cluster(cid: str, indent: str) -> None:
        # Graphviz puts a node named inside a cluster into it; Netron skips subgraph bodies.
        c = scene.clusters[cid]
        out.append(f"{indent}subgraph {_q('cluster_' + cid)} {{")
        out.append(f"{indent}  {_cluster_attrs(cid, c.label)}")
        out.extend(f"{indent}  {_q(i)};" for i in members.get(cid, []))
        for child in children.get(cid, []):
            emit_cluster(child, indent + "  ")
        out.append(indent + "}")

    for top in children.get("", []):
        emit_cluster(top, "  ")
    out.extend("  " + _dot_edge(e, ids) for e in scene.edges)
    out.append(f"  graph [label={_legend_html(scene)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def picture_dot(scene: Scene) -> str:
    """Return the scene as DOT with HTML-like labels and nested clusters (what `dot -T<fmt>` draws)."""
    out = _header(scene)
    children = _children(scene)
    members: dict[str, list[VNode]] = {}
    for v in scene.nodes:
        members.setdefault(v.cluster if v.cluster in scene.clusters else "", []).append(v)

    def emit_cluster(cid: str, indent: str) -> None:
        for v in members.get(cid, []):
            out.append(indent + _dot_node(v))
        for child in children.get(cid, []):
            out.append(f"{indent}subgraph {_q('cluster_' + child)} {{")
            out.append(f"{indent}  {_cluster_attrs(child, scene.clusters[child].label)}")
            emit_cluster(child, indent + "  ")
            out.append(indent + "}")

    emit_cluster("", "  ")
    out.extend("  " + _dot_edge(e) for e in scene.edges)
    out.append(f"  graph [label={_legend_html(scene)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def dot_ids(names: list[str]) -> dict[str, str]:
    """Return {graphc name: DOT node id}: identifiers, distinct, no DOT keyword.

    A name that already is an identifier keeps itself (so it is never taken by
    another name's sanitised form); others get `.` and other characters as `_`
    (`c1.conv` -> `c1_conv`) and a `_2`, `_3`... suffix if that id is taken.
    """
    ids = {n: n for n in names if _IDENT.fullmatch(n) and n.lower() not in _KEYWORDS}
    taken = set(ids.values())
    for n in names:
        if n in ids:
            continue
        base = re.sub(r"[^A-Za-z0-9_]", "_", n)
        if not _IDENT.match(base):
            base = "n_" + base
        if base.lower() in _KEYWORDS:
            base += "_"
        candidate, k = base, 2
        while candidate in taken:
            candidate, k = f"{base}_{k}", k + 1
        ids[n] = candidate
        taken.add(candidate)
    return ids


def netron_type(v: VNode) -> str:
    """Return the op type Netron shows for a box: the op's name, or what the value is.

    Parameters are `get_parameter` and constants `Constant`: Netron folds such a
    node with one use into its consumer as an initializer, as it shows ONNX weights.
    """
    kind = v.details.get("kind", "value")
    if kind == "op":
        return v.details["op"]
    return {"param": "get_parameter", "const": "Constant"}.get(kind, kind)


def _header(scene: Scene) -> list[str]:
    return [f"digraph {_q(scene.title)} {{",
            '  graph [rankdir=TB, nodesep=0.25, ranksep=0.4, fontname="Helvetica", labelloc=b, '
            'newrank=true, pad=0.2];',
            '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11, '
            'color="#455a64", margin="0.1,0.04"];',
            f'  edge [fontname="Helvetica", fontsize=9, color="{EDGE_COLOUR}", fontcolor="#37474f", '
            'arrowsize=0.7];']


def _children(scene: Scene) -> dict[str, list[str]]:
    """Return {cluster id ("" for the model): the clusters nested directly in it}."""
    children: dict[str, list[str]] = {}
    for c in scene.clusters.values():
        children.setdefault(c.parent, []).append(c.id)
    return children


def _cluster_attrs(cid: str, label: str) -> str:
    return (f'graph [id={_q("cluster:" + cid)}, label={_q(label)}, style="rounded,dashed", '
            f'color="#78909c", fontcolor="#455a64", fontsize=10, labeljust=l, labelloc=t];')


def _netron_node(v: VNode, ident: str, numbered: bool) -> str:
    """Return a node statement: Netron's `name: <id> type: <Op>` label, the box's text as attributes."""
    d = v.details
    kind = d.get("kind")
    attrs = {"label": f"name: {ident} type: {netron_type(v)}", "id": "node:" + v.id, "graphc_name": v.id}
    if kind == "op":
        attrs.update(op=v.lines[0], out_shape=d["shape"])
        if numbered:
            attrs.update(step=str(d["step"]), buffer=v.lines[2])
    elif kind == "param":
        entry = d["params"][0]
        attrs.update(out_shape=entry["shape"], elements=str(entry["count"]), init=str(entry["init"]))
    elif kind == "const":
        attrs["value"] = v.lines[0]
    else:
        attrs["out_shape"] = d["shape"]
    if v.cluster:
        attrs["block"] = v.cluster
    if v.note:
        attrs["note"] = v.note
    attrs.update(fillcolor=COLOURS[v.family], tooltip=v.id)
    text = [f"{key}={_q(value)}" for key, value in attrs.items()] + _node_style(v)
    return f"{_q(ident)} [{', '.join(text)}];"


def _node_style(v: VNode) -> list[str]:
    """Return the drawing attributes of a small (parameter, constant) or gradient-marked box."""
    style = []
    if v.small:
        style += ["fontsize=9", "height=0.3", 'margin="0.06,0.02"', 'style="filled"', 'color="#b0a060"']
    if v.note:
        style += [f'color="{GRAD_COLOUR}"', "penwidth=1.6"]
    return style


def _dot_node(v: VNode) -> str:
    size = 8 if v.small else 9
    rows = [f"<b>{_h(v.title)}</b>"] + [f'<font point-size="{size}">{_h(t)}</font>' for t in v.lines]
    if v.note:
        rows.append(f'<font point-size="{size}" color="{GRAD_COLOUR}">{_h(v.note)}</font>')
    attrs = [f"id={_q('node:' + v.id)}", f"label=<{'<br/>'.join(rows)}>", f'fillcolor="{COLOURS[v.family]}"',
             f"tooltip={_q(v.id)}"] + _node_style(v)
    return f"{_q(v.id)} [{', '.join(attrs)}];"


def _dot_edge(e: VEdge, ids: dict[str, str] | None = None) -> str:
    """Return an edge statement between the nodes' DOT ids (`ids`; graphc names when None)."""
    if e.kind == "grad":
        label = "\n".join(textwrap.wrap(e.label, 30, break_on_hyphens=False, break_long_words=False)
                          + ([e.value] if e.value else []))
        attrs = [f"id={_q(f'grad:{e.step}:{e.src}->{e.dst}')}", "style=dashed", f'color="{GRAD_COLOUR}"',
                 f'fontcolor="{GRAD_COLOUR}"', "constraint=false", "fontsize=8", "arrowsize=0.6",
                 f"label={_q(label)}"]
    else:
        attrs = [f"id={_q(f'edge:{e.src}->{e.dst}')}"]
        if e.kind == "param":
            attrs += ['color="#b0a060"', "arrowsize=0.5"]
        if e.label:
            attrs.append(f"label={_q(' ' + e.label)}")
    src, dst = (ids[e.src], ids[e.dst]) if ids is not None else (e.src, e.dst)
    return f"{_q(src)} -> {_q(dst)} [{', '.join(attrs)}];"


def _legend_html(scene: Scene) -> str:
    cells = []
    for text, colour in scene.legend:
        if text == "gradient step":
            cells.append(f'<td><font color="{colour}">- - ▶ {_h(text)}</font></td>')
        else:
            cells.append(f'<td bgcolor="{colour}" border="1">{_h(text)}</td>')
    return (f'<<table border="0" cellspacing="4" cellpadding="3"><tr><td colspan="{max(len(cells), 1)}">'
            f"<b>{_h(scene.title)}</b></td></tr><tr>{''.join(cells)}</tr></table>>")


def _q(text: str) -> str:
    """Return `text` as a DOT quoted string (a newline becomes DOT's centred line break `\\n`).

    A `"` becomes `'`: Netron's DOT reader ends a string at any `"`, escaped or not.
    """
    return '"' + text.replace("\\", "\\\\").replace('"', "'").replace("\n", "\\n") + '"'


def _h(text: str) -> str:
    """Return `text` escaped for a Graphviz HTML-like label."""
    return html.escape(text, quote=False)
