"""The HTML viewer: a viz Scene -> one self-contained page (inline SVG, CSS and JavaScript).

Input: a `scene.Scene`. Output: the text of an HTML page that needs no network:
the graph laid out by graphc (layout.py) as inline SVG; drag to pan, wheel or
buttons to zoom; a click on a box opens a panel with the node's name, op,
shape, parameters, FLOPs, the rule of its backward step, buffer, and the
source line that wrote it. Each box is a `<g class="node" data-id=NAME>`;
the details travel as one JSON blob.
"""
from __future__ import annotations

import html
import json
import textwrap

from graphc.viz.boxes import LEADING, PAD_Y, estimate_width, node_lines, scene_layout
from graphc.viz.scene import COLOURS, EDGE_COLOUR, GRAD_COLOUR, Scene

PX = 96.0          # pixels per inch
PT = PX / 72.0     # pixels per point


def html_page(scene: Scene) -> str:
    """Return the page showing the scene."""
    lay = scene_layout(scene, estimate_width)
    width, height = lay.width * PX, lay.height * PX
    parts = []
    for cid, (x0, y0, x1, y1, depth) in sorted(lay.boxes.items(), key=lambda kv: kv[1][4]):
        parts.append(f'<g class="cluster" data-id="{_a(cid)}"><rect x="{x0 * PX:.1f}" y="{y0 * PX:.1f}" '
                     f'width="{(x1 - x0) * PX:.1f}" height="{(y1 - y0) * PX:.1f}" rx="8" '
                     f'fill="{"#f4f6f7" if depth % 2 == 0 else "#e6ebee"}"/>'
                     f'<text x="{x1 * PX - 6:.1f}" y="{y0 * PX + 12:.1f}" text-anchor="end">'
                     f'{_t(scene.clusters[cid].label)}</text></g>')
    small = {v.id for v in scene.nodes if v.small}
    for e in scene.edges:
        if e.kind == "grad":
            continue
        pts = lay.routes[(e.src, e.dst)]
        d = "M" + " L".join(f"{x * PX:.1f},{y * PX:.1f}" for x, y in pts)
        cls = "edge param" if e.kind == "param" else "edge"
        parts.append(f'<g class="{cls}" data-src="{_a(e.src)}" data-dst="{_a(e.dst)}"><path d="{d}" '
                     f'marker-end="url(#{"arrow-param" if e.kind == "param" else "arrow"})"/>')
        if e.label:
            (xa, ya), (xb, yb) = pts[-2], pts[-1]
            parts.append(f'<text x="{(xa + xb) / 2 * PX + 5:.1f}" y="{(ya + yb) / 2 * PX + 3:.1f}">{_t(e.label)}</text>')
        parts.append("</g>")
    for e in scene.edges:
        if e.kind == "grad":
            parts.append(_grad_svg(lay, e, e.dst in small))
    for v in scene.nodes:
        parts.append(_node_svg(lay, v))
    details = {v.id: v.details for v in scene.nodes}
    legend = "".join(
        f'<span class="key"><i style="background:{c}"></i>{_t(t)}</span>' if t != "gradient step" else
        f'<span class="key grad"><i></i>{_t(t)}</span>' for t, c in scene.legend)
    data = _script_json(details)
    return (PAGE.replace("%TITLE%", _t(scene.title)).replace("%LEGEND%", legend)
            .replace("%W%", f"{width:.0f}").replace("%H%", f"{height:.0f}").replace("%SVG%", "\n".join(parts))
            .replace("%DATA%", data).replace("%EDGE%", EDGE_COLOUR).replace("%GRAD%", GRAD_COLOUR))


def _node_svg(lay, v) -> str:
    (x, y), (w, h) = lay.pos[v.id], lay.size[v.id]
    x0, y0 = (x - w / 2) * PX, (y - h / 2) * PX
    rows, top = [], y0 + PAD_Y * PX
    for text, pt, bold, role in node_lines(v):
        line_h = pt * LEADING * PT
        cls = ' class="title"' if bold else (' class="note"' if role == "note" else "")
        rows.append(f'<text x="{x * PX:.1f}" y="{top + line_h * 0.72:.1f}" font-size="{pt * PT:.1f}"{cls}>'
                    f"{_t(text)}</text>")
        top += line_h
    cls = "node small" if v.small else "node"
    stroke = f' stroke="{GRAD_COLOUR}" stroke-width="1.8"' if v.note else ""
    return (f'<g class="{cls}" data-id="{_a(v.id)}" tabindex="0"><rect x="{x0:.1f}" y="{y0:.1f}" '
            f'width="{w * PX:.1f}" height="{h * PX:.1f}" rx="{0 if v.small else 7}" '
            f'fill="{COLOURS[v.family]}"{stroke}/>{"".join(rows)}</g>')


