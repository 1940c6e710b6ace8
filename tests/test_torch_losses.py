"""Torch parity for losses: every registered loss and every sample, float64, the loss
value and every gradient (atol 1e-5) against torch.nn.functional."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from op_harness import Case

from graphc.ops import all_ops

torch = pytest.importorskip("torch")
from torch_parity import torch_args, torch_backward  # noqa: E402

F = torch.nn.functional


def _shared_target(fn):
    """Call fn(input, target) with an unbatched target expanded over the batch, as graphc
    broadcasts it (torch's autograd then sums the target's gradient over the batch)."""
    def run(x, t, case):
        if t.is_floating_point() and x.dim() > t.dim():
            t = t.expand_as(x)
        return fn(x, t, case)
    return run


def _unbatched_as_one_sample(fn):
    """Give an unbatched prediction (and label) a batch of one, as graphc counts it."""
    def run(x, t, case):
        if not case.in_types[0].batched:
            x, t = x.unsqueeze(0), t.unsqueeze(0)
        return fn(x, t, case)
    return run


def _cross_entropy(x, t, case):
    return F.cross_entropy(x, t)


def _hinge(x, t, case):
    return F.multi_margin_loss(x, t, margin=case.attrs["margin"])


def _kl_div(x, t, case):
    with warnings.catch_warnings():   # torch warns that 'mean' is not the KL definition
        warnings.simplefilter("ignore", UserWarning)
        return F.kl_div(x, t, reduction=case.attrs["reduction"])


TORCH = {
    "cross_entropy": _shared_target(_cross_entropy),
    "hinge": _unbatched_as_one_sample(_hinge),
    "mse": _shared_target(lambda x, t, case: F.mse_loss(x, t)),
    "kl_div": _unbatched_as_one_sample(_shared_target(_kl_div)),
    "binary_cross_entropy": _shared_target(lambda x, t, case: F.binary_cross_entropy(x, t)),
    "binary_cross_entropy_with_logits": _shared_target(
        lambda x, t, case: F.binary_cross_entropy_with_logits(x, t)),
}

OPS = [op for op in all_ops() if op.family == "loss"]
CASES = [(op, i) for op in OPS for i in range(len(op.samples))]
IDS = [f"{op.name}-{i}" for op, i in CASES]


def torch_forward_backward(case, fn, grad_out):
    """Return torch's output and the gradient of every argument (None where not differentiable)."""
    xs = torch_args(case)
    return torch_backward(xs, fn(*xs, case), grad_out)


def test_every_loss_has_a_torch_reference():
    assert {op.name for op in OPS} <= set(TORCH), "add a torch reference for the new loss"


@pytest.mark.parametrize("op,index", CASES, ids=IDS)
def test_matches_torch_loss_and_gradients(op, index):
    case = Case(op, op.samples[index], seed=17 + index)
    out, _ = case.forward()
    assert out.shape == () and case.out_type.batched is False
    grad_out = np.asarray(np.random.default_rng(5).standard_normal())
    grads = case.backward(grad_out)
    ref_out, ref_grads = torch_forward_backward(case, TORCH[op.name], grad_out)
    np.testing.assert_allclose(out, ref_out, atol=1e-5, err_msg=f"{op.name} loss")
    compared = 0
    for i, (g, ref) in enumerate(zip(grads, ref_grads)):
        if ref is None:
            assert g is None, f"{op.name} argument {i} should get no gradient"
            continue
        assert g.shape == case.args[i].shape
        np.testing.assert_allclose(g, ref, atol=1e-5, err_msg=f"{op.name} gradient {i}")
        compared += 1
    assert compared >= 1
