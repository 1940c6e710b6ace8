"""Emit: a compiled plan -> text a person or a tool reads.

Input: a typed Graph. Output: `graphc compile --emit plan|json|dot`: both
schedules with shapes, buffers and the gradient rule of every backward step;
the same as JSON (which `Plan.from_json` reads back); or DOT that Graphviz
draws and Netron opens (viz/dot.py's, as `graphc viz -o x.dot` writes it). A leaf:
nothing in the pipeline imports it.
"""
from __future__ import annotations

import json

from graphc.compiler.graph import Graph
from graphc.compiler.plan import Plan, compiled_plan
from graphc.tensor_type import format_shape
from graphc.viz.dot import scene_dot
from graphc.viz.scene import build_scene


def emit(graph: Graph, form: str, backward: bool = True) -> str:
    """Return the compiled plan as `plan` text or `json`, after the graph rewrites (compiler/rewrite.py),
    or as `dot`: the graph as written (as `graphc viz` draws it), numbered in the unrewritten plan's order."""
    if form == "dot":
        return plan_dot(graph, compiled_plan(graph, backward))
    p = compiled_plan(graph, backward, rewrites=True)
    if form == "json":
        return json.dumps({"model": graph.model, "plan": p.to_json()}, indent=1)
    return plan_text(p.graph or graph, p)


def _shape(graph: Graph, name: str) -> str:
    t = graph.type_of(name)
    return str(t)


def plan_text(graph: Graph, p: Plan, batch: int = 100) -> str:
    """Return both schedules as readable text."""
    lines = [f"model {graph.model}", ""]
    if p.rewrites:
        lines += [*p.rewrites, ""]
    lines.append("forward schedule:")
    width = max([len(s.node) for s in p.forward] + [4])
    for s in p.forward:
        args = ", ".join(f"{a} {_shape(graph, a)}" for a in s.inputs)
        params = "".join(f", {q} {format_shape(graph.params[q].shape)}" for q in s.params)
        buf = f"buf {s.buffer}" if s.buffer is not None else f"view of {s.inputs[0]}"
        lines.append(f"  {s.index:>3}  {s.node.ljust(width)} = {s.op}({args}{params}) -> "
                     f"{format_shape(tuple(s.shape))}  [{buf}]")
    if p.backward:
        lines += ["", f"backward schedule (gradient of {p.objective}):"]
        for b in p.backward:
            targets = ", ".join(f"d{t}" + ("" if p.fan_in.get(t, 0) < 2 else f" (+= of {p.fan_in[t]})")
                                for t, need in zip(b.targets, b.needs) if need)
            lines.append(f"  {b.index:>3}  d{b.node} -> {targets or '(nothing needed)'}    rule: {b.rule}")
        summed = {t: n for t, n in p.fan_in.items() if n > 1}
        if summed:
            lines.append("  fan-in sums (the add gate reversed): "
                         + ", ".join(f"d{t} = sum of {n}" for t, n in summed.items()))
    lines += ["", f"buffers: {len(p.buffers)} for {len(p.forward)} steps; peak "
              f"{p.peak_bytes(batch) / 1e6:.2f} MB at batch {batch} in float32 "
              f"(without reuse {p.activation_bytes(batch) / 1e6:.2f} MB)"]
    return "\n".join(lines)


def plan_dot(graph: Graph, p: Plan) -> str:
    """Return the compiled graph (numbered, with its backward steps) as Graphviz DOT text.

    The same DOT writer as `graphc viz -o x.dot` (viz/dot.py), so the two never disagree.
    """
    return scene_dot(build_scene(graph, p, backward=bool(p.backward), numbered=True))
