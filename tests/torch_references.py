"""PyTorch references for every registered op, keyed by op name: the one table.

`REFERENCES[name](xs, case)` returns torch's result for a registry sample
(`op_harness.Case`) given its arguments as tensors (`torch_args`: inputs then
parameters, float64, requiring gradients unless a label). tests/test_torch.py
runs every sample of every op through it and asserts that every registered op
has an entry. Gates and shape ops are written per sample (a loop over the batch
with torch's own broadcasting and matmul), which is graphc's definition of a
batched operand. Import after `pytest.importorskip("torch")`.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from graphc.ops.reduce import reduced_axes

F = torch.nn.functional


def torch_args(case) -> list:
    """Return the case's arguments as tensors: float64 (needing a gradient unless a label) or integer."""
    xs = []
    for a, kind, nondiff in zip(case.args, case.kinds, case.nondiff):
        if kind != "float":
            xs.append(torch.from_numpy(a))
        else:
            xs.append(torch.tensor(a, dtype=torch.float64, requires_grad=not nondiff))
    return xs


def torch_backward(xs: list, out, grad_out) -> tuple[np.ndarray, list]:
    """Backpropagate grad_out from torch's output; return (output, each argument's gradient or None)."""
    out.backward(torch.from_numpy(np.asarray(grad_out, dtype=np.float64)))
    return out.detach().numpy(), [x.grad.numpy() if x.requires_grad else None for x in xs]


def _per_sample(fn):
    """Apply fn to one sample's tensors at a time (an unbatched argument is shared) and stack the results."""
    def run(xs, case):
        batched = [t.batched for t in case.in_types] + [False] * (len(xs) - len(case.in_types))
        if not any(batched):
            return fn(*xs)
        n = case.batch
        return torch.stack([fn(*(x[i] if b else x for x, b in zip(xs, batched))) for i in range(n)])
    return run


def _with_batch_axis(fn):
    """Run a torch function that wants a batch axis on an unbatched input, then drop it."""
    def run(xs, case):
        if case.in_types[0].batched:
            return fn(xs, case)
        return fn([xs[0].unsqueeze(0), *xs[1:]], case).squeeze(0)
    return run


# ---- activations, reductions, dropout -------------------------------------------------

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


# ---- layers and shape ops ---------------------------------------------------------------

def _params(xs) -> tuple:
    """(weight, bias or None) of a layer's tensors (input first)."""
    return xs[1], (xs[2] if len(xs) == 3 else None)


def _maxpool(xs, case):
    a = case.attrs
    return F.max_pool2d(xs[0], a["size"], a["stride"] or a["size"], a["pad"], ceil_mode=a["ceil_mode"])


def _avgpool(xs, case):
    a = case.attrs
    return F.avg_pool2d(xs[0], a["size"], a["stride"] or a["size"], a["pad"], ceil_mode=a["ceil_mode"],
                        count_include_pad=True)


def _slice(xs, case):
    t = case.in_types[0]
    axis = case.attrs["axis"] % t.rank + int(t.batched)
    size, start, end = xs[0].shape[axis], case.attrs["start"], case.attrs["end"]
    start = start + size if start < 0 else start
    end = size if end is None else end + size if end < 0 else end
    return torch.narrow(xs[0], axis, start, end - start)


def _concat(xs, case):
    return torch.cat(xs, dim=case.attrs["axis"] % case.in_types[0].rank + int(case.in_types[0].batched))


# ---- norm -------------------------------------------------------------------------------

def _batchnorm(xs, case):
    x, gamma, beta = xs
    c = case.in_types[0].shape[0]
    running_mean, running_var = torch.zeros(c, dtype=x.dtype), torch.ones(c, dtype=x.dtype)
    return F.batch_norm(x, running_mean, running_var, gamma, beta, training=True,
                        momentum=case.attrs["momentum"], eps=case.attrs["eps"])


def _instancenorm(xs, case):
    weight, bias = (xs[1], xs[2]) if case.attrs["affine"] else (None, None)
    return F.instance_norm(xs[0], weight=weight, bias=bias, eps=case.attrs["eps"])


def _lrn(xs, case):
    x, a = xs[0], case.attrs
    spatial = x.unsqueeze(-1) if case.in_types[0].rank == 1 else x   # torch needs a spatial axis
    y = F.local_response_norm(spatial, a["size"], alpha=a["alpha"], beta=a["beta"], k=a["k"])
    return y.reshape(x.shape)


# ---- losses -----------------------------------------------------------------------------

