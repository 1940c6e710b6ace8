"""Layers with learnable weights: linear and conv.

linear is one GEMM over every leading axis; conv is im2col plus one GEMM, its
input gradient a col2im over kernel offsets. The registered conv kernel runs on
the fast column layouts of conv_fast.py (see its docstring for why); im2col.py
holds the textbook reference it is tested against. Shapes are per sample: conv
takes [channels, height, width]; its output size comes from kernels.conv_out_size
(floor rounding, as PyTorch).
"""
from __future__ import annotations

import numpy as np

from graphc.ops.conv_fast import (
    POOL,
    col2im,
    col2im_rows,
    column_geometry,
    from_columns,
    give_columns,
    give_grad_columns,
    give_shifted_gradients,
    im2col,
    per_sample,
    row_columns_pay,
    row_sums,
    shifted_gradients,
    to_columns,
)
from graphc.ops.kernels import conv_out_size, dropped_rows_warning, image_shape, image_type, same_pad
from graphc.ops.registry import Attr, OpDef, OpWarning, ParamSpec, Sample, register
from graphc.tensor_type import ShapeError, float_inputs


def _has_bias(attrs: dict) -> bool:
    return attrs["bias"]


# ---- linear ----------------------------------------------------------------------

def _linear_shape(in_types, attrs):
    float_inputs(in_types, 0)
    x = in_types[0]
    if x.rank == 0:
        raise ShapeError("linear needs a vector per sample, got a scalar",
                         help="linear maps the last axis [..., in] to [..., units]", arg=0)
    return x.with_shape(x.shape[:-1] + (attrs["units"],))


def _linear_forward(ctx, x, weight, bias=None):
    n_in, units = weight.shape
    out = ctx.out.reshape(-1, units)   # every leading axis (batch included) folds into one GEMM
    np.matmul(x.reshape(-1, n_in), weight, out=out)
    if bias is not None:
        np.add(out, bias, out=out)
    return ctx.out


def _linear_backward(ctx, grad_out, args, out):
    x, weight = args[0], args[1]
    n_in, units = weight.shape
    grad = grad_out.reshape(-1, units)
    grads = [(grad @ weight.T).reshape(x.shape) if ctx.needs[0] else None,
             x.reshape(-1, n_in).T @ grad if ctx.needs[1] else None]
    if len(args) == 3:
        grads.append(grad.sum(axis=0) if ctx.needs[2] else None)
    return grads


def _linear_flops(in_types, out_type, attrs):
    rows = out_type.size // attrs["units"]
    return rows * attrs["units"] * (2 * in_types[0].shape[-1] + int(attrs["bias"]))


register(OpDef(
    name="linear", family="layer", inputs=("x",), other_names=("affine",),
    shape_doc="[..., in] -> [..., units]",
    shape_rule=_linear_shape, forward=_linear_forward, backward=_linear_backward,
    flops=_linear_flops, grad_rule="linear: g @ W^T, x^T @ g, sum of g",
    doc="Affine map of the last axis: x @ weight + bias with weight [in, units] "
        "(torch.nn.functional.linear(x, weight.T, bias)). Leading axes are kept.",
    attrs=(Attr("units", "int", doc="output features", minimum=1),
           Attr("bias", "bool", True, "add a learnable bias")),
    params=(ParamSpec("weight", lambda t, a: (t[0].shape[-1], a["units"]), "he", layout="linear"),
            ParamSpec("bias", lambda t, a: (a["units"],), "zeros", decay=False,
                      follows_default=False, enabled=_has_bias)),
    samples=(Sample(((5,),), {"units": 3}),
             Sample(((2, 4),), {"units": 7}),
             Sample(((6,),), {"units": 1, "bias": False}),
             Sample(((5,),), {"units": 2}, batched=(False,))),
    expansion="x @ weight + bias"))


# ---- conv ------------------------------------------------------------------------

def _conv_shape(in_types, attrs):
    x = image_type(in_types, "conv")
    c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = attrs["kernel"], attrs["stride"], attrs["pad"]
    oh = conv_out_size(h, kh, sh, ph, what="conv output height")
    ow = conv_out_size(w, kw, sw, pw, what="conv output width")
    return x.with_shape((attrs["filters"], oh, ow))


def _conv_warnings(in_types, attrs, out_type):
    """A warning when the floor of the output size leaves input rows or columns unread."""
    dropped = dropped_rows_warning("conv", in_types[0].shape[1:], attrs["kernel"], attrs["stride"], attrs["pad"],
                                   out_type.shape[1:])
    return [OpWarning(*dropped)] if dropped else []


def _conv_resolve(attrs):
    return same_pad(attrs, "kernel", attrs["stride"])


