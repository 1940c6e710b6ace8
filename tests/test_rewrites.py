"""Graph rewrites (compiler/rewrite.py): each shows in the plan with its reason, and gives the values
and gradients of the unrewritten graph."""
from __future__ import annotations

import numpy as np
import pytest
from paths import MODELS

from graphc import compile_file
from graphc.cli import main
from graphc.compiler.plan import plan, rewritten_plan
from graphc.program import Program, check_source
from graphc.runtime.execute import Executor
from graphc.tools.bench import random_feeds

POOLS = """
model pools {
  input image: [2, 9, 9]
  label digit: class[3]
  a = conv(image, 4, kernel=3, pad=1) -> relu
  p = maxpool(a, 3, stride=2, pad=1, ceil_mode=true)
  b = conv(p, 3, kernel=2) -> relu -> maxpool(2)
  logits = flatten(b) -> linear(3)
  loss = cross_entropy(logits, digit)
  output probs = softmax(logits)
}
"""

SHARED = """
model shared {
  input x: [1, 4, 4]
  label y: class[2]
  r = relu(x)
  p = maxpool(r, 2)
  logits = flatten(p) -> linear(2)
  extra = flatten(r) -> linear(2)
  loss = cross_entropy(logits + extra, y)
}
"""


def _reference(program: Program, feeds: dict, batch: int):
    """Return (values, grads) of the unrewritten training plan, which computes the outputs too."""
    graph = program.graph
    schedule = plan(graph, list(graph.outputs.values()), backward=True, input_grads=False)
    executor = Executor(graph, schedule, program.dtype)
    values = executor.forward(feeds, program.params, program.state, train=True, rng=program.rng, batch=batch)
    out = values[graph.objective]
    seed = np.full(out.shape, 1.0 / batch if graph.type_of(graph.objective).batched else 1.0, program.dtype)
    return values, {k: np.array(v) for k, v in executor.backward(values, seed).items()}


def _with_ties(feeds: dict) -> dict:
    """Inputs rounded to a coarse grid, many of them exactly 0: maxpool ties and relu's kink both occur."""
    return {k: (np.round(v * 2) / 2).astype(v.dtype) if v.dtype.kind == "f" else v for k, v in feeds.items()}


@pytest.mark.parametrize("source", ["lenet5", "simple_convnet", POOLS])
def test_relu_after_maxpool_gives_the_same_values_and_gradients(source):
    program = (compile_file(MODELS / f"{source}.nn", dtype="float64") if "\n" not in source
               else Program(check_source(source), dtype="float64"))
    feeds = _with_ties(random_feeds(program, 6, seed=2))
    executor = program.executor_for_backward(input_grads=False)
    swaps = [r for r in executor.plan.rewrites if r.startswith("rewrite: relu after maxpool")]
    assert swaps and all("(they commute exactly" in r for r in swaps)
    ops = [s.op for s in executor.plan.forward]
    assert ops.index("maxpool") < ops.index("relu")
    values, grads = program.forward_backward(feeds, train=True, checked=False, input_grads=False)
    ref_values, ref_grads = _reference(program, feeds, 6)
    np.testing.assert_array_equal(values["loss"], ref_values["loss"])
    np.testing.assert_array_equal(values["logits"], ref_values["logits"])
    assert sorted(grads.keys() & set(program.params)) == sorted(program.params)
    for name in program.params:
        np.testing.assert_allclose(grads[name], ref_grads[name], rtol=1e-12, atol=1e-14, err_msg=name)


def test_training_plans_leave_out_outputs_the_objective_does_not_need(capsys):
    program = compile_file(MODELS / "mlp.nn")
    executor = program.executor_for_backward(input_grads=False)
    assert "probs" not in [s.node for s in executor.plan.forward]
    assert any("`probs`" in r and "(the objective does not need them" in r for r in executor.plan.rewrites)
    feeds = random_feeds(program, 5)
    values, grads = program.forward_backward(feeds, train=True, checked=False, input_grads=False)
    ref_values, ref_grads = _reference(program, feeds, 5)
    assert "probs" in ref_values and "probs" not in values
    assert program.loss_value(values) == program.loss_value(ref_values)
    for name in program.params:
        np.testing.assert_array_equal(grads[name], ref_grads[name])
    # inference still computes the output
    assert program.run({"image": feeds["image"]})["probs"].shape == (5, 10)


def test_emit_plan_lists_every_rewrite_with_its_reason(capsys):
    assert main(["compile", str(MODELS / "lenet5.nn"), "--emit", "plan"]) == 0
    text = capsys.readouterr().out
    rewrites = [line for line in text.splitlines() if line.startswith("rewrite: ")]
    assert len(rewrites) == 3 and all(line.endswith(")") and " (" in line for line in rewrites)
    assert "s2.pool" in text and "= relu(s2.pool" in text


def test_a_relu_another_node_reads_is_not_moved():
    program = Program(check_source(SHARED), dtype="float64")
    executor = program.executor_for_backward(input_grads=False)
    assert not any("relu after maxpool" in r for r in executor.plan.rewrites)
    assert [s.op for s in executor.plan.forward][:2] == ["relu", "maxpool"]


def test_inference_plans_are_rewritten_and_give_the_same_outputs():
    program = compile_file(MODELS / "lenet5.nn", dtype="float64")
    feeds = _with_ties(random_feeds(program, 4, seed=1))
    fast = program.run({"image": feeds["image"]})["probs"]
    graph = program.graph
    schedule = plan(graph, ["probs"], backward=False)
    values = Executor(graph, schedule, program.dtype).forward({"image": feeds["image"]}, program.params,
                                                              program.state, train=False, rng=program.rng, batch=4)
    np.testing.assert_array_equal(fast, values["probs"])
    assert rewritten_plan(graph, ["probs"], backward=False).rewrites


def test_plans_with_input_gradients_are_not_rewritten():
    # gradcheck and gradients(intermediates=True) read every intermediate: c1 must stay.
    program = compile_file(MODELS / "lenet5.nn", dtype="float64")
    executor = program.executor_for_backward(input_grads=True)
    assert executor.plan.rewrites == [] and "c1" in [s.node for s in executor.plan.forward]
    grads = program.gradients(random_feeds(program, 2), intermediates=True)
    assert "c1" in grads and "s2.pool" not in grads


def test_the_nan_guard_names_nodes_of_the_rewritten_graph():
    program = compile_file(MODELS / "lenet5.nn")
    executor = program.executor_for_backward(input_grads=False)
    first = executor.plan.without_reuse()
    assert first.graph is executor.plan.graph is not None
    assert first.graph.node("s2.pool").span == program.graph.node("s2").span   # errors point at the maxpool line
    assert "s2.pool" not in program.graph.nx          # the program's own graph is never changed


def test_an_error_about_a_rewritten_node_points_at_the_node_it_came_from():
    from graphc.runtime.execute import nonfinite_error
    graph = compile_file(MODELS / "lenet5.nn").graph
    error = nonfinite_error(graph, "s2.pool", "on this batch")
    assert error.diagnostics[0].message.startswith("`s2` (maxpool) produced NaN or Inf")
    assert error.diagnostics[0].span == graph.node("s2").span
