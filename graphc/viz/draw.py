"""Draw a viz Scene with matplotlib, on graphc's own layout (when Graphviz is not installed).

Input: a `scene.Scene` and an output path (.svg, .png or .pdf). Output: the
file. One drawing unit is one inch and text sizes are in points, so boxes fit
their text at any figure size; the figure grows with the number and width of
layers. SVG keeps text as text, and every box and arrow carries an id
(`node:NAME`, `edge:SRC->DST`, `grad:STEP:SRC->DST`) as in the Graphviz output.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

from graphc.viz.boxes import LEADING, PAD_Y, node_lines, scene_layout
from graphc.viz.scene import COLOURS, EDGE_COLOUR, GRAD_COLOUR, Scene

MAX_PIXELS = 30000        # per side: matplotlib's Agg renderer stops at 2**16


def draw_scene(scene: Scene, path: Path) -> None:
    """Write the scene as a picture (format from the extension)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    t2p = TextToPath()
    cache: dict = {}

    def measure(text: str, pt: float, bold: bool) -> float:
        key = (text, pt, bold)
        if key not in cache:
            prop = FontProperties(size=pt, weight="bold" if bold else "normal")
            cache[key] = t2p.get_text_width_height_descent(text, prop, ismath=False)[0] / 72
        return cache[key]

    lay = scene_layout(scene, measure)
    head, foot = 0.45, 0.55                       # title above, legend below
    grads = [e for e in scene.edges if e.kind == "grad"]
    small = {v.id for v in scene.nodes if v.small}
    arcs = [_arc(lay, e, e.dst in small) for e in grads]
    starts = [a[0] if a[1] is not None else a[0][0] for a in arcs]
    left = min([0.0] + [a[3][0] - _label_width(e.label, measure) - 0.1 for a, e, s in zip(arcs, grads, starts)
                        if a[3][0] < s[0] - 0.01])
    right = max([lay.width] + [a[3][0] + _label_width(e.label, measure) + 0.1
                               for a, e, s in zip(arcs, grads, starts) if a[3][0] >= s[0] - 0.01])
    legend = sum(measure(t, 8, False) + (0.66 if t == "gradient step" else 0.24) for t, _ in scene.legend)
    width = max(right - left, measure(scene.title, 11, True) + 0.4, legend + 0.4, 4.0)
    height = lay.height + head + foot
    with matplotlib.rc_context({"svg.fonttype": "none", "pdf.fonttype": 42}):
        fig = plt.figure(figsize=(width, height))
        ax = fig.add_axes([0, 0, 1, 1])
        ax.set_xlim(left, left + width)
        ax.set_ylim(lay.height + foot, -head)
        ax.axis("off")
        _draw_clusters(ax, scene, lay)
        for e in scene.edges:
            if e.kind != "grad":
                _draw_edge(ax, lay, e)
        for v in scene.nodes:
            _draw_node(ax, lay, v)
        for e, arc in zip(grads, arcs):
            _draw_grad(ax, e, arc)
        ax.text(left + 0.2, -head / 2, scene.title, fontsize=11, fontweight="bold", va="center")
        _draw_legend(ax, scene, left + 0.2, lay.height + 0.15, measure)
        dpi = min(100, MAX_PIXELS / max(width, height))
        fig.savefig(path, dpi=dpi)
        plt.close(fig)


def _draw_node(ax, lay, v) -> None:
    from matplotlib.patches import FancyBboxPatch
    (x, y), (w, h) = lay.pos[v.id], lay.size[v.id]
    style = "square,pad=0" if v.small else "round,pad=0,rounding_size=0.08"
    edge = GRAD_COLOUR if v.note else ("#b0a060" if v.small else "#455a64")
    box = FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle=style, facecolor=COLOURS[v.family],
                         edgecolor=edge, linewidth=1.4 if v.note else 0.8, zorder=3)
    box.set_gid(f"node:{v.id}")
    ax.add_patch(box)
    top = y - h / 2 + PAD_Y
    for text, pt, bold, role in node_lines(v):
        line_h = pt * LEADING / 72
        ax.text(x, top + line_h / 2, text, fontsize=pt, fontweight="bold" if bold else "normal",
                color=GRAD_COLOUR if role == "note" else "black", ha="center", va="center", zorder=4)
        top += line_h


def _draw_edge(ax, lay, e) -> None:
    from matplotlib.patches import FancyArrowPatch
    from matplotlib.path import Path as MPath
    pts = lay.routes[(e.src, e.dst)]
    colour = "#b0a060" if e.kind == "param" else EDGE_COLOUR
    arrow = FancyArrowPatch(path=MPath(pts), arrowstyle="-|>", mutation_scale=8, color=colour,
                            linewidth=0.8, zorder=2, shrinkA=0, shrinkB=0)
    arrow.set_gid(f"edge:{e.src}->{e.dst}")
    ax.add_patch(arrow)
    if e.label:
        (x0, y0), (x1, y1) = pts[-2], pts[-1]
        ax.text((x0 + x1) / 2 + 0.06, (y0 + y1) / 2, e.label, fontsize=7, color="#37474f", ha="left",
                va="center", zorder=2)