def _conv_geometry(ctx, a):
    """Return the ColumnGeometry of this step, given its input or grad_out."""
    return column_geometry(image_shape(ctx, a), ctx.attrs, ctx.out_type.shape[1:])


def _conv_forward(ctx, x, weight, bias=None):
    geo = _conv_geometry(ctx, x)
    filters = weight.shape[0]
    rows_only = row_columns_pay(geo, filters)
    # The bias rides in the GEMM: a column of the weight against the columns' row of ones.
    if rows_only:
        # Weights stacked as (j, f) rows against (c, i) columns (see conv_fast.row_sums).
        matrix = np.zeros((geo.kw, filters, geo.c * geo.kh + (bias is not None)), weight.dtype)
        matrix[:, :, :geo.c * geo.kh] = weight.transpose(3, 0, 1, 2).reshape(geo.kw, filters, -1)
        if bias is not None:
            matrix[0, :, -1] = bias
        matrix = matrix.reshape(geo.kw * filters, -1)
    else:
        matrix = weight.reshape(filters, -1)
        if bias is not None:
            matrix = np.concatenate([matrix, bias.reshape(filters, 1)], axis=1)
    cols = im2col(x.reshape(geo.n, geo.c, geo.h, geo.w), geo, ones_row=bias is not None, rows_only=rows_only)
    out = ctx.out.reshape(geo.n, filters, geo.oh, geo.ow)
    if geo.wide:
        product = POOL.take("product", (matrix.shape[0], geo.cols), x.dtype)
        np.matmul(matrix, cols, out=product)     # the one GEMM (BLAS threads it)
        from_columns(row_sums(product, geo, filters) if rows_only else product, geo, out)
        POOL.give("product", product)
    else:
        # One GEMM per sample, read and written in place: the output lands in NCHW order.
        np.matmul(matrix, per_sample(cols, geo), out=out.reshape(geo.n, filters, geo.oh * geo.ow))
    if any(ctx.needs[1:]):
        ctx.saved["cols"] = cols    # the weight and bias gradients need them; the input gradient does not
    else:
        give_columns(cols, geo, rows_only)
    return ctx.out


def _conv_backward(ctx, grad_out, args, out):
    x, weight = args[0], args[1]
    has_bias = len(args) == 3
    geo = _conv_geometry(ctx, x)
    filters = weight.shape[0]
    if row_columns_pay(geo, filters):
        return _conv_backward_rows(ctx, grad_out, x, weight, has_bias, geo)
    grad = grad_out.reshape(geo.n, filters, geo.oh, geo.ow)
    # Wide columns: the gradient as an (F, N*OH*OWc) matrix, zero in the wide columns.
    # Narrow: grad_out as it is, sample n's (F, OH*OW) block against its columns.
    g_cols = to_columns(grad, geo) if geo.wide else None
    g_per_sample = None if geo.wide else grad.reshape(geo.n, filters, geo.oh * geo.ow)
    grads = [None, None] + ([None] if has_bias else [])
    if ctx.needs[0]:
        matrix_t = weight.reshape(filters, -1).T
        dcols = POOL.take("dcols", (geo.rows, geo.cols), grad.dtype)
        if geo.wide:
            np.matmul(matrix_t, g_cols, out=dcols)
        else:
            np.matmul(matrix_t, g_per_sample, out=per_sample(dcols, geo))
        grads[0] = col2im(dcols, geo, overwrite=True).reshape(x.shape)
        POOL.give("dcols", dcols)
    if any(ctx.needs[1:]):
        # pop: the columns go back to the pool once used (a second backward rebuilds them).
        cols = ctx.saved.pop("cols", None)
        if cols is None:
            cols = im2col(x.reshape(geo.n, geo.c, geo.h, geo.w), geo, ones_row=has_bias)
        if geo.wide:
            full = g_cols @ cols.T
        else:
            # One product per sample, summed over the batch (1.2-1.5x faster than one GEMM
            # over a transposed copy of grad_out, and no copy).
            full = np.matmul(g_per_sample, per_sample(cols, geo).transpose(0, 2, 1)).sum(axis=0)
        give_columns(cols, geo)
        if ctx.needs[1]:
            grads[1] = np.ascontiguousarray(full[:, :geo.rows]).reshape(weight.shape)
        if has_bias and ctx.needs[2]:
            # The row of ones: this column is grad_out summed over samples and positions
            # (wide padding columns of the gradient are zero).
            grads[2] = full[:, geo.rows].copy()
    if g_cols is not None:
        give_grad_columns(g_cols, geo)
    return grads


