"""Torch parity for the layer and shape ops: for every registry sample, forward
values and every gradient (for a random grad_out) match PyTorch's functional
equivalent in float64."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch_parity import torch_args  # noqa: E402

F = torch.nn.functional

from op_harness import Case  # noqa: E402

from graphc.ops import lookup  # noqa: E402

OPS = ("linear", "conv", "maxpool", "avgpool", "flatten", "reshape", "concat")


def torch_forward(case, tensors):
    """The op computed by PyTorch on torch tensors (inputs then params)."""
    name, a = case.op.name, case.attrs
    x = tensors[0]
    batched = case.in_types[0].batched
    if name == "linear":
        bias = tensors[2] if len(tensors) == 3 else None
        return F.linear(x, tensors[1].T, bias)
    if name == "conv":
        bias = tensors[2] if len(tensors) == 3 else None
        return F.conv2d(x, tensors[1], bias, stride=a["stride"], padding=a["pad"])
    if name == "maxpool":
        return F.max_pool2d(x, a["size"], a["stride"] or a["size"], a["pad"])
    if name == "avgpool":
        return F.avg_pool2d(x, a["size"], a["stride"] or a["size"], a["pad"], count_include_pad=True)
    if name == "flatten":
        return x.reshape(x.shape[0], -1) if batched else x.flatten()
    if name == "reshape":
        return x.reshape((x.shape[0], *a["shape"]) if batched else a["shape"])
    if name == "concat":
        rank = case.in_types[0].rank
        return torch.cat(tensors, dim=a["axis"] % rank + int(batched))
    raise AssertionError(name)


CASES = [(name, i) for name in OPS for i in range(len(lookup(name).samples))]


@pytest.mark.parametrize("name,index", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_forward_and_gradients_match_torch(name, index):
    op = lookup(name)
    case = Case(op, op.samples[index])
    out, _ = case.forward()
    tensors = torch_args(case)
    expected = torch_forward(case, tensors)
    np.testing.assert_allclose(out, expected.detach().numpy(), atol=1e-5, rtol=1e-6)

    grad_out = np.random.default_rng(11).standard_normal(out.shape)
    expected.backward(torch.tensor(grad_out))
    grads = case.backward(grad_out)
    assert len(grads) == len(tensors)
    for i, (g, t) in enumerate(zip(grads, tensors)):
        assert g is not None, f"argument {i} got no gradient"
        np.testing.assert_allclose(g, t.grad.numpy(), atol=1e-5, rtol=1e-6,
                                   err_msg=f"{name} sample {index} argument {i}")


@pytest.mark.parametrize("name", ["maxpool", "avgpool"])
@pytest.mark.parametrize("config", [
    {"size": 2}, {"size": 3, "stride": 1, "pad": 1}, {"size": [2, 3], "stride": [2, 1], "pad": [1, 0]}])
def test_pooling_with_ties_matches_torch(name, config):
    """Inputs with many equal values (as after relu): maxpool must route each
    window's gradient to its first maximum exactly as torch does."""
    from graphc.ops import Sample
    op = lookup(name)
    case = Case(op, Sample(((3, 6, 8),), config))
    rng = np.random.default_rng(3)
    case.args[0] = rng.integers(0, 3, case.args[0].shape).astype(np.float64)
    out, _ = case.forward()
    x = torch.tensor(case.args[0], requires_grad=True)
    expected = torch_forward(case, [x])
    np.testing.assert_allclose(out, expected.detach().numpy(), atol=1e-12)
    grad_out = rng.standard_normal(out.shape)
    expected.backward(torch.tensor(grad_out))
    np.testing.assert_allclose(case.backward(grad_out)[0], x.grad.numpy(), atol=1e-12)


def test_lenet_shapes_float32_match_torch():
    """LeNet's layers at their real sizes, in float32, against torch (wide columns,
    a 28x28 input with pad 2, and the skipped input gradient of the first conv)."""
    from graphc.ops import Sample
    rng = np.random.default_rng(5)
    for shape, attrs in [((1, 28, 28), {"filters": 6, "kernel": 5, "pad": 2}),
                         ((6, 14, 14), {"filters": 16, "kernel": 5})]:
        op = lookup("conv")
        case = Case(op, Sample((shape,), attrs), dtype=np.float32, batch=8)
        out, _ = case.forward()
        assert out.dtype == np.float32
        t = [torch.tensor(a, requires_grad=True) for a in case.args]
        expected = torch_forward(case, t)
        np.testing.assert_allclose(out, expected.detach().numpy(), atol=1e-4, rtol=1e-4)
        grad_out = rng.standard_normal(out.shape).astype(np.float32)
        expected.backward(torch.tensor(grad_out))
        for g, ref in zip(case.backward(grad_out), t):
            assert g.dtype == np.float32
            np.testing.assert_allclose(g, ref.grad.numpy(), atol=2e-3, rtol=1e-4)
