"""graphc bench and bench/compare.py: they run and report the documented structure (never a time)."""
import json
import subprocess
import sys

import pytest
from paths import MODELS, REPO

from bench import compare
from graphc import compile_file
from graphc.cli import main
from graphc.program import check_source
from graphc.tools.bench import bench, render


def test_bench_json_has_the_documented_keys(capsys):
    assert main(["bench", str(MODELS / "lenet5.nn"), "--steps", "2", "--warmup", "1",
                 "--repeats", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("train_samples_per_s", "infer_samples_per_s", "peak_bytes"):
        assert result[key] > 0
    program = compile_file(MODELS / "lenet5.nn")
    plan = program.executor_for_backward(input_grads=False).plan
    assert [n["node"] for n in result["per_node"]] == [s.node for s in plan.forward]
    for n in result["per_node"]:
        assert set(n) >= {"node", "op", "forward_ms", "backward_ms"}
        assert n["forward_ms"] >= 0 and n["backward_ms"] >= 0
    assert result["peak_bytes"] == plan.peak_bytes(100)
    conv = next(n for n in result["per_node"] if n["op"] == "conv")
    assert conv["forward_ms"] > 0 and conv["backward_ms"] > 0


def test_bench_table_names_every_node(capsys):
    assert main(["bench", str(MODELS / "simple_convnet.nn"), "--steps", "1", "--warmup", "0",
                 "--repeats", "1", "--batch", "8", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "samples/s" in out and "peak buffer memory" in out
    for node in ("h.conv_relu_pool.conv", "h.linear", "logits", "loss", "optimizer"):
        assert node in out


def test_bench_a_model_without_loss_or_params():
    result = bench(compile_file(MODELS / "gates.nn"), 4, steps=1, warmup=0, repeats=1)
    assert result.train_samples_per_s > 0 and [n.node for n in result.per_node] == ["q", "f"]
    assert "gates" in render(result)


def test_bench_rejects_bad_counts(capsys):
    assert main(["bench", str(MODELS / "xor.nn"), "--steps", "0"]) == 1
    assert "--steps must be at least 1" in capsys.readouterr().err


def test_compare_quick_prints_its_table():
    pytest.importorskip("torch")
    done = subprocess.run([sys.executable, "-m", "bench.compare", "--quick", "--batch", "8"],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "CPU:" in out and "threads:" in out
    for model in ("mlp", "lenet5", "simple_convnet"):
        line = next(line for line in out.splitlines() if line.startswith(model))
        assert len(line.split()) >= 8      # train graphc/torch/ratio and inference graphc/torch/ratio
    assert "compile speed" in out and "us/node" in out
    assert "python -m graphc check models/lenet5.nn" in out


def test_compare_separate_times_each_system_in_its_own_process():
    pytest.importorskip("torch")
    done = subprocess.run([sys.executable, "-m", "bench.compare", "--quick", "--batch", "4", "--both",
                           "--no-compile", "--models", "lenet5"],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "one process, interleaved" in out and "each system in its own process, alternating" in out
    rows = [line for line in out.splitlines() if line.startswith("lenet5")]
    assert len(rows) == 2 and all(len(row.split()) >= 8 for row in rows)
    assert out.count("lenet5: graphc ") == 2       # how graphc's step ran, under each table


def test_bench_says_how_the_step_runs_and_which_rewrites_apply(capsys):
    assert main(["bench", str(MODELS / "lenet5.nn"), "--steps", "1", "--warmup", "0", "--repeats", "1",
                 "--batch", "6", "--threads", "2", "--split", "batch"]) == 0
    out = capsys.readouterr().out
    assert "batch split across 2 threads" in out and "rewrite: relu after maxpool" in out
    assert main(["bench", str(MODELS / "lenet5.nn"), "--steps", "1", "--warmup", "0", "--repeats", "1",
                 "--batch", "6", "--threads", "2", "--split", "blas", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["parts"] == 1 and "serial step" in result["split_note"]


def test_compare_without_torch_prints_graphc_only():
    done = subprocess.run([sys.executable, "-m", "bench.compare", "--quick", "--batch", "4",
                           "--no-torch", "--no-compile", "--models", "mlp"],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "PyTorch not available" in done.stdout and "ratio" not in done.stdout
    assert any(line.startswith("mlp") for line in done.stdout.splitlines())


def test_compare_generates_models_of_the_asked_size():
    graph = check_source(compare.chain_source(200), "<chain>")
    assert 195 <= graph.nx.number_of_nodes() <= 205
    assert any(node.op.name == "add" for node in graph.nodes() if node.kind == "op")


# ---- the conv kernel's column layouts (chosen by shape for speed) agree with torch -------

@pytest.mark.parametrize("layout", ["rows", "wide", "narrow"])
@pytest.mark.parametrize("shape,attrs", [
    ((6, 14, 14), {"filters": 16, "kernel": 5}),
    ((1, 12, 12), {"filters": 6, "kernel": 5, "pad": 2}),
    ((3, 9, 8), {"filters": 4, "kernel": [3, 2], "stride": [2, 1], "pad": 1}),
    ((2, 7, 7), {"filters": 3, "kernel": 3, "pad": 1, "bias": False}),
])
def test_conv_column_layouts_agree_with_torch(monkeypatch, layout, shape, attrs):
    torch = pytest.importorskip("torch")
    import numpy as np

    from graphc.ops import Ctx, conv_fast, layers, lookup, resolve_attrs
    from graphc.tensor_type import TensorType
    op = lookup("conv")
    a = resolve_attrs(op, attrs)
    t_in = TensorType(shape)
    out_t = op.shape_rule([t_in], a)
    if layout == "narrow":
        monkeypatch.setattr(conv_fast, "WIDE_LIMIT", 0.0)
    else:
        monkeypatch.setattr(conv_fast, "WIDE_BELOW_OW", 10 ** 6)
        monkeypatch.setattr(layers, "row_columns_pay", lambda g, f: layout == "rows" and g.wide)
    rng = np.random.default_rng(5)
    n = 4
    x = rng.standard_normal((n, *shape))
    w = rng.standard_normal((attrs["filters"], shape[0], *a["kernel"]))
    params = [w] + ([rng.standard_normal(attrs["filters"])] if a["bias"] else [])
    out = np.empty((n, *out_t.shape))
    ctx = Ctx(a, [t_in], out_t, train=True, needs=(True,) * (1 + len(params)), out=out)
    op.forward(ctx, x, *params)
    grad_out = rng.standard_normal(out.shape)
    grads = op.backward(ctx, grad_out, [x, *params], out)
    tx, *tp = [torch.tensor(v, requires_grad=True) for v in [x, *params]]
    ref = torch.nn.functional.conv2d(tx, tp[0], tp[1] if len(tp) > 1 else None, a["stride"], a["pad"])
    ref.backward(torch.tensor(grad_out))
    np.testing.assert_allclose(out, ref.detach().numpy(), atol=1e-10)
    for ours, theirs in zip(grads, [tx, *tp]):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), atol=1e-10)
