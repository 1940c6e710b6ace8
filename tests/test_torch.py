"""PyTorch parity for every registered op: every registry sample, float64, forward values
and every gradient against tests/torch_references.py (one table keyed by op name, which
must cover every op, the gates included). Then what the samples do not reach: dropout's
train mode, pooling ties, and conv in float32 at LeNet's sizes."""
from __future__ import annotations

import numpy as np
import pytest
from op_harness import Case

from graphc.ops import Sample, all_ops, lookup

torch = pytest.importorskip("torch")
from torch_references import REFERENCES, torch_args, torch_backward  # noqa: E402

F = torch.nn.functional

CASES = [(op, i) for op in all_ops() for i in range(len(op.samples))]
IDS = [f"{op.name}-{i}" for op, i in CASES]


def test_every_op_has_a_torch_reference():
    missing = sorted(op.name for op in all_ops() if op.name not in REFERENCES)
    assert not missing, f"add a PyTorch reference to tests/torch_references.py for {missing}"
    assert set(REFERENCES) <= {op.name for op in all_ops()}, "a reference names no registered op"


@pytest.mark.parametrize("op,index", CASES, ids=IDS)
def test_matches_torch_forward_and_gradients(op, index):
    case = Case(op, op.samples[index], seed=3 + index)
    train = op.name != "dropout"     # dropout's train mode is random: see below
    out, _ = case.forward(train=train)
    grad_out = np.random.default_rng(11 + index).standard_normal(out.shape)
    grads = case.backward(grad_out, train=train)
    xs = torch_args(case)
    ref_out, ref_grads = torch_backward(xs, REFERENCES[op.name](xs, case), grad_out)
    assert out.shape == ref_out.shape, f"{op.name} forward shape"
    np.testing.assert_allclose(out, ref_out, rtol=1e-7, atol=1e-6, err_msg=f"{op.name} forward")
    assert len(grads) == len(case.args)
    for i, (g, ref) in enumerate(zip(grads, ref_grads)):
        if ref is None:
            assert g is None, f"{op.name} argument {i} should get no gradient"
            continue
        assert g is not None and g.shape == case.args[i].shape, f"{op.name} argument {i}"
        np.testing.assert_allclose(g, ref, rtol=1e-7, atol=1e-6, err_msg=f"{op.name} gradient {i}")
    assert any(ref is not None for ref in ref_grads)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_train_mode_scales_like_torch(p):
    op = lookup("dropout")
    case = Case(op, Sample(((200, 100),), attrs={"p": p}), seed=5)
    x = case.args[0]
    out, _ = case.forward(train=True)
    grad = case.backward(np.ones_like(out), train=True)[0]
    ref = F.dropout(torch.from_numpy(x), p, training=True).numpy()
    for y in (out, ref):
        kept = y != 0
        # Inverted dropout: every kept element is x / (1 - p); about 1 - p of them are kept.
        np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-12)
        assert abs(kept.mean() - (1 - p)) < 0.01
    # The gradient is the same scaled mask that produced the output.
    np.testing.assert_allclose(grad * x, out, rtol=1e-12)
    assert abs((out != 0).mean() - (ref != 0).mean()) < 0.015


@pytest.mark.parametrize("name", ["maxpool", "avgpool"])
@pytest.mark.parametrize("config", [
    {"size": 2}, {"size": 3, "stride": 1, "pad": 1}, {"size": [2, 3], "stride": [2, 1], "pad": [1, 0]}])
def test_pooling_with_ties_matches_torch(name, config):
    """Inputs with many equal values (as after relu): maxpool must route each
    window's gradient to its first maximum exactly as torch does."""
    case = Case(lookup(name), Sample(((3, 6, 8),), config))
    rng = np.random.default_rng(3)
    case.args[0] = rng.integers(0, 3, case.args[0].shape).astype(np.float64)
    out, _ = case.forward()
    grad_out = rng.standard_normal(out.shape)
    xs = torch_args(case)
    ref_out, (ref_grad,) = torch_backward(xs, REFERENCES[name](xs, case), grad_out)
    np.testing.assert_allclose(out, ref_out, atol=1e-12)
    np.testing.assert_allclose(case.backward(grad_out)[0], ref_grad, atol=1e-12)


def test_lenet_shapes_float32_match_torch():
    """LeNet's layers at their real sizes, in float32, against torch (wide columns,
    a 28x28 input with pad 2, and the skipped input gradient of the first conv)."""
    rng = np.random.default_rng(5)
    for shape, attrs in [((1, 28, 28), {"filters": 6, "kernel": 5, "pad": 2}),
                         ((6, 14, 14), {"filters": 16, "kernel": 5})]:
        case = Case(lookup("conv"), Sample((shape,), attrs), dtype=np.float32, batch=8)
        out, _ = case.forward()
        assert out.dtype == np.float32
        xs = [torch.tensor(a, requires_grad=True) for a in case.args]
        expected = REFERENCES["conv"](xs, case)
        np.testing.assert_allclose(out, expected.detach().numpy(), atol=1e-4, rtol=1e-4)
        grad_out = rng.standard_normal(out.shape).astype(np.float32)
        expected.backward(torch.tensor(grad_out))
        for g, ref in zip(case.backward(grad_out), xs):
            assert g.dtype == np.float32
            np.testing.assert_allclose(g, ref.grad.numpy(), atol=2e-3, rtol=1e-4)
