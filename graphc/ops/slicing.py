"""Slicing ops: slice (a range along one per-sample axis) and pad (constant padding).

Both copy values without changing them: slice's gradient is the incoming
gradient placed back into zeros of the input's shape, pad's is the incoming
gradient with the padding cut off. Shapes are per sample, as everywhere: axis
0 is the first axis after the batch, and the batch axis is never sliced or
padded. There is no `split` op (an op has one output): a split is several
slices, `a = slice(x, 0, 0, 3)` and `b = slice(x, 0, 3)`.
"""
from __future__ import annotations

import numpy as np

from graphc.ops.registry import Attr, OpDef, Sample, register
from graphc.tensor_type import ShapeError, TensorType, float_inputs, format_shape


def _no_flops(in_types, out_type, attrs):
    return 0


def _lead(t: TensorType) -> tuple:
    """The index prefix that skips a batched tensor's batch axis."""
    return (slice(None),) if t.batched else ()


# ---- slice -----------------------------------------------------------------------

def _slice_bounds(x: TensorType, attrs) -> tuple[int, int, int]:
    """Return (axis, start, end) made non-negative; raise ShapeError when out of range or empty."""
    float_inputs([x], 0)
    rank, axis = x.rank, attrs["axis"]
    if rank == 0:
        raise ShapeError("slice needs an input with at least one axis per sample, got a scalar",
                         help="reshape(x, [1]) turns a scalar into a vector", arg=0)
    if not -rank <= axis < rank:
        raise ShapeError(f"axis {axis} is out of range for per-sample shape {format_shape(x.shape)}",
                         help=f"use an axis from {-rank} to {rank - 1}; 0 is the first axis after the batch",
                         arg="axis")
    axis %= rank
    size = x.shape[axis]
    start = attrs["start"]
    end = size if attrs["end"] is None else attrs["end"]
    for what, value in (("start", start), ("end", end)):
        if not -size <= value <= size:
            raise ShapeError(f"slice {what} {value} is outside axis {axis} of size {size}",
                             help=f"use {-size} to {size}; a negative index counts from the end", arg=what)
    start, end = (start + size if start < 0 else start), (end + size if end < 0 else end)
    if start >= end:
        raise ShapeError(f"slice [{attrs['start']}:{attrs['end'] if attrs['end'] is not None else ''}] of axis "
                         f"{axis} (size {size}) is empty", help="end must come after start", arg="end")
    return axis, start, end


def _slice_shape(in_types, attrs):
    x = in_types[0]
    axis, start, end = _slice_bounds(x, attrs)
    return x.with_shape(x.shape[:axis] + (end - start,) + x.shape[axis + 1:])


def _slice_index(ctx) -> tuple:
    t = ctx.in_types[0]
    axis, start, end = _slice_bounds(t, ctx.attrs)
    return _lead(t) + (slice(None),) * axis + (slice(start, end),)


def _slice_forward(ctx, x):
    np.copyto(ctx.out, x[_slice_index(ctx)])
    return ctx.out


def _slice_backward(ctx, grad_out, args, out):
    t = ctx.in_types[0]
    dx = np.zeros(t.runtime_shape(grad_out.shape[0]) if t.batched else t.shape, grad_out.dtype)
    dx[_slice_index(ctx)] = grad_out
    return [dx]


