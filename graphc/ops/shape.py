"""Shape ops: flatten, reshape and concat, which move values without changing them.

flatten and reshape return views of their input (`returns_view=True`) and their
gradient is the incoming gradient reshaped back; concat copies its inputs
side by side along one per-sample axis and hands each input its slice of the
gradient. Shapes are per sample: axis 0 is the first axis after the batch.
"""
from __future__ import annotations

import math

import numpy as np

from graphc.ops.registry import Attr, OpDef, Sample, register
from graphc.tensor_type import ShapeError, TensorType, float_inputs, format_shape


def _runtime(t: TensorType, like: np.ndarray) -> tuple[int, ...]:
    """Run-time shape of type t in a step whose batch size is like.shape[0]."""
    return t.runtime_shape(like.shape[0]) if t.batched else t.shape


def _view_forward(ctx, x):
    # np.reshape gives a view of a contiguous buffer, so nothing is copied.
    return x.reshape(_runtime(ctx.out_type, x))


def _view_backward(ctx, grad_out, args, out):
    # grad_out's values in the input's shape; a view is enough (backward may return grad_out itself).
    return [grad_out.reshape(_runtime(ctx.in_types[0], grad_out)) if ctx.needs[0] else None]


def _no_flops(in_types, out_type, attrs):
    return 0


# ---- flatten ---------------------------------------------------------------------

def _flatten_shape(in_types, attrs):
    float_inputs(in_types, 0)
    x = in_types[0]
    return x.with_shape((x.size,))


register(OpDef(
    name="flatten", family="shape", inputs=("x",), shape_rule=_flatten_shape,
    shape_doc="[d0, d1, ...] -> [d0 * d1 * ...]",
    forward=_view_forward, backward=_view_backward, flops=_no_flops,
    grad_rule="flatten: reshape the gradient back",
    doc="Per-sample shape [d0, d1, ...] -> [d0*d1*...] in row-major order, keeping the batch "
        "axis (torch.flatten(x, start_dim=1)). Returns a view.",
    samples=(Sample(((2, 3, 4),)), Sample(((5,),)), Sample(((),)), Sample(((3, 2),), batched=(False,))),
    saves="none", returns_view=True))


# ---- reshape ---------------------------------------------------------------------