def _grad_svg(lay, e, small: bool) -> str:
    (xs, ys), (ws, hs) = lay.pos[e.src], lay.size[e.src]
    (xt, yt), (wt, ht) = lay.pos[e.dst], lay.size[e.dst]
    route = lay.routes.get((e.dst, e.src), [])
    if small and xt > xs:
        y_in = min(max(yt, ys - hs / 2 + 0.05), ys + hs / 2 - 0.05)
        a, b = (xs + ws / 2, y_in + 0.05), (xt - wt / 2, yt + 0.05)
        c = ((a[0] + b[0]) / 2, max(a[1], b[1]) + 0.1)
        d = f"M{a[0] * PX:.1f},{a[1] * PX:.1f} Q{c[0] * PX:.1f},{c[1] * PX:.1f} {b[0] * PX:.1f},{b[1] * PX:.1f}"
        label, anchor, lx, ly = e.label, "middle", (a[0] + b[0]) / 2, y_in - 0.09
        if " " in e.label:
            anchor, lx, ly = "end", xs - ws / 2 - 0.05, ys
    elif len(route) > 2:
        pts = [(x - 0.1, y) for x, y in reversed(route)]
        d = "M" + " L".join(f"{x * PX:.1f},{y * PX:.1f}" for x, y in pts)
        k = len(pts) // 2
        label, anchor, lx, ly = e.label, "end", pts[k][0] - 0.06, pts[k][1]
    else:                                        # round the left, or the right for an input to the right
        side = 1 if xt - xs > 0.3 else -1
        a, b = (xs + side * ws / 2, ys - hs / 4), (xt + side * wt / 2, yt + ht / 4)
        c = ((max if side > 0 else min)(a[0], b[0]) + side * (0.25 + 0.06 * abs(a[1] - b[1])), (a[1] + b[1]) / 2)
        d = f"M{a[0] * PX:.1f},{a[1] * PX:.1f} Q{c[0] * PX:.1f},{c[1] * PX:.1f} {b[0] * PX:.1f},{b[1] * PX:.1f}"
        label, anchor = e.label, "start" if side > 0 else "end"
        lx, ly = 0.25 * a[0] + 0.5 * c[0] + 0.25 * b[0] + side * 0.04, 0.25 * a[1] + 0.5 * c[1] + 0.25 * b[1]
    lines = textwrap.wrap(label, 34, break_on_hyphens=False, break_long_words=False) if label else []
    lines += [e.value] if e.value else []
    y0 = ly * PX + 3 - (len(lines) - 1) * 5.5
    text = (f'<text x="{lx * PX:.1f}" y="{y0:.1f}" text-anchor="{anchor}">'
            + "".join(f'<tspan x="{lx * PX:.1f}" dy="{0 if k == 0 else 11}">{_t(s)}</tspan>' for k, s in enumerate(lines))
            + "</text>") if lines else ""
    return (f'<g class="grad" data-step="{e.step}" data-src="{_a(e.src)}" data-dst="{_a(e.dst)}">'
            f'<path d="{d}" marker-end="url(#arrow-grad)"/>{text}</g>')


def _script_json(value) -> str:
    """Return `value` as JSON that is safe inside a <script> element.

    The HTML parser ends a script at `</script` and treats `<!--` inside it as
    the start of an "escaped" state that can swallow the rest of the page, so a
    comment in the source holding `<!--<script>` would kill the viewer. JSON
    may write any character as \\uXXXX: every `<`, `>` and `&` becomes one.
    """
    text = json.dumps(value)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _t(text: str) -> str:
    return html.escape(text, quote=False)


def _a(text: str) -> str:
    return html.escape(text, quote=True)


PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%TITLE%</title>
<style>
 html, body { margin: 0; height: 100%; font-family: Helvetica, Arial, "Liberation Sans", sans-serif; }
 body { display: flex; flex-direction: column; }
 header { padding: 6px 12px; border-bottom: 1px solid #ccd; display: flex; gap: 14px; align-items: center;
          flex-wrap: wrap; background: #fafbfc; }
 header h1 { font-size: 15px; margin: 0; }
 header button { font-size: 14px; min-width: 30px; }
 .key { font-size: 12px; display: inline-flex; align-items: center; gap: 4px; margin-right: 8px; }
 .key i { display: inline-block; width: 14px; height: 12px; border: 1px solid #455a64; }
 .key.grad i { border: none; border-top: 2px dashed %GRAD%; height: 0; width: 22px; }
 main { flex: 1; display: flex; min-height: 0; }
 #canvas { flex: 1; overflow: hidden; cursor: grab; background: white; touch-action: none; }
 #canvas.dragging { cursor: grabbing; }
 svg { width: 100%; height: 100%; user-select: none; }
 .node { cursor: pointer; }
 .node rect { stroke: #455a64; stroke-width: 1; }
 .node.small rect { stroke: #b0a060; }
 .node.selected rect { stroke: #1565c0; stroke-width: 3; }
 .node text { text-anchor: middle; fill: #111; }
 .node text.title { font-weight: bold; }
 .node text.note { fill: %GRAD%; }
 .edge path { fill: none; stroke: %EDGE%; stroke-width: 1.1; }
 .edge.param path { stroke: #b0a060; }
 .edge text { font-size: 9.5px; fill: #37474f; }
 .grad path { fill: none; stroke: %GRAD%; stroke-width: 1.1; stroke-dasharray: 5 4; }
 .grad text { font-size: 9.5px; fill: %GRAD%; }
 .cluster rect { stroke: #78909c; stroke-dasharray: 5 4; }
 .cluster text { font-size: 9.5px; fill: #455a64; }
 body.no-grad .grad { display: none; }
 #panel { width: 340px; border-left: 1px solid #ccd; padding: 10px 14px; overflow: auto; font-size: 13px;
          background: #fcfcfd; }
 #panel h2 { font-size: 16px; margin: 4px 0 8px; word-break: break-all; }
 #panel table { border-collapse: collapse; width: 100%; }
 #panel td, #panel th { text-align: left; padding: 2px 4px; border-bottom: 1px solid #eee; vertical-align: top; }
 #panel code { background: #f0f2f4; padding: 1px 3px; white-space: pre-wrap; }
 #panel .rule { color: %GRAD%; }
 #panel .hint { color: #667; }
</style></head>
<body>
<header><h1>%TITLE%</h1>
 <button id="zoom-in" title="zoom in">+</button><button id="zoom-out" title="zoom out">&minus;</button>
 <button id="zoom-fit" title="fit to window">fit</button>
 <label id="grad-toggle-label"><input type="checkbox" id="grad-toggle" checked> backward steps</label>
 <span>%LEGEND%</span></header>
<main><div id="canvas"><svg id="graph" xmlns="http://www.w3.org/2000/svg" data-width="%W%" data-height="%H%">
<defs>
 <marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7"
   orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="%EDGE%"/></marker>
 <marker id="arrow-param" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6"
   orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#b0a060"/></marker>
 <marker id="arrow-grad" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7"
   orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="%GRAD%"/></marker>
</defs>
<g id="viewport">
%SVG%
</g></svg></div>
<aside id="panel"><p class="hint">Click a box to see its details. Drag to pan; wheel or the buttons to zoom.</p></aside>
</main>
<script type="application/json" id="graphc-data">%DATA%</script>
<script>
(function () {
  "use strict";
  var details = JSON.parse(document.getElementById("graphc-data").textContent);
  var svg = document.getElementById("graph"), view = document.getElementById("viewport");
  var canvas = document.getElementById("canvas"), panel = document.getElementById("panel");
  var W = +svg.dataset.width, H = +svg.dataset.height;
  var t = {x: 0, y: 0, k: 1};
  function apply() { view.setAttribute("transform", "translate(" + t.x + "," + t.y + ") scale(" + t.k + ")"); }
  function fit() {
    var r = canvas.getBoundingClientRect();
    t.k = Math.min(r.width / W, r.height / H, 1.5) * 0.98;
    t.x = (r.width - W * t.k) / 2; t.y = Math.max(4, (r.height - H * t.k) / 2); apply();
  }
  function start() {     // readable size, top of the graph in view; "fit" shows all of it
    var r = canvas.getBoundingClientRect();
    t.k = Math.max(Math.min(r.width / W, 1.2) * 0.98, Math.min(r.width / W, r.height / H, 1.5) * 0.98);
    t.x = Math.max(0, (r.width - W * t.k) / 2); t.y = 4; apply();
  }
  function zoomAt(factor, cx, cy) {
    var k = Math.max(0.05, Math.min(8, t.k * factor));
    t.x = cx - (cx - t.x) * k / t.k; t.y = cy - (cy - t.y) * k / t.k; t.k = k; apply();
  }
  function centre() { var r = canvas.getBoundingClientRect(); return [r.width / 2, r.height / 2]; }
  document.getElementById("zoom-in").onclick = function () { var c = centre(); zoomAt(1.25, c[0], c[1]); };
  document.getElementById("zoom-out").onclick = function () { var c = centre(); zoomAt(0.8, c[0], c[1]); };
  document.getElementById("zoom-fit").onclick = fit;
  canvas.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var r = canvas.getBoundingClientRect();
    zoomAt(Math.exp(-ev.deltaY * 0.0015), ev.clientX - r.left, ev.clientY - r.top);
  }, {passive: false});
  var drag = null, moved = false;
  canvas.addEventListener("pointerdown", function (ev) {
    drag = {x: ev.clientX, y: ev.clientY, tx: t.x, ty: t.y}; moved = false;
  });
  window.addEventListener("pointermove", function (ev) {
    if (!drag) return;
    var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (!moved && Math.abs(dx) + Math.abs(dy) < 4) return;
    if (!moved) { moved = true; canvas.classList.add("dragging"); }
    t.x = drag.tx + dx; t.y = drag.ty + dy; apply();
  });
  window.addEventListener("pointerup", function () { drag = null; canvas.classList.remove("dragging"); });
  var toggle = document.getElementById("grad-toggle");
  if (!document.querySelector(".grad")) document.getElementById("grad-toggle-label").style.display = "none";
  toggle.onchange = function () { document.body.classList.toggle("no-grad", !toggle.checked); };

  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) { return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]; });
  }
  function row(k, v) { return "<tr><th>" + esc(k) + "</th><td>" + v + "</td></tr>"; }
  function show(id) {
    var d = details[id]; if (!d) return;
    var old = svg.querySelector(".node.selected"); if (old) old.classList.remove("selected");
    var g = svg.querySelector('.node[data-id="' + CSS.escape(id) + '"]'); if (g) g.classList.add("selected");
    var h = "<h2>" + esc(d.name) + "</h2><table>";
    h += row("op", esc(d.op) + (d.family ? " <span class=hint>(" + esc(d.family) + ")</span>" : ""));
    h += row("shape", "<span class=shape>" + esc(d.shape) + "</span> per sample");
    if (d.attrs && Object.keys(d.attrs).length)
      h += row("attributes", Object.keys(d.attrs).map(function (k) { return esc(k + "=" + d.attrs[k]); }).join(", "));
    if (d.flops !== undefined) h += row("FLOPs", Number(d.flops).toLocaleString("en") + " per sample");
    if (d.step !== undefined)
      h += row("schedule", "step " + d.step + (d.buffer === null ? ", a view (no buffer)" : ", buf " + d.buffer));
    if (d.backward)
      h += row("backward", "step " + d.backward.step + ": <span class=rule>" + esc(d.backward.rule)
               + "</span><br>to " + esc(d.backward.to.join(", ")));
    if (d.fan_in) h += row("fan-in", "&Sigma; of " + d.fan_in + " gradients (the add gate reversed)");
    if (d.block) h += row("block", esc(d.block));
    if (d.owner) h += row("read by", esc(d.owner));
    if (d.source) h += row("source", esc(d.source.file + ":" + d.source.line) + "<br><code>" + esc(d.source.text) + "</code>");
    (d.called_from || []).forEach(function (c) {
      h += row("in block", esc(c.block) + " used at " + esc(c.file + ":" + c.line) + "<br><code>" + esc(c.text) + "</code>");
    });
    h += "</table>";
    if (d.params && d.params.length) {
      var total = 0;
      h += "<h3>parameters</h3><table><tr><th>name</th><th>shape</th><th>count</th></tr>";
      d.params.forEach(function (p) {
        total += p.count;
        h += "<tr><td>" + esc(p.name) + "</td><td>" + esc(p.shape) + "</td><td>" + p.count.toLocaleString("en") + "</td></tr>";
      });
      h += "<tr><td><b>total</b></td><td></td><td><b>" + total.toLocaleString("en") + "</b></td></tr></table>";
    }
    panel.innerHTML = h;
    panel.dataset.node = id;
  }
  svg.addEventListener("click", function (ev) {
    if (moved) return;
    var g = ev.target.closest ? ev.target.closest(".node") : null;
    if (g) show(g.dataset.id);
  });
  svg.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && ev.target.classList && ev.target.classList.contains("node")) show(ev.target.dataset.id);
  });
  window.graphc = {show: show, transform: t};
  start();
})();
</script>
</body></html>
"""
