"""ONNX import: export -> import round trips, PyTorch-exported models, the CLI and the diagnostics."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx_cases import single_op_model

import graphc
from graphc.diagnostics import GraphcError
from graphc.ops import all_ops
from graphc.runtime.feeds import random_feeds
from graphc.tools.onnx_export import export_program
from graphc.tools.onnx_import import import_file, import_model
from graphc.training.checkpoint import load_weights

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install graphc[onnx])")
helper = onnx.helper

ROOT = Path(__file__).parent.parent
MODELS = sorted((ROOT / "models").glob("*.nn"))
ATOL = 1e-5


def compiled(imported) -> graphc.Program:
    """Return the imported text compiled, with the imported weights loaded."""
    program = graphc.compile_source(imported.text, f"{imported.model}.nn")
    for name, value in imported.weights.items():
        (program.params if name in program.params else program.state)[name][...] = value
    return program


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_export_import_round_trip_gives_the_same_outputs(path):
    original = graphc.compile_file(path)
    rng = np.random.default_rng(1)
    for value in original.state.values():
        value[...] = rng.uniform(0.5, 1.5, value.shape)
    imported = import_model(export_program(original), name=original.graph.model)
    program = compiled(imported)
    feeds = random_feeds(original.graph, 6, seed=2)
    expected = original.run(feeds)
    got = program.run({k: v for k, v in feeds.items() if k in program.graph.inputs + program.graph.labels})
    assert got and set(got) <= set(expected)
    for name, value in got.items():
        np.testing.assert_allclose(value, expected[name], atol=ATOL, rtol=1e-5, err_msg=name)


def test_imported_text_is_readable_layers():
    program = graphc.compile_file(ROOT / "models" / "lenet5.nn")
    text = import_model(export_program(program), name="lenet5").text
    assert "c1_conv = conv(image, 6, kernel=5, pad=2)" in text
    assert "s2 = maxpool(c1, 2)" in text
    assert "logits = linear(f6, 10)" in text
    assert "output probs = softmax(logits)" in text
    assert "input image: [1, 28, 28]" in text


def test_cli_export_import_check_and_viz(graphc_run, tmp_path):
    onnx_path = tmp_path / "lenet5.onnx"
    status, out, err = graphc_run("export", ROOT / "models" / "lenet5.nn", "-o", onnx_path)
    assert status == 0, err
    assert onnx_path.is_file() and str(onnx_path) in out
    status, out, err = graphc_run("import", onnx_path, "-o", tmp_path / "back.nn")
    assert status == 0, err
    assert (tmp_path / "back.nn").is_file() and (tmp_path / "back.npz").is_file()
    status, out, err = graphc_run("check", tmp_path / "back.nn")
    assert status == 0, err
    status, out, err = graphc_run("viz", tmp_path / "back.nn", "-o", tmp_path / "back.dot")
    assert status == 0, err
    program = graphc.compile_file(tmp_path / "back.nn")
    load_weights(program, tmp_path / "back.npz")   # the weights file matches the text


def test_cli_export_with_trained_weights_and_opset(graphc_run, tmp_path):
    program = graphc.compile_file(ROOT / "models" / "xor.nn")
    for value in program.params.values():
        value[...] = 0.25
    from graphc.training.checkpoint import save_weights
    save_weights(program, tmp_path / "w.npz")
    status, _, err = graphc_run("export", ROOT / "models" / "xor.nn", "--weights", tmp_path / "w.npz",
                                "--opset", "19", "-o", tmp_path / "xor.onnx")
    assert status == 0, err
    model = onnx.load(str(tmp_path / "xor.onnx"))
    assert model.opset_import[0].version == 19
    assert all(np.all(onnx.numpy_helper.to_array(t) == 0.25) for t in model.graph.initializer)


def test_cli_errors_are_diagnostics(graphc_run, tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    status, _, err = graphc_run("import", tmp_path / "junk.onnx")
    assert status == 1 and "cannot read" in err and "Traceback" not in err
    status, _, err = graphc_run("export", ROOT / "models" / "xor.nn", "--opset", "11")
    assert status == 1 and "opset 11" in err


def test_unsupported_nodes_are_all_reported_with_name_and_op_type():
    w = np.ones((4, 4, 3, 3), np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="dilated", dilations=[2, 2], kernel_shape=[3, 3]),
             helper.make_node("Erf", ["x"], ["e"], name="erf1"),
             helper.make_node("Softmax", ["x"], ["s"], name="over_batch", axis=0)]
    graph = helper.make_graph(
        nodes, "bad", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4, 5, 5])],
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in ("c", "e", "s")],
        initializer=[onnx.numpy_helper.from_array(w, "w")])
    with pytest.raises(GraphcError) as info:
        import_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    messages = [d.message for d in info.value.errors]
    assert len(messages) == 3
    assert "`dilated` (Conv): dilations [2, 2] are not supported" in messages[0]
    assert "`erf1` (Erf): graphc has no equivalent" in messages[1]
    assert "`over_batch` (Softmax)" in messages[2] and "batch axis" in messages[2]


def test_check_does_not_import_onnx():
    code = ("import sys; from graphc.cli import main; "
            f"main(['check', {str(ROOT / 'models' / 'lenet5.nn')!r}]); "
            "print('ONNX LOADED' if 'onnx' in sys.modules or 'onnxruntime' in sys.modules else 'NO ONNX')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("NO ONNX")


def test_missing_onnx_is_a_diagnostic(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)   # `import onnx` now raises ImportError
    with pytest.raises(GraphcError, match="pip install 'graphc\\[onnx\\]'"):
        export_program(graphc.compile_file(ROOT / "models" / "xor.nn"))


# ---- models exported by PyTorch ----------------------------------------------------------------

def _torch_models():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    nn = torch.nn

    class LeNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
            self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

        def forward(self, x):
            x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
            x = torch.flatten(torch.max_pool2d(torch.relu(self.conv2(x)), 2), 1)
            return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
            self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
            self.short = nn.Sequential() if stride == 1 and cin == cout else \
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(y + self.short(x))

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.bn = nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8)
            self.b1, self.b2 = Block(8, 8, 1), Block(8, 16, 2)
            self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(16, 10)

        def forward(self, x):
            x = self.b2(self.b1(torch.relu(self.bn(self.stem(x)))))
            return self.fc(torch.flatten(self.pool(x), 1))

    return torch, LeNet, ResNet


def _torch_export(torch, module, shape) -> "onnx.ModelProto":
    buffer = io.BytesIO()
    # dynamo=False: the TorchScript exporter (the torch.export one needs onnxscript, not installed here).
    torch.onnx.export(module, (torch.zeros(shape),), buffer, dynamo=False, input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}})
    return onnx.load_from_string(buffer.getvalue())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_pytorch_lenet_and_resnet_import_with_pytorch_outputs():
    torch, LeNet, ResNet = _torch_models()
    torch.manual_seed(0)
    resnet = ResNet()
    for m in resnet.modules():   # non-trivial batchnorm statistics (PyTorch folds them into the convs)
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 1.5), m.weight.data.uniform_(0.5, 1.5)
    # 16x16: the stride-2 convs floor (16 + 2 - 3) / 2 + 1 = 8.5 to 8, as PyTorch does.
    for module, shape in ((LeNet(), (1, 28, 28)), (resnet, (3, 16, 16))):
        module.eval()
        imported = import_model(_torch_export(torch, module, (2, *shape)), name="torch_model")
        x = np.random.default_rng(0).normal(size=(5, *shape)).astype(np.float32)
        expected = module(torch.from_numpy(x)).detach().numpy()
        got = compiled(imported).run({"image": x})["logits"]
        np.testing.assert_allclose(got, expected, atol=ATOL, rtol=1e-5)
    assert "conv1 = conv(image, 6, kernel=5, pad=2)" in import_model(_torch_export(torch, LeNet().eval(), (2, 1, 28, 28))).text


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_imported_pytorch_lenet_trains_one_epoch_on_mnist(real_datasets, graphc_run, tmp_path):
    """One full epoch (60,000 images, ~85 s here): 95.85% test accuracy from PyTorch's initial weights."""
    torch, LeNet, _ = _torch_models()
    torch.manual_seed(0)
    (tmp_path / "lenet.onnx").write_bytes(_torch_export(torch, LeNet().eval(), (2, 1, 28, 28)).SerializeToString())
    nn_path, weights = import_file(tmp_path / "lenet.onnx")
    text = nn_path.read_text()
    # Training needs a label, a loss and a train section: a person adds three lines.
    text = text.replace("\n}\n", "\n  label digit: class[10]\n  loss = cross_entropy(logits, digit)\n}\n"
                        "train { data = mnist; batch = 100; epochs = 1; optimizer = sgd(lr=0.01, momentum=0.9) }\n")
    nn_path.write_text(text)
    status, out, err = graphc_run("run", nn_path, "--weights", weights, "--out", tmp_path / "run", "--quiet")
    assert status == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["samples"]["train"] == 60000 and len(metrics["epochs"]) == 1
    assert metrics["test"]["accuracy"] > 0.9, metrics["test"]


