"""Torch parity for activations, reductions and dropout: every registered op of those
families and every sample, float64, forward values and every gradient (atol 1e-5).
Dropout is compared in eval mode, and its train mode by the inverted-dropout scaling."""
from __future__ import annotations

import numpy as np
import pytest
from op_harness import Case

from graphc.ops import Sample, all_ops, lookup
from graphc.ops.reduce import reduced_axes

torch = pytest.importorskip("torch")
from torch_parity import torch_args, torch_backward  # noqa: E402

F = torch.nn.functional

FAMILIES = ("activation", "reduce", "regularize")


def _batched_view(fn):
    """Run a torch function that wants a batch axis on an unbatched input, then drop it."""
    def run(xs, case):
        if case.in_types[0].batched:
            return fn(xs, case)
        return fn([xs[0].unsqueeze(0), *xs[1:]], case).squeeze(0)
    return run


def _dim(case) -> int:
    axis = case.attrs["axis"]
    return axis + 1 if axis >= 0 and case.in_types[0].batched else axis


def _reduce(torch_fn):
    def run(xs, case):
        t = case.in_types[0]
        dims = [a + t.batched for a in reduced_axes(t, case.attrs["axis"])]
        if not dims:     # torch reads dim=[] as "every axis"; reducing nothing is the identity
            return xs[0] * 1
        return torch_fn(xs[0], dim=dims, keepdim=case.attrs["keepdims"])
    return run


def _step(xs, case):
    x = xs[0]
    # heaviside has no autograd rule; adding 0 * x gives the (zero) gradient torch would.
    return torch.heaviside(x.detach(), torch.zeros((), dtype=x.dtype)) + 0 * x


TORCH = {
    "identity": lambda xs, case: xs[0] * 1,
    "step": _step,
    "sigmoid": lambda xs, case: torch.sigmoid(xs[0]),
    "tanh": lambda xs, case: torch.tanh(xs[0]),
    "relu": lambda xs, case: torch.relu(xs[0]),
    "leaky_relu": lambda xs, case: F.leaky_relu(xs[0], case.attrs["slope"]),
    "elu": lambda xs, case: F.elu(xs[0], case.attrs["alpha"]),
    "prelu": _batched_view(lambda xs, case: F.prelu(xs[0], xs[1])),
    "softmax": lambda xs, case: torch.softmax(xs[0], dim=_dim(case)),
    "log_softmax": lambda xs, case: torch.log_softmax(xs[0], dim=_dim(case)),
    "sum": _reduce(torch.sum),
    "mean": _reduce(torch.mean),
    "dropout": lambda xs, case: F.dropout(xs[0], case.attrs["p"], training=False),
}

OPS = [op for op in all_ops() if op.family in FAMILIES]
CASES = [(op, i) for op in OPS for i in range(len(op.samples))]
IDS = [f"{op.name}-{i}" for op, i in CASES]


def torch_forward_backward(case, fn, grad_out):
    """Return torch's output and the gradient of every argument (None where not differentiable)."""
    xs = torch_args(case)
    return torch_backward(xs, fn(xs, case), grad_out)


def test_every_op_of_the_families_has_a_torch_reference():
    assert {op.name for op in OPS} <= set(TORCH), "add a torch reference for the new op"


@pytest.mark.parametrize("op,index", CASES, ids=IDS)
def test_matches_torch_forward_and_gradients(op, index):
    case = Case(op, op.samples[index], seed=3 + index)
    train = op.name != "dropout"     # dropout's train mode is random: see below
    out, _ = case.forward(train=train)
    grad_out = np.random.default_rng(11).standard_normal(out.shape)
    grads = case.backward(grad_out, train=train)
    ref_out, ref_grads = torch_forward_backward(case, TORCH[op.name], grad_out)
    np.testing.assert_allclose(out, ref_out, atol=1e-5, err_msg=f"{op.name} forward")
    compared = 0
    for i, (g, ref) in enumerate(zip(grads, ref_grads)):
        if ref is None:
            assert g is None
            continue
        np.testing.assert_allclose(g, ref, atol=1e-5, err_msg=f"{op.name} gradient {i}")
        compared += 1
    assert compared == len(case.args)


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
