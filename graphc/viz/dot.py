"""Viz as Graphviz: a viz Scene -> DOT text, and DOT -> a picture through `dot -T<format>`.

Input: a `scene.Scene`. Output: DOT with HTML-like labels (bold name, op,
shape), block instances as nested `cluster_` subgraphs, backward steps as
dashed red edges that do not constrain the layout, and the legend as the
graph's label. Every node, edge and cluster has an `id` (`node:NAME`,
`edge:SRC->DST`, `grad:STEP:SRC->DST`, `cluster:PATH`), which Graphviz
carries into its SVG.
"""
from __future__ import annotations

import html
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


def scene_dot(scene: Scene) -> str:
    """Return the scene as Graphviz DOT (HTML-like labels; ids name nodes and edges in the SVG)."""
    out = [f"digraph {_q(scene.title)} {{",
           '  graph [rankdir=TB, nodesep=0.25, ranksep=0.4, fontname="Helvetica", labelloc=b, '
           'newrank=true, pad=0.2];',
           '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11, '
           'color="#455a64", margin="0.1,0.04"];',
           f'  edge [fontname="Helvetica", fontsize=9, color="{EDGE_COLOUR}", fontcolor="#37474f", '
           'arrowsize=0.7];']
    children: dict[str, list[str]] = {}
    for c in scene.clusters.values():
        children.setdefault(c.parent, []).append(c.id)
    members: dict[str, list[VNode]] = {}
    for v in scene.nodes:
        members.setdefault(v.cluster if v.cluster in scene.clusters else "", []).append(v)

    def emit_cluster(cid: str, indent: str) -> None:
        for v in members.get(cid, []):
            out.append(indent + _dot_node(v))
        for child in children.get(cid, []):
            c = scene.clusters[child]
            out.append(f"{indent}subgraph {_q('cluster_' + child)} {{")
            out.append(f'{indent}  graph [id={_q("cluster:" + child)}, label={_q(c.label)}, style="rounded,dashed", '
                       f'color="#78909c", fontcolor="#455a64", fontsize=10, labeljust=l, labelloc=t];')
            emit_cluster(child, indent + "  ")
            out.append(indent + "}")

    emit_cluster("", "  ")
    for e in scene.edges:
        out.append("  " + _dot_edge(e))
    out.append(f"  graph [label={_legend_html(scene)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def _dot_node(v: VNode) -> str:
    size = 8 if v.small else 9
    rows = [f"<b>{_h(v.title)}</b>"] + [f'<font point-size="{size}">{_h(t)}</font>' for t in v.lines]
    if v.note:
        rows.append(f'<font point-size="{size}" color="{GRAD_COLOUR}">{_h(v.note)}</font>')
    attrs = [f"id={_q('node:' + v.id)}", f"label=<{'<br/>'.join(rows)}>", f'fillcolor="{COLOURS[v.family]}"',
             f"tooltip={_q(v.id)}"]
    if v.small:
        attrs += ["fontsize=9", "height=0.3", 'margin="0.06,0.02"', 'style="filled"', 'color="#b0a060"']
    if v.note:
        attrs += [f'color="{GRAD_COLOUR}"', "penwidth=1.6"]
    return f"{_q(v.id)} [{', '.join(attrs)}];"


def _dot_edge(e: VEdge) -> str:
    if e.kind == "grad":
        label = "\n".join(textwrap.wrap(e.label, 30, break_on_hyphens=False, break_long_words=False)) if e.label else ""
        attrs = [f"id={_q(f'grad:{e.step}:{e.src}->{e.dst}')}", "style=dashed", f'color="{GRAD_COLOUR}"',
                 f'fontcolor="{GRAD_COLOUR}"', "constraint=false", "fontsize=8", "arrowsize=0.6",
                 f"label={_q(label)}"]
    else:
        attrs = [f"id={_q(f'edge:{e.src}->{e.dst}')}"]
        if e.kind == "param":
            attrs += ['color="#b0a060"', "arrowsize=0.5"]
        if e.label:
            attrs.append(f"label={_q(' ' + e.label)}")
    return f"{_q(e.src)} -> {_q(e.dst)} [{', '.join(attrs)}];"


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
    """Return `text` as a DOT quoted string (a newline becomes DOT's centred line break `\\n`)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _h(text: str) -> str:
    """Return `text` escaped for a Graphviz HTML-like label."""
    return html.escape(text, quote=False)
