"""Box metrics for graphc's own layout: a Scene's boxes -> their text rows, sizes and positions.

Input: a `Scene` and a way to measure text (matplotlib's exact one, or
`estimate_width` where no font files are at hand). Output: each box's text
rows and size in inches, and the layered layout (layout.py) of the forward
edges, shared by the matplotlib (draw.py) and HTML (html.py) back ends.
"""
from __future__ import annotations

from graphc.viz.layout import layered_layout
from graphc.viz.scene import Scene, VNode

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