register(OpDef(
    name="slice", family="shape", inputs=("x",), shape_rule=_slice_shape,
    shape_doc="the size along axis becomes end - start; other axes keep theirs",
    forward=_slice_forward, backward=_slice_backward, flops=_no_flops,
    grad_rule="slice: the gradient placed back into zeros of the input's shape",
    doc="Elements start .. end-1 along one per-sample axis, as x[:, ..., start:end] in PyTorch "
        "(torch.narrow(x, axis + 1, start, end - start) for batched x). A negative axis or index "
        "counts from the end, end=none means the end of the axis; unlike Python an index outside "
        "the axis or an empty range is an error. split is several slices.",
    attrs=(Attr("axis", "int", doc="per-sample axis to slice; negative counts from the end"),
           Attr("start", "int", doc="first index kept; negative counts from the end"),
           Attr("end", "int", None, "index after the last one kept (default: the end of the axis)")),
    samples=(Sample(((6,),), {"axis": 0, "start": 1, "end": 4}),
             Sample(((3, 5),), {"axis": -1, "start": -3}),
             Sample(((4, 2, 3),), {"axis": 1, "start": 0, "end": 1}),
             Sample(((2, 5),), {"axis": 1, "start": 1, "end": -1}, batched=(False,))),
    saves="none"))


# ---- pad -------------------------------------------------------------------------

def _pad_widths(x: TensorType, pads) -> list[tuple[int, int]]:
    """Return (before, after) per per-sample axis from torch's order (last axis first); raise ShapeError."""
    float_inputs([x], 0)
    if len(pads) % 2 or not pads:
        raise ShapeError(f"pad needs pairs (before, after), got {len(pads)} number{'s' * (len(pads) != 1)}",
                         help="e.g. [1, 1, 2, 2] pads the last axis by 1 and the one before by 2", arg="pads")
    if len(pads) > 2 * x.rank:
        raise ShapeError(f"pad gives {len(pads) // 2} pairs for a per-sample shape {format_shape(x.shape)} "
                         f"with {x.rank} axes", help="one pair per axis, last axis first; the batch is "
                                                     "never padded", arg="pads")
    if any(p < 0 for p in pads):
        raise ShapeError(f"pad widths must be >= 0, got {list(pads)}", help="use slice to cut", arg="pads")
    widths = [(0, 0)] * x.rank
    for k in range(len(pads) // 2):
        widths[x.rank - 1 - k] = (pads[2 * k], pads[2 * k + 1])
    return widths


def _pad_shape(in_types, attrs):
    x = in_types[0]
    widths = _pad_widths(x, attrs["pads"])
    return x.with_shape(tuple(d + a + b for d, (a, b) in zip(x.shape, widths)))


def _pad_inner(ctx) -> tuple:
    """The index of the input's values inside the padded output."""
    t = ctx.in_types[0]
    widths = _pad_widths(t, ctx.attrs["pads"])
    return _lead(t) + tuple(slice(a, a + d) for d, (a, _) in zip(t.shape, widths))


def _pad_forward(ctx, x):
    ctx.out.fill(ctx.attrs["value"])
    ctx.out[_pad_inner(ctx)] = x
    return ctx.out


def _pad_backward(ctx, grad_out, args, out):
    return [np.ascontiguousarray(grad_out[_pad_inner(ctx)])]


register(OpDef(
    name="pad", family="shape", inputs=("x",), shape_rule=_pad_shape,
    shape_doc="each padded axis grows by before + after",
    forward=_pad_forward, backward=_pad_backward, flops=_no_flops,
    grad_rule="pad: the gradient with the padding cut off",
    doc="Constant padding, as torch.nn.functional.pad(x, pads, mode='constant', value=value) on "
        "the per-sample axes. Order of pads (torch's): pairs (before, after) starting from the LAST "
        "axis: [left, right] pads the last axis, [left, right, top, bottom] the last two; axes "
        "not named are not padded, the batch never is. Widths are >= 0 (slice cuts).",
    attrs=(Attr("pads", "ints", doc="(before, after) pairs, last axis first: [left, right, top, bottom]"),
           Attr("value", "float", 0.0, "the value written into the padding")),
    samples=(Sample(((4,),), {"pads": [1, 2]}),
             Sample(((2, 3, 3),), {"pads": [1, 1, 2, 0], "value": 0.5}),
             Sample(((2, 3),), {"pads": [0, 1, 1, 0]}),
             Sample(((3,),), {"pads": [2, 0]}, batched=(False,))),
    saves="none"))