def _reshape_shape(in_types, attrs):
    float_inputs(in_types, 0)
    x = in_types[0]
    target = tuple(attrs["shape"])
    if any(d < 1 and d != -1 for d in target) or target.count(-1) > 1:
        raise ShapeError(f"reshape to {format_shape(target)}: sizes must be positive, with at most one -1",
                         help="-1 stands for the one size worked out from the element count",
                         arg="shape")
    known = math.prod(d for d in target if d != -1)
    if -1 in target:
        if x.size % known:
            raise ShapeError(
                f"cannot reshape {format_shape(x.shape)} ({x.size} elements) to {format_shape(target)}: "
                f"{x.size} is not a multiple of {known}",
                help="the given sizes must divide the element count; shapes are per sample "
                     "(leave the batch out)", arg="shape")
        target = tuple(x.size // known if d == -1 else d for d in target)
    elif known != x.size:
        raise ShapeError(
            f"cannot reshape {format_shape(x.shape)} ({x.size} elements) to "
            f"{format_shape(target)} ({known} elements)",
            help="the element count must stay the same; shapes are per sample (leave the batch out)",
            arg="shape")
    return x.with_shape(target)


register(OpDef(
    name="reshape", family="shape", inputs=("x",), shape_rule=_reshape_shape,
    shape_doc="x -> shape (the same element count; one -1 is worked out)",
    forward=_view_forward, backward=_view_backward, flops=_no_flops,
    grad_rule="reshape: reshape the gradient back",
    doc="Per-sample reshape in row-major order (torch.reshape on every sample); one size may "
        "be -1. Returns a view.",
    attrs=(Attr("shape", "ints", doc="the new per-sample shape; one entry may be -1"),),
    samples=(Sample(((12,),), {"shape": [3, 4]}),
             Sample(((2, 3, 4),), {"shape": [-1, 2]}),
             Sample(((6,),), {"shape": [1, -1, 1]}),
             Sample(((4, 5),), {"shape": [5, 4]}, batched=(False,))),
    saves="none", returns_view=True))


# ---- concat ----------------------------------------------------------------------

def _concat_axis(in_types, attrs) -> int:
    """The per-sample axis, made non-negative; raises ShapeError when out of range."""
    rank, axis = in_types[0].rank, attrs["axis"]
    if rank == 0:
        raise ShapeError("concat needs inputs with at least one axis per sample, got scalars",
                         help="reshape(x, [1]) turns a scalar into a vector", arg=0)
    if not -rank <= axis < rank:
        raise ShapeError(f"axis {axis} is out of range for per-sample shape "
                         f"{format_shape(in_types[0].shape)}",
                         help=f"use an axis from {-rank} to {rank - 1}; 0 is the first axis after "
                              "the batch", arg="axis")
    return axis % rank


def _concat_shape(in_types, attrs):
    float_inputs(in_types, *range(len(in_types)))
    first = in_types[0]
    for i, t in enumerate(in_types[1:], 1):
        if t.batched != first.batched:
            which = (i, 0) if t.batched else (0, i)
            raise ShapeError(
                f"concat mixes batched and unbatched tensors: input {which[0]} has a batch axis, "
                f"input {which[1]} does not",
                help="concatenate data with data, or parameters with parameters", arg=i)
        if t.rank != first.rank:
            raise ShapeError(f"concat input {i} has {t.rank} axes ({format_shape(t.shape)}), "
                             f"input 0 has {first.rank} ({format_shape(first.shape)})",
                             help="all inputs need the same number of axes", arg=i)
    axis = _concat_axis(in_types, attrs)
    for i, t in enumerate(in_types[1:], 1):
        for d, (a, b) in enumerate(zip(first.shape, t.shape)):
            if d != axis and a != b:
                raise ShapeError(
                    f"concat input {i} differs from input 0 in dimension {d}: {b} vs {a} "
                    f"({format_shape(t.shape)} vs {format_shape(first.shape)})",
                    help=f"all inputs must have the same sizes except along axis {axis}", arg=i)
    total = sum(t.shape[axis] for t in in_types)
    return first.with_shape(first.shape[:axis] + (total,) + first.shape[axis + 1:])


def _concat_forward(ctx, *xs):
    axis = _concat_axis(ctx.in_types, ctx.attrs) + int(ctx.in_types[0].batched)
    return np.concatenate(xs, axis=axis, out=ctx.out)


def _concat_backward(ctx, grad_out, args, out):
    axis = _concat_axis(ctx.in_types, ctx.attrs)
    lead = (slice(None),) * (axis + int(ctx.in_types[0].batched))
    grads, start = [], 0
    for i, t in enumerate(ctx.in_types):
        stop = start + t.shape[axis]
        # Each input's gradient is its slice of grad_out: a view, no copy.
        grads.append(grad_out[lead + (slice(start, stop),)] if ctx.needs[i] else None)
        start = stop
    return grads


register(OpDef(
    name="concat", family="shape", inputs=("x",), variadic=True, shape_rule=_concat_shape,
    shape_doc="sizes along axis add up; every other size must agree",
    forward=_concat_forward, backward=_concat_backward, flops=_no_flops,
    grad_rule="concat: each input gets its slice of the gradient",
    doc="Joins one or more tensors along a per-sample axis (torch.cat(xs, dim=axis + 1) for "
        "batched inputs); every other size must agree, and all inputs are batched or none is.",
    attrs=(Attr("axis", "int", 0, "per-sample axis to join along; negative counts from the end"),),
    samples=(Sample(((3,), (4,))),
             Sample(((2, 3), (2, 1), (2, 2)), {"axis": -1}),
             Sample(((2, 3, 2), (1, 3, 2), (3, 3, 2)), {"axis": 0}),
             Sample(((2, 3), (2, 4)), {"axis": 1}, batched=(False, False)),
             Sample(((5,),))),
    saves="none"))