def _shared_target(fn):
    """Call fn(input, target) with an unbatched target expanded over the batch, as graphc
    broadcasts it (torch's autograd then sums the target's gradient over the batch)."""
    def run(xs, case):
        x, t = xs
        if t.is_floating_point() and x.dim() > t.dim():
            t = t.expand_as(x)
        return fn(x, t, case)
    return run


def _one_sample_if_unbatched(fn):
    """Give an unbatched prediction (and label) a batch of one, as graphc counts it."""
    def run(x, t, case):
        if not case.in_types[0].batched:
            x, t = x.unsqueeze(0), t.unsqueeze(0)
        return fn(x, t, case)
    return run


def _kl_div(x, t, case):
    with warnings.catch_warnings():   # torch warns that 'mean' is not the KL definition
        warnings.simplefilter("ignore", UserWarning)
        return F.kl_div(x, t, reduction=case.attrs["reduction"])


REFERENCES = {
    # gates: per-sample torch, torch's broadcasting
    "add": _per_sample(torch.add),
    "sub": _per_sample(torch.sub),
    "mul": _per_sample(torch.mul),
    "div": _per_sample(torch.div),
    "pow": _per_sample(torch.pow),
    "max": _per_sample(torch.maximum),
    "min": _per_sample(torch.minimum),
    "exp": _per_sample(torch.exp),
    "log": _per_sample(torch.log),
    "neg": _per_sample(torch.neg),
    "matmul": _per_sample(torch.matmul),
    # activations
    "identity": lambda xs, case: xs[0] * 1,
    "step": _step,
    "sigmoid": lambda xs, case: torch.sigmoid(xs[0]),
    "tanh": lambda xs, case: torch.tanh(xs[0]),
    "relu": lambda xs, case: torch.relu(xs[0]),
    "leaky_relu": lambda xs, case: F.leaky_relu(xs[0], case.attrs["slope"]),
    "elu": lambda xs, case: F.elu(xs[0], case.attrs["alpha"]),
    "prelu": _with_batch_axis(lambda xs, case: F.prelu(xs[0], xs[1])),
    "softmax": lambda xs, case: torch.softmax(xs[0], dim=_dim(case)),
    "log_softmax": lambda xs, case: torch.log_softmax(xs[0], dim=_dim(case)),
    # reductions and regularisation (dropout in eval mode: train mode is random)
    "sum": _reduce(torch.sum),
    "mean": _reduce(torch.mean),
    "dropout": lambda xs, case: F.dropout(xs[0], case.attrs["p"], training=False),
    # layers
    "linear": lambda xs, case: F.linear(xs[0], _params(xs)[0].T, _params(xs)[1]),
    "conv": _with_batch_axis(lambda xs, case: F.conv2d(xs[0], *_params(xs), stride=case.attrs["stride"],
                                                       padding=case.attrs["pad"])),
    "maxpool": _with_batch_axis(_maxpool),
    "avgpool": _with_batch_axis(_avgpool),
    "global_avgpool": _with_batch_axis(lambda xs, case: F.adaptive_avg_pool2d(xs[0], 1).flatten(1)),
    "global_maxpool": _with_batch_axis(lambda xs, case: F.adaptive_max_pool2d(xs[0], 1).flatten(1)),
    # shape
    "flatten": _per_sample(torch.flatten),
    "reshape": lambda xs, case: _per_sample(lambda x: x.reshape(case.attrs["shape"]))(xs, case),
    "concat": _concat,
    "slice": _slice,
    "pad": lambda xs, case: F.pad(xs[0], list(case.attrs["pads"]), mode="constant", value=case.attrs["value"]),
    # norm
    "batchnorm": _batchnorm,
    "layernorm": lambda xs, case: F.layer_norm(xs[0], case.in_types[0].shape, xs[1], xs[2], eps=case.attrs["eps"]),
    "instancenorm": _instancenorm,
    "groupnorm": lambda xs, case: F.group_norm(xs[0], case.attrs["groups"], xs[1], xs[2], eps=case.attrs["eps"]),
    "lrn": _lrn,
    # losses
    "cross_entropy": _shared_target(lambda x, t, case: F.cross_entropy(x, t)),
    "hinge": _shared_target(_one_sample_if_unbatched(
        lambda x, t, case: F.multi_margin_loss(x, t, margin=case.attrs["margin"]))),
    "mse": _shared_target(lambda x, t, case: F.mse_loss(x, t)),
    "kl_div": _shared_target(_one_sample_if_unbatched(_kl_div)),
    "binary_cross_entropy": _shared_target(lambda x, t, case: F.binary_cross_entropy(x, t)),
    "binary_cross_entropy_with_logits": _shared_target(
        lambda x, t, case: F.binary_cross_entropy_with_logits(x, t)),
}
