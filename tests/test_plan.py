"""The typed graph and the compiled plan: Node records, one topological order, schedules, buffers, emit."""
from __future__ import annotations

import json

import networkx as nx
import numpy as np
from paths import MODELS

import graphc
from graphc.cli import main
from graphc.compiler.build import build
from graphc.compiler.graph import Node
from graphc.compiler.infer import infer
from graphc.compiler.plan import Plan, compiled_plan
from graphc.diagnostics import Diagnostics
from graphc.language.parse import parse_program
from graphc.ops import OpDef
from graphc.tools.summary import summary_rows
from graphc.viz.dot import dot_ids


def compile64(text: str) -> graphc.Program:
    return graphc.compile_source(text, "t.nn", dtype="float64")


# ---- the graph's records ------------------------------------------------------------

def test_every_node_is_a_record_and_op_nodes_hold_their_resolved_op():
    graph = graphc.program.check_file(MODELS / "lenet5.nn")
    kinds = {}
    for name in graph.nx.nodes:
        node = graph.node(name)
        assert isinstance(node, Node) and node.name == name
        kinds.setdefault(node.kind, []).append(name)
        assert (node.kind == "op") == isinstance(node.op, OpDef)
        assert node.type is not None
    assert set(kinds) == {"input", "label", "op"}
    conv = graph.node("c1.conv")
    assert conv.op.name == conv.op_name == "conv" and conv.inputs == ("image",)
    assert conv.params == {"weight": "c1.weight", "bias": "c1.bias"} and conv.flops > 0
    assert conv.span.line == graph.node("c1").span.line
    assert [n.name for n in graph.nodes()] == list(graph.nx.nodes)


def test_a_node_that_reads_one_value_twice_lists_it_twice_with_one_edge():
    graph = compile64("model m { input x: [3]; output y = x * x }").graph
    assert graph.node("y").inputs == ("x", "x")
    assert graph.nx.edges["x", "y"]["slots"] == [0, 1]


def test_one_topological_order_is_networkx_order_for_every_stage():
    graph = graphc.program.check_source(mlp_source(5), "deep.nn")
    order = graph.topological_order()
    assert order == list(nx.topological_sort(graph.nx))
    assert graph.topological_order() is order          # computed once per graph
    assert graph.op_nodes() == [n for n in order if graph.node(n).kind == "op"]
    assert [s.node for s in compiled_plan(graph).forward] == graph.op_nodes()
    assert [r["node"] for r in summary_rows(graph)] == [n for n in order if graph.node(n).kind != "const"]


def test_a_node_that_failed_to_type_keeps_type_none():
    diagnostics = Diagnostics()
    graph = build(parse_program(text="model m { input x: [3]; h = linear(x, 4); output y = h + x }", name="t.nn"),
                  diagnostics)
    infer(graph, diagnostics)
    assert diagnostics.has_errors
    assert graph.type_of("h") is not None and graph.type_of("y") is None


# ---- the plan ----------------------------------------------------------------------

def mlp_source(layers: int, width: int = 64) -> str:
    lines = ["model deep {", "  input x: [64]", "  label y: class[10]", "  h0 = x"]
    for i in range(1, layers + 1):
        lines.append(f"  h{i} = linear(h{i - 1}, {width}) -> relu")
    lines += [f"  logits = linear(h{layers}, 10)", "  loss = cross_entropy(logits, y)",
              "  output p = softmax(logits)", "}"]
    return "\n".join(lines)


def test_inference_buffers_are_reused_far_below_the_sum_of_activations():
    graph = graphc.program.check_source(mlp_source(20), "deep.nn")
    p = compiled_plan(graph, backward=False)
    assert len(p.buffers) <= 4
    assert p.peak_bytes(100) * 5 < p.activation_bytes(100)


def test_training_plan_keeps_what_backward_reads_and_still_reuses_buffers():
    graph = graphc.program.check_source(mlp_source(20), "deep.nn")
    p = compiled_plan(graph, backward=True)
    assert p.peak_bytes(100) < p.activation_bytes(100)
    # Values read by backward keep their buffers until their backward step: no two live
    # values share a buffer (checked by running the plan against an unplanned reference).
    prog = graphc.Program(graph, dtype="float64", seed=0)
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((5, 64)), "y": rng.integers(0, 10, 5)}
    values, grads = prog.forward_backward(feeds)
    w = prog.params["h1.weight"]
    h = np.maximum(feeds["x"] @ w + prog.params["h1.bias"], 0)
    np.testing.assert_allclose(values["h1"], h)
    assert np.all(np.isfinite(grads["h1.weight"]))


def test_plan_json_round_trips(capsys):
    assert main(["compile", str(MODELS / "lenet5.nn"), "--emit", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    plan = Plan.from_json(data["plan"])
    assert plan.to_json() == data["plan"]
    # relu moved after the maxpool (compiler/rewrite.py), which the plan says
    assert [s.op for s in plan.forward][:3] == ["conv", "maxpool", "relu"]
    assert any(r.startswith("rewrite: relu after maxpool") for r in plan.rewrites)
    assert plan.backward[0].rule.startswith("fused softmax-cross-entropy")


def test_emit_plan_shows_rules_buffers_and_fan_in(capsys):
    path = MODELS / "gates.nn"
    assert main(["compile", str(path)]) == 0
    text = capsys.readouterr().out
    assert "rule: mul: swap" in text and "rule: add: pass-through" in text and "[buf" in text
    prog = compile64("model m { input x: []; output f = x * x + x }")
    from graphc.tools.emit import plan_text
    text = plan_text(prog.graph, compiled_plan(prog.graph))
    assert "dx = sum of 3" in text


def test_emit_dot_names_every_node_and_edge(capsys):
    assert main(["compile", str(MODELS / "lenet5.nn"), "--emit", "dot"]) == 0
    dot = capsys.readouterr().out
    graph = graphc.program.check_file(MODELS / "lenet5.nn")
    ids = dot_ids(list(graph.nx.nodes))        # DOT node ids are identifiers (Netron reads the file too)
    for node in graph.nx.nodes:
        assert f'"{ids[node]}" [label="name: {ids[node]} type: ' in dot and f'graphc_name="{node}"' in dot
    for u, v in graph.nx.edges:
        assert f'"{ids[u]}" -> "{ids[v]}" [id="edge:{u}->{v}"' in dot


def test_training_plan_skips_the_gradient_of_the_data():
    graph = graphc.program.check_file(MODELS / "lenet5.nn")
    p = compiled_plan(graph)
    first_conv = next(b for b in p.backward if b.node == "c1.conv")
    assert dict(zip(first_conv.targets, first_conv.needs))["image"] is False



def test_relu_runs_in_place_over_a_linear_output_nothing_else_reads():
    graph = graphc.program.check_file(MODELS / "mlp.nn")
    steps = {s.node: s for s in compiled_plan(graph).forward}
    assert steps["h1"].buffer == steps["h1.linear"].buffer


def test_relu_does_not_overwrite_a_value_another_step_still_reads():
    prog = compile64("model m { input x: [3]; h = linear(x, 4); a = relu(h); output y = a + h * 2 }")
    steps = {s.node: s for s in compiled_plan(prog.graph).forward}
    assert steps["a"].buffer != steps["h"].buffer
    x = np.array([[1.0, -2.0, 0.5]])
    h = x @ prog.params["h.weight"] + prog.params["h.bias"]
    np.testing.assert_allclose(prog.run({"x": x})["y"], np.maximum(h, 0) + 2 * h)