def _conv_backward_rows(ctx, grad_out, x, weight, has_bias, geo):
    """The backward pass of a conv whose forward used row columns (see conv_fast.row_sums)."""
    filters = weight.shape[0]
    shifted = shifted_gradients(grad_out.reshape(geo.n, filters, geo.oh, geo.ow), geo)   # (kw*F, N*OH*OWc)
    grads = [None, None] + ([None] if has_bias else [])
    if ctx.needs[0]:
        # Rows (c, i), columns (j, f): the column gradients already summed over j.
        matrix_t = weight.transpose(1, 2, 3, 0).reshape(geo.c * geo.kh, geo.kw * filters)
        grads[0] = col2im_rows(matrix_t @ shifted, geo).reshape(x.shape)
    if any(ctx.needs[1:]):
        cols = ctx.saved.pop("cols", None)
        if cols is None:
            cols = im2col(x.reshape(geo.n, geo.c, geo.h, geo.w), geo, ones_row=has_bias, rows_only=True)
        full = shifted @ cols.T                   # rows (j, f), columns (c, i) [+ bias]
        give_columns(cols, geo, rows_only=True)
        if ctx.needs[1]:
            per_offset = full[:, :geo.c * geo.kh].reshape(geo.kw, filters, geo.c, geo.kh)
            grads[1] = np.ascontiguousarray(per_offset.transpose(1, 2, 3, 0))
        if has_bias and ctx.needs[2]:
            grads[2] = full[:filters, -1].copy()     # block j = 0 against the row of ones
    give_shifted_gradients(shifted, geo)
    return grads


def _conv_flops(in_types, out_type, attrs):
    c = in_types[0].shape[0]
    kh, kw = attrs["kernel"]
    return out_type.size * (2 * c * kh * kw + int(attrs["bias"]))


def _conv_weight_shape(in_types, attrs):
    return (attrs["filters"], in_types[0].shape[0], *attrs["kernel"])


register(OpDef(
    name="conv", family="layer", inputs=("x",), shape_rule=_conv_shape,
    shape_doc="[C, H, W] -> [filters, floor((H + 2*pad - kernel) / stride) + 1, the same for W]",
    warn_rule=_conv_warnings, resolve=_conv_resolve,
    forward=_conv_forward, backward=_conv_backward, flops=_conv_flops,
    grad_rule="fused conv: GEMM with the im2col columns; col2im over kernel offsets",
    doc="2-D cross-correlation with zero padding, as torch.nn.functional.conv2d(x, weight, bias, "
        "stride, padding): weight [filters, channels, kh, kw]; output size "
        "floor((H + 2*pad - kernel) / stride) + 1, at least 1 (`check` warns when the floor leaves input "
        "rows unread). pad=same keeps the size at stride 1 (odd kernels).",
    attrs=(Attr("filters", "int", doc="output channels", minimum=1),
           Attr("kernel", "pair", (3, 3), "kernel size: an integer or [height, width]", minimum=1),
           Attr("stride", "pair", (1, 1), "step between windows: an integer or [height, width]", minimum=1),
           Attr("pad", "pair", (0, 0), "zeros added on each side: an integer, [height, width] or same "
                "(stride 1, odd kernel: the output keeps the input's size)", minimum=0, choices=("same",)),
           Attr("bias", "bool", True, "add a learnable bias per filter")),
    params=(ParamSpec("weight", _conv_weight_shape, "he", layout="conv"),
            ParamSpec("bias", lambda t, a: (a["filters"],), "zeros", decay=False,
                      follows_default=False, enabled=_has_bias)),
    samples=(Sample(((2, 5, 5),), {"filters": 3, "kernel": 3, "pad": 1}),
             Sample(((3, 7, 7),), {"filters": 2, "kernel": 3, "stride": 2}),
             Sample(((2, 7, 6),), {"filters": 2, "kernel": [3, 2], "stride": [2, 1], "pad": [1, 0]}),
             Sample(((1, 6, 7),), {"filters": 2, "kernel": [2, 3], "stride": [1, 2], "pad": 1}),
             Sample(((2, 5, 5),), {"filters": 2, "kernel": 5, "pad": 2, "bias": False}),
             Sample(((3, 4, 4),), {"filters": 2, "kernel": 1}),
             # Floored sizes: (8 - 3) / 2 and (7 + 2 - 2) / 3 round down; row 7 is never read.
             Sample(((2, 8, 7),), {"filters": 2, "kernel": [3, 2], "stride": [2, 3], "pad": [0, 1]}),
             Sample(((2, 6, 5),), {"filters": 3, "kernel": [3, 5], "pad": "same"}),
             Sample(((2, 5, 5),), {"filters": 2, "kernel": 3}, batched=(False,)))))