def _arc(lay, e, small: bool):
    """Return a backward arrow's (start, control, end, label anchor), curving around the boxes.

    To the data input above: out of the op's left side into the input's left
    side, the rule to the left of the curve (side inputs sit to the right, so
    the left is free). To a parameter: from the op's top right to the
    parameter's bottom, the step number beside it; when only parameters get a
    gradient, the rule goes to the left of the op.
    """
    (xs, ys), (ws, hs) = lay.pos[e.src], lay.size[e.src]
    (xt, yt), (wt, ht) = lay.pos[e.dst], lay.size[e.dst]
    if small and xt > xs:                        # a side input to the right, in the same layer
        y_in = min(max(yt, ys - hs / 2 + 0.05), ys + hs / 2 - 0.05)
        start, end = (xs + ws / 2, y_in + 0.05), (xt - wt / 2, yt + 0.05)
        control = ((start[0] + end[0]) / 2, max(start[1], end[1]) + 0.1)
        anchor = ((start[0] + end[0]) / 2, y_in - 0.09)
        if " " in e.label:                       # only parameters get a gradient: the rule left of the op
            anchor = (xs - ws / 2 - 0.05, ys)
        return start, control, end, anchor
    if small:                                    # a shared parameter above
        start, end = (xs + ws / 2, ys - hs / 3), (xt + wt / 4, yt + ht / 2)
        control = (max(start[0], end[0]) + 0.1, start[1])
        anchor = (end[0] + 0.05, end[1] + 0.1) if " " not in e.label else (xs - ws / 2 - 0.05, ys)
        return start, control, end, anchor
    route = lay.routes.get((e.dst, e.src), [])
    if len(route) > 2:                           # a long edge: follow its route back, just beside it
        pts = [(x - 0.1, y) for x, y in reversed(route)]
        k = len(pts) // 2
        return pts, None, None, (pts[k][0] - 0.06, pts[k][1])
    side = 1 if xt - xs > 0.3 else -1           # an input standing to the right: go round the right
    start = (xs + side * ws / 2, ys - hs / 4)
    end = (xt + side * wt / 2, yt + ht / 4)
    bulge = 0.25 + 0.06 * abs(start[1] - end[1])
    control = ((max if side > 0 else min)(start[0], end[0]) + side * bulge, (start[1] + end[1]) / 2)
    mid = (0.25 * start[0] + 0.5 * control[0] + 0.25 * end[0], 0.25 * start[1] + 0.5 * control[1] + 0.25 * end[1])
    return start, control, end, (mid[0] + side * 0.04, mid[1])


def _draw_grad(ax, e, arc) -> None:
    from matplotlib.patches import FancyArrowPatch
    from matplotlib.path import Path as MPath
    start, control, end, anchor = arc
    if control is None:                          # a polyline (start holds its points)
        path, start = MPath(start), start[0]
    else:
        path = MPath([start, control, end], [MPath.MOVETO, MPath.CURVE3, MPath.CURVE3])
    arrow = FancyArrowPatch(path=path, arrowstyle="-|>", mutation_scale=8, color=GRAD_COLOUR, linewidth=0.9,
                            linestyle=(0, (4, 3)), zorder=5, shrinkA=0, shrinkB=0)
    arrow.set_gid(f"grad:{e.step}:{e.src}->{e.dst}")
    ax.add_patch(arrow)
    if e.label:
        left = anchor[0] < start[0] - 0.01
        centred = " " not in e.label and anchor[0] < end[0]
        ax.text(anchor[0], anchor[1], _wrap(e.label) + (f"\n{e.value}" if e.value else ""), fontsize=7,
                color=GRAD_COLOUR,
                ha="center" if centred else ("right" if left else "left"), va="center", zorder=6,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.5})


def _wrap(label: str) -> str:
    return "\n".join(textwrap.wrap(label, 34, break_on_hyphens=False, break_long_words=False))


def _label_width(label: str, measure) -> float:
    return max((measure(line, 7, False) for line in _wrap(label).split("\n")), default=0.0)


def _draw_clusters(ax, scene: Scene, lay) -> None:
    """Draw each block instance as a dashed box around its members, its label at the top left."""
    from matplotlib.patches import FancyBboxPatch
    for cid, (x0, y0, x1, y1, depth) in sorted(lay.boxes.items(), key=lambda kv: kv[1][4]):
        box = FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, boxstyle="round,pad=0,rounding_size=0.08",
                             facecolor="#f4f6f7" if depth % 2 == 0 else "#e6ebee", edgecolor="#78909c",
                             linestyle="--", linewidth=0.8, zorder=1 + 0.01 * depth)
        box.set_gid(f"cluster:{cid}")
        ax.add_patch(box)
        ax.text(x1 - 0.06, y0 + 0.09, scene.clusters[cid].label, fontsize=7, color="#455a64", va="center",
                ha="right", zorder=1.5)


def _draw_legend(ax, scene: Scene, x: float, y: float, measure) -> None:
    from matplotlib.patches import Rectangle
    for text, colour in scene.legend:
        w = measure(text, 8, False) + 0.16
        if text == "gradient step":
            ax.annotate("", xy=(x + 0.35, y + 0.12), xytext=(x, y + 0.12),
                        arrowprops={"arrowstyle": "-|>", "color": colour, "linestyle": "--"})
            ax.text(x + 0.4, y + 0.12, text, fontsize=8, color=colour, va="center")
            x += w + 0.5
            continue
        ax.add_patch(Rectangle((x, y), w, 0.24, facecolor=colour, edgecolor="#455a64", linewidth=0.6))
        ax.text(x + w / 2, y + 0.12, text, fontsize=8, ha="center", va="center")
        x += w + 0.08