# ---- onnx's shipped "light" real architectures (constant weights: a smoke test of import and shapes) ----

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIGHT_MODELS = [pytest.param(name, marks=() if name == "squeezenet" else pytest.mark.slow) for name in (
    "squeezenet", "inception_v1", "inception_v2", "resnet50", "densenet121", "bvlc_alexnet", "zfnet512", "vgg19")]


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_real_architecture_imports_and_gives_the_reference_output(name):
    model = onnx.load(str(LIGHT / f"light_{name}.onnx"))
    imported = import_model(model, name=name)
    initialized = {t.name for t in model.graph.initializer}
    (image,) = [i for i in model.graph.input if i.name not in initialized]
    shape = [d.dim_value for d in image.type.tensor_type.shape.dim]
    x = (np.arange(np.prod(shape)).reshape(shape) / np.prod(shape)).astype(np.float32)   # onnx's runner input
    got = compiled(imported).run({imported.names[image.name]: x})[imported.names[model.graph.output[0].name]]
    expected = onnx.numpy_helper.to_array(onnx.load_tensor(str(LIGHT / f"light_{name}_output_0.pb")))
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_light_shufflenet_needs_a_transpose():
    with pytest.raises(GraphcError, match=r"\(Transpose\): graphc has no equivalent"):
        import_model(onnx.load(str(LIGHT / "light_shufflenet.onnx")))


# ---- every op sample: export alone, import, run ----------------------------------------------

ROUND_TRIP_CASES = [(op, i) for op in all_ops() if op.family != "loss" for i, s in enumerate(op.samples)
                    if not s.batched or all(s.batched)]   # ONNX graph inputs are batched on import


@pytest.mark.parametrize("op,index", ROUND_TRIP_CASES, ids=[f"{op.name}-{i}" for op, i in ROUND_TRIP_CASES])
def test_op_sample_round_trips(op, index):
    """Each batched gradcheck sample of each op (losses aside), exported alone and imported, runs as graphc."""
    model, feeds, expected = single_op_model(op, index)
    imported = import_model(model, name="op")
    got = compiled(imported).run({imported.names[n]: a for n, a in feeds.items()})
    np.testing.assert_allclose(got[imported.names["out"]], expected, atol=ATOL, rtol=1e-5)
