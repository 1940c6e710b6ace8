"""Summary: a typed graph -> the table `graphc check` prints.

Input: a Graph from infer. Output: rows (node, op, shape, params, FLOPs) and
their text or JSON rendering. A leaf: nothing in the pipeline imports it.
"""
from __future__ import annotations

from graphc.compiler.graph import Graph
from graphc.tensor_type import num_elements


def summary_rows(graph: Graph) -> list[dict]:
    """Return one row per node, in schedule order: name, op, shape, parameter count, FLOPs per sample."""
    rows = []
    for name in graph.topological_order():
        node = graph.node(name)
        if node.kind == "const":
            continue
        count = sum(num_elements(graph.params[p].shape) for p in node.params.values())
        if node.kind == "param":
            count = num_elements(graph.params[name].shape)
        t = node.type
        rows.append({"node": name, "op": node.op_name or node.kind, "shape": str(t) if t else "?",
                     "batched": bool(t.batched) if t else True, "params": count,
                     "flops": node.flops, "line": node.span.line if node.span else None})
    return rows


def summary_json(graph: Graph) -> dict:
    """Return the summary as JSON-ready data with totals."""
    rows = summary_rows(graph)
    return {"model": graph.model, "nodes": rows,
            "total_params": sum(r["params"] for r in rows), "total_flops": sum(r["flops"] for r in rows),
            "outputs": graph.outputs, "loss": graph.loss}


def render_summary(graph: Graph) -> str:
    """Return the summary as an aligned text table with a totals line."""
    rows = summary_rows(graph)
    head = ("node", "op", "shape", "params", "FLOPs")
    body = [(r["node"], r["op"], r["shape"] + ("" if r["batched"] else " (no batch)"),
             f"{r['params']:,}", f"{r['flops']:,}") for r in rows]
    total = ("total", "", "", f"{sum(r['params'] for r in rows):,}", f"{sum(r['flops'] for r in rows):,}")
    widths = [max(len(str(x[i])) for x in [head, *body, total]) for i in range(5)]

    def line(cells):
        return "  ".join(str(c).ljust(w) if i < 3 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    rule = "  ".join("-" * w for w in widths)
    out = [f"model {graph.model}: {len(rows)} nodes, FLOPs are per sample (forward)", line(head), rule]
    out += [line(r) for r in body] + [rule, line(total)]
    return "\n".join(out)
