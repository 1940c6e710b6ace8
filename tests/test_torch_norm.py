"""Torch parity for the norm family: every op and every gradcheck sample, in
float64, forward values and all gradients against torch.nn.functional."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch_parity import torch_args  # noqa: E402

F = torch.nn.functional

from op_harness import Case  # noqa: E402

from graphc.ops import lookup  # noqa: E402

NAMES = ("batchnorm", "layernorm", "instancenorm", "groupnorm", "lrn")
CASES = [(name, i) for name in NAMES for i in range(len(lookup(name).samples))]


def _torch_forward(name, attrs, x, params, per_sample):
    """Return torch's output for op `name` on tensor x (batched) and parameter tensors."""
    if name == "batchnorm":
        c = per_sample[0]
        rm, rv = torch.zeros(c, dtype=x.dtype), torch.ones(c, dtype=x.dtype)
        return F.batch_norm(x, rm, rv, params[0], params[1], training=True,
                            momentum=attrs["momentum"], eps=attrs["eps"])
    if name == "layernorm":
        return F.layer_norm(x, per_sample, params[0], params[1], eps=attrs["eps"])
    if name == "instancenorm":
        w, b = (params[0], params[1]) if attrs["affine"] else (None, None)
        return F.instance_norm(x, weight=w, bias=b, eps=attrs["eps"])
    if name == "groupnorm":
        return F.group_norm(x, attrs["groups"], params[0], params[1], eps=attrs["eps"])
    if name == "lrn":
        xt = x.unsqueeze(-1) if len(per_sample) == 1 else x   # torch needs a spatial axis
        y = F.local_response_norm(xt, attrs["size"], alpha=attrs["alpha"], beta=attrs["beta"],
                                  k=attrs["k"])
        return y.reshape(x.shape)
    raise AssertionError(name)


@pytest.mark.parametrize("name,index", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_forward_and_gradients_match_torch(name, index):
    op = lookup(name)
    case = Case(op, op.samples[index], seed=3 + index)
    out, _ = case.forward()
    grad_out = np.random.default_rng(11 + index).standard_normal(out.shape)
    grads = case.backward(grad_out)

    tensors = torch_args(case)
    y = _torch_forward(name, case.attrs, tensors[0], tensors[1:], case.in_types[0].shape)
    y.backward(torch.tensor(grad_out))

    np.testing.assert_allclose(out, y.detach().numpy(), atol=1e-5, err_msg=f"{name} forward")
    assert len(grads) == len(tensors)
    for i, (g, t) in enumerate(zip(grads, tensors)):
        np.testing.assert_allclose(g, t.grad.numpy(), atol=1e-5, err_msg=f"{name} gradient {i}")
