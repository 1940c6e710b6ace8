"""Reductions: sum and mean over per-sample axes.

Input: one float tensor and an `axis` attribute (an int, a list of ints, or
none for every per-sample axis; 0 is the first per-sample axis, negative
counts from the end). Output: the reduced tensor. The batch axis is never
reduced: a batched input gives a batched result (a batched [] result is one
scalar per sample). An unbatched input reduces its own axes. The backward
rule spreads the gradient back over the reduced axes (divided by the count
for mean), as torch.sum / torch.mean do.
"""
from __future__ import annotations

import numpy as np

from graphc.ops.registry import Attr, OpDef, Sample, register
from graphc.tensor_type import ShapeError, TensorType, float_inputs, format_shape


def reduced_axes(t: TensorType, axis) -> tuple[int, ...]:
    """Return the per-sample axes `axis` names, normalised to 0..rank-1 and sorted.

    Raises ShapeError (arg="axis") for an axis out of range or named twice.
    """
    if axis is None:
        return tuple(range(t.rank))
    given = axis if isinstance(axis, (tuple, list)) else (axis,)
    axes = []
    for a in given:
        if not -t.rank <= a < t.rank:
            span = (f"per-sample axes are 0..{t.rank - 1} (or -{t.rank}..-1 from the end)"
                    if t.rank else "the input has no per-sample axes; leave out `axis`")
            raise ShapeError(f"axis {a} is out of range for shape {format_shape(t.shape)}",
                             help=f"{span}; the batch axis cannot be reduced", arg="axis")
        a %= t.rank
        if a in axes:
            raise ShapeError(f"axis {a} is named twice", help="name each axis once", arg="axis")
        axes.append(a)
    return tuple(sorted(axes))


def _shape(in_types: list[TensorType], attrs: dict) -> TensorType:
    float_inputs(in_types, 0)
    t = in_types[0]
    axes = reduced_axes(t, attrs["axis"])
    if attrs["keepdims"]:
        shape = tuple(1 if i in axes else d for i, d in enumerate(t.shape))
    else:
        shape = tuple(d for i, d in enumerate(t.shape) if i not in axes)
    return t.with_shape(shape)


def _runtime_axes(ctx) -> tuple[int, ...]:
    """Return the array axes to reduce: per-sample axes shifted past the batch axis."""
    t = ctx.in_types[0]
    shift = 1 if t.batched else 0
    return tuple(a + shift for a in reduced_axes(t, ctx.attrs["axis"]))


def _count(ctx) -> int:
    """Return how many elements each output element averages."""
    t = ctx.in_types[0]
    n = 1
    for a in reduced_axes(t, ctx.attrs["axis"]):
        n *= t.shape[a]
    return n


def _sum_forward(ctx, x):
    return np.sum(x, axis=_runtime_axes(ctx), keepdims=ctx.attrs["keepdims"], out=ctx.out)


def _mean_forward(ctx, x):
    return np.mean(x, axis=_runtime_axes(ctx), keepdims=ctx.attrs["keepdims"], out=ctx.out)


def _spread(ctx, g, scale):
    """Return g broadcast back to the input's shape (times scale), as a fresh array."""
    t = ctx.in_types[0]
    in_shape = t.runtime_shape(g.shape[0]) if t.batched else t.shape
    axes = _runtime_axes(ctx)
    # Re-insert the reduced axes as size 1 so NumPy's broadcasting lines them up.
    kept = list(g.shape)
    if not ctx.attrs["keepdims"]:
        for a in axes:
            kept.insert(a, 1)
    grad = np.empty(in_shape, g.dtype)
    if scale == 1:
        np.copyto(grad, g.reshape(kept))
    else:
        np.multiply(g.reshape(kept), scale, out=grad)
    return grad


def _sum_backward(ctx, g, args, out):
    return [_spread(ctx, g, 1) if ctx.needs[0] else None]


def _mean_backward(ctx, g, args, out):
    return [_spread(ctx, g, 1.0 / _count(ctx)) if ctx.needs[0] else None]


def _sum_flops(in_types, out_type, attrs) -> int:
    return in_types[0].size


def _mean_flops(in_types, out_type, attrs) -> int:
    return in_types[0].size + out_type.size


_ATTRS = (Attr("axis", "axis", None, "per-sample axis or axes to reduce; none = all of them"),
          Attr("keepdims", "bool", False, "keep reduced axes with size 1"))

_SAMPLES = (Sample(((3, 4),)), Sample(((3, 4),), attrs={"axis": 0}),
            Sample(((2, 3, 5),), attrs={"axis": -1, "keepdims": True}),
            Sample(((2, 3, 5),), attrs={"axis": [0, 2]}),
            Sample(((2, 3, 5),), attrs={"axis": (2, 0), "keepdims": True}),
            Sample(((),)), Sample(((7,),), attrs={"keepdims": True}),
            Sample(((3, 5),), attrs={"axis": 1}, batched=(False,)),
            Sample(((3, 5),), batched=(False,)))

register(OpDef(
    name="sum", family="reduce", inputs=("x",), shape_rule=_shape, forward=_sum_forward,
    shape_doc="drops the axes named by axis (none: every axis, -> []); keepdims=true keeps them as 1",
    backward=_sum_backward, flops=_sum_flops, grad_rule="sum: copy the gradient over the reduced axes",
    doc="Sum over per-sample axes (torch.sum with dim = those axes, keepdim = keepdims). "
        "axis=none reduces every per-sample axis; the batch axis is kept.",
    samples=_SAMPLES, attrs=_ATTRS, saves="none"))

register(OpDef(
    name="mean", family="reduce", inputs=("x",), shape_rule=_shape, forward=_mean_forward,
    shape_doc="drops the axes named by axis (none: every axis, -> []); keepdims=true keeps them as 1",
    backward=_mean_backward, flops=_mean_flops,
    grad_rule="mean: copy the gradient over the reduced axes, divided by their size",
    doc="Mean over per-sample axes (torch.mean with dim = those axes, keepdim = keepdims). "
        "axis=none averages every per-sample axis; the batch axis is kept.",
    samples=_SAMPLES, attrs=_ATTRS, saves="none"))
