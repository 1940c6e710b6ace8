"""ONNX export: every registry op and every model of models/ runs in onnxruntime with graphc's outputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx_cases import single_op_model

import graphc
from graphc.diagnostics import GraphcError
from graphc.ops import all_ops
from graphc.runtime.feeds import random_feeds
from graphc.tools.onnx_export import export_file, export_program
from graphc.tools.onnx_export_ops import EXPORTERS
from graphc.tools.onnx_import import import_model
from graphc.training.checkpoint import load_weights
from graphc.training.data import load_dataset

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install graphc[onnx])")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install graphc[onnx])")

MODELS = sorted((Path(__file__).parent.parent / "models").glob("*.nn"))
ATOL = 1e-5


def run_ort(model, feeds: dict) -> dict:
    """Return onnxruntime's outputs by name for feeds given by input name."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    wanted = {i.name: feeds[i.name] for i in session.get_inputs()}
    cast = {k: np.asarray(v, np.int64 if np.asarray(v).dtype.kind in "iu" else np.float32) for k, v in wanted.items()}
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, cast)))


def test_every_registry_op_has_an_export():
    assert sorted(op.name for op in all_ops()) == sorted(EXPORTERS)


CASES = [(op, i) for op in all_ops() for i in range(len(op.samples))]


@pytest.mark.parametrize("op,index", CASES, ids=[f"{op.name}-{i}" for op, i in CASES])
def test_op_sample_agrees_with_onnxruntime(op, index):
    """Each gradcheck sample of each op, exported alone, gives graphc's eval-mode output (float32)."""
    model, feeds, expected = single_op_model(op, index)
    got = run_ort(model, feeds)["out"]
    assert got.shape == np.shape(expected)
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_model_agrees_with_onnxruntime(path):
    """Every example model, with its initial (random) weights, gives the same outputs in onnxruntime."""
    program = graphc.compile_file(path)
    model = export_program(program)
    onnx.checker.check_model(model, full_check=True)
    feeds = random_feeds(program.graph, 7, seed=3)
    expected = program.run(feeds)
    got = run_ort(model, feeds)
    assert set(got) <= set(expected) and got
    for name, value in got.items():
        np.testing.assert_allclose(value, expected[name], atol=ATOL, rtol=1e-5, err_msg=name)


def test_export_names_inputs_outputs_and_initializers(tmp_path):
    program = graphc.compile_file(MODELS[[p.stem for p in MODELS].index("lenet5")])
    path = export_file(MODELS[[p.stem for p in MODELS].index("lenet5")], out=tmp_path / "lenet5.onnx")
    model = onnx.load(str(path))
    graph = model.graph
    assert [i.name for i in graph.input] == ["image"]
    assert [o.name for o in graph.output] == ["probs"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert {t.name for t in graph.initializer} == set(program.params)
    assert model.opset_import[0].version == 17
    assert {n.op_type for n in graph.node} >= {"Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Softmax"}


def test_model_without_outputs_exports_its_loss_with_the_labels():
    program = graphc.compile_file(MODELS[[p.stem for p in MODELS].index("mlp_gates")])
    model = export_program(program)
    assert [i.name for i in model.graph.input] == ["x", "t"]
    assert model.graph.input[1].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert [o.name for o in model.graph.output] == ["loss"]


def test_batchnorm_dropout_groupnorm_export_inference_semantics():
    text = """
    model m {
      input x: [4, 3, 3]
      h = conv(x, 6, kernel=3, pad=1) -> batchnorm(momentum=0.2, eps=0.001) -> dropout(0.3)
      output y = groupnorm(h, 3) -> lrn(size=4) -> avgpool(3, stride=1, pad=1) -> flatten -> softmax
    }
    """
    program = graphc.compile_source(text)
    rng = np.random.default_rng(0)
    for value in program.state.values():
        value[...] = rng.uniform(0.5, 1.5, value.shape)
    model = export_program(program)
    assert model.opset_import[0].version == 21
    bn = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in bn.attribute}
    assert attrs["momentum"] == pytest.approx(0.8) and attrs["epsilon"] == pytest.approx(0.001)
    feeds = {"x": rng.normal(size=(5, 4, 3, 3)).astype(np.float32)}
    np.testing.assert_allclose(run_ort(model, feeds)["y"], program.run(feeds)["y"], atol=ATOL, rtol=1e-5)


def test_groupnorm_below_opset_21_is_a_diagnostic_at_its_line():
    text = "model m {\n  input x: [4, 2]\n  output y = groupnorm(x, 2)\n}\n"
    program = graphc.compile_source(text, "g.nn")
    with pytest.raises(GraphcError) as info:
        export_program(program, opset=18)
    (error,) = info.value.errors
    assert "opset 21" in error.message and error.span.line == 3


def test_class_labels_are_int64_inputs_only_for_the_loss():
    program = graphc.compile_file(MODELS[[p.stem for p in MODELS].index("xor")])
    inputs = [i.name for i in export_program(program).graph.input]
    assert inputs == ["x"]
    with_loss = export_program(program, loss=True)
    assert [i.name for i in with_loss.graph.input] == ["x", "y"]
    feeds = random_feeds(program.graph, 4, seed=1)
    got = run_ort(with_loss, feeds)
    assert got["loss"] == pytest.approx(float(program.run(feeds)["loss"]), abs=ATOL)


def test_aliased_outputs_and_helper_names_do_not_collide():
    text = """
    model m {
      input x: [3]
      const = x * 2.0
      h = reshape(const, [3, 1]) -> flatten
      output a = h
      output b = x
    }
    """
    program = graphc.compile_source(text)
    model = export_program(program)
    assert [o.name for o in model.graph.output] == ["a", "b"]
    feeds = {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}
    got, expected = run_ort(model, feeds), program.run(feeds)
    for name in ("a", "b"):
        np.testing.assert_allclose(got[name], expected[name])
    back = import_model(model)
    assert "output b = identity(x)" in back.text
    program_back = graphc.compile_source(back.text)
    np.testing.assert_allclose(program_back.run(feeds)["a"], expected["a"])


def test_trained_digits_cnn_agrees_with_onnxruntime(graphc_run, tmp_path):
    """`graphc run` trains digits_cnn (scikit-learn digits, offline); `graphc export --weights` of its
    weights.npz gives graphc's inference outputs in onnxruntime on every digits test image."""
    path = MODELS[[p.stem for p in MODELS].index("digits_cnn")]
    run = tmp_path / "run"
    status, _, err = graphc_run("run", path, "--out", run, "--set", "epochs=3", "--quiet")
    assert status == 0, err
    status, _, err = graphc_run("export", path, "--weights", run / "weights.npz", "-o", tmp_path / "digits.onnx")
    assert status == 0, err
    model = onnx.load(str(tmp_path / "digits.onnx"))
    onnx.checker.check_model(model, full_check=True)
    program = graphc.compile_file(path)
    initial = {name: value.copy() for name, value in program.params.items()}
    load_weights(program, run / "weights.npz")
    assert all(not np.array_equal(initial[name], value) for name, value in program.params.items())   # trained
    data = load_dataset("digits", seed=0)
    images = data.x_test.reshape(-1, 1, 8, 8)
    expected = program.run({"image": images})["probs"]
    got = run_ort(model, {"image": images})
    assert set(got) == {"probs"} and got["probs"].shape == (len(images), 10)
    np.testing.assert_allclose(got["probs"], expected, atol=ATOL, rtol=1e-5)
    assert (got["probs"].argmax(axis=1) == data.y_test).mean() > 0.8     # weights that learned something
