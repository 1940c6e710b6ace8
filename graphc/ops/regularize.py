"""Regularisers that act inside the network: dropout.

Input: a float tensor, the step's mode (`ctx.train`) and noise source
(`ctx.rng`). Output: a tensor of the same shape. Dropout follows PyTorch's
inverted dropout (torch.nn.functional.dropout): in training each element is
kept with probability 1 - p and scaled by 1 / (1 - p), so the expected value
is unchanged and evaluation is a plain copy.
"""
from __future__ import annotations

import numpy as np

from graphc.ops.registry import Attr, OpDef, Sample, register
from graphc.tensor_type import ShapeError, TensorType, float_inputs


def _shape(in_types: list[TensorType], attrs: dict) -> TensorType:
    float_inputs(in_types, 0)
    if not attrs["p"] < 1:
        raise ShapeError(f"dropout probability p must be below 1, got {attrs['p']:g}",
                         help="p is the fraction of elements dropped; p=1 would drop everything "
                              "(try p=0.5)", arg="p")
    return in_types[0].with_shape(in_types[0].shape)


def _forward(ctx, x):
    p = ctx.attrs["p"]
    if not ctx.train or p == 0:
        # Evaluation (and p = 0) is the identity, as F.dropout(training=False).
        np.copyto(ctx.out, x)
        return ctx.out
    # Inverted dropout: keep where u >= p (probability 1 - p), scale the kept by 1/(1-p).
    # The uniform draw's buffer is reused to hold the scaled mask that backward needs.
    mask = ctx.rng.random(x.shape, dtype=x.dtype)
    keep = mask >= p
    np.multiply(keep, x.dtype.type(1.0 / (1.0 - p)), out=mask)
    ctx.saved["mask"] = mask
    return np.multiply(x, mask, out=ctx.out)


def _backward(ctx, g, args, out):
    if not ctx.needs[0]:
        return [None]
    mask = ctx.saved.get("mask")
    # Without a mask (evaluation or p = 0) the op was the identity.
    return [g if mask is None else g * mask]


def _flops(in_types, out_type, attrs) -> int:
    return out_type.size


register(OpDef(
    name="dropout", family="regularize", inputs=("x",), shape_rule=_shape, forward=_forward,
    shape_doc="x -> the same shape",
    backward=_backward, flops=_flops, grad_rule="dropout: g times the saved scaled mask",
    doc="Inverted dropout as torch.nn.functional.dropout: in training each element is zeroed "
        "with probability p and the kept ones are scaled by 1/(1-p); in evaluation it is the "
        "identity. The mask is drawn from the step's random generator and reused by backward. "
        "p must lie in [0, 1).",
    samples=(Sample(((3, 4),)), Sample(((2, 3, 5),), attrs={"p": 0.2}), Sample(((),)),
             Sample(((7,),), attrs={"p": 0.0}), Sample(((5, 3),), attrs={"p": 0.9}, batched=(False,))),
    attrs=(Attr("p", "float", 0.5, "probability of dropping an element, in [0, 1)", minimum=0.0),),
    saves="none"))
