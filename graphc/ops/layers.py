"""Layers: the ops that own learnable weights (linear, conv) and the pooling layers.

linear is one GEMM over every leading axis; conv is im2col plus one GEMM, its
input gradient a col2im over kernel offsets (see im2col.py for the column
layout and why). maxpool routes the gradient to the first maximum of each
window, avgpool spreads it evenly. Shapes are per sample: conv and pooling
take [channels, height, width]; every output size comes from
kernels.conv_out_size.
"""
from __future__ import annotations

import numpy as np

from graphc.ops import Attr, OpDef, ParamSpec, Sample, register
from graphc.ops.im2col import (
    POOL,
    col2im,
    col2im_rows,
    from_columns,
    geometry,
    give_columns,
    give_grad_columns,
    give_shifted_gradients,
    im2col,
    pad_input,
    per_sample,
    row_columns_pay,
    row_sums,
    shifted_gradients,
    tiles,
    to_columns,
    unpad,
    window,
)
from graphc.ops.kernels import conv_out_size
from graphc.tensor_type import ShapeError, float_inputs, format_shape


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
    g = grad_out.reshape(-1, units)
    grads = [(g @ weight.T).reshape(x.shape) if ctx.needs[0] else None,
             x.reshape(-1, n_in).T @ g if ctx.needs[1] else None]
    if len(args) == 3:
        grads.append(g.sum(axis=0) if ctx.needs[2] else None)
    return grads


def _linear_flops(in_types, out_type, attrs):
    rows = out_type.size // attrs["units"]
    return rows * attrs["units"] * (2 * in_types[0].shape[-1] + int(attrs["bias"]))


register(OpDef(
    name="linear", family="layer", inputs=("x",), aliases_op=("affine",),
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

def _image(in_types, what):
    float_inputs(in_types, 0)
    x = in_types[0]
    if x.rank != 3:
        raise ShapeError(
            f"{what} expects a per-sample shape [channels, height, width], got {format_shape(x.shape)}",
            help="reshape the input first, e.g. reshape(x, [1, 28, 28]) for MNIST's [784]", arg=0)
    return x


def _conv_shape(in_types, attrs):
    x = _image(in_types, "conv")
    c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = attrs["kernel"], attrs["stride"], attrs["pad"]
    oh = conv_out_size(h, kh, sh, ph, what="conv output height")
    ow = conv_out_size(w, kw, sw, pw, what="conv output width")
    return x.with_shape((attrs["filters"], oh, ow))


def _input_shape(ctx, a):
    """(N, C, H, W) of this step's input, given any batched array of the step
    (the input, or grad_out); an unbatched input counts as a batch of one."""
    t = ctx.in_types[0]
    return (a.shape[0] if t.batched else 1, *t.shape)


def _conv_geometry(ctx, a):
    return geometry(_input_shape(ctx, a), ctx.attrs, ctx.out_type.shape[1:], ctx.attrs["kernel"])


def _conv_forward(ctx, x, weight, bias=None):
    g = _conv_geometry(ctx, x)
    filters = weight.shape[0]
    rows_only = row_columns_pay(g, filters)
    # The bias rides in the GEMM: a column of the weight against the columns' row of ones.
    if rows_only:
        # Weights stacked as (j, f) rows against (c, i) columns (see im2col.row_sums).
        matrix = np.zeros((g.kw, filters, g.c * g.kh + (bias is not None)), weight.dtype)
        matrix[:, :, :g.c * g.kh] = weight.transpose(3, 0, 1, 2).reshape(g.kw, filters, -1)
        if bias is not None:
            matrix[0, :, -1] = bias
        matrix = matrix.reshape(g.kw * filters, -1)
    else:
        matrix = weight.reshape(filters, -1)
        if bias is not None:
            matrix = np.concatenate([matrix, bias.reshape(filters, 1)], axis=1)
    cols = im2col(x.reshape(g.n, g.c, g.h, g.w), g, ones_row=bias is not None, rows_only=rows_only)
    out = ctx.out.reshape(g.n, filters, g.oh, g.ow)
    if g.wide:
        product = POOL.take("product", (matrix.shape[0], g.cols), x.dtype)
        np.matmul(matrix, cols, out=product)     # the one GEMM (BLAS threads it)
        from_columns(row_sums(product, g, filters) if rows_only else product, g, out)
        POOL.give("product", product)
    else:
        # One GEMM per sample, read and written in place: the output lands in NCHW order.
        np.matmul(matrix, per_sample(cols, g), out=out.reshape(g.n, filters, g.oh * g.ow))
    if any(ctx.needs[1:]):
        ctx.saved["cols"] = cols    # the weight and bias gradients need them; the input gradient does not
    else:
        give_columns(cols, g, rows_only)
    return ctx.out


def _conv_backward(ctx, grad_out, args, out):
    x, weight = args[0], args[1]
    has_bias = len(args) == 3
    g = _conv_geometry(ctx, x)
    filters = weight.shape[0]
    if row_columns_pay(g, filters):
        return _conv_backward_rows(ctx, grad_out, x, weight, has_bias, g)
    grad = grad_out.reshape(g.n, filters, g.oh, g.ow)
    # Wide columns: the gradient as an (F, N*OH*OWc) matrix, zero in the wide columns.
    # Narrow: grad_out as it is, sample n's (F, OH*OW) block against its columns.
    g_cols = to_columns(grad, g) if g.wide else None
    g_per_sample = None if g.wide else grad.reshape(g.n, filters, g.oh * g.ow)
    grads = [None, None] + ([None] if has_bias else [])
    if ctx.needs[0]:
        matrix_t = weight.reshape(filters, -1).T
        dcols = POOL.take("dcols", (g.rows, g.cols), grad.dtype)
        if g.wide:
            np.matmul(matrix_t, g_cols, out=dcols)
        else:
            np.matmul(matrix_t, g_per_sample, out=per_sample(dcols, g))
        grads[0] = col2im(dcols, g, overwrite=True).reshape(x.shape)
        POOL.give("dcols", dcols)
    if any(ctx.needs[1:]):
        # pop: the columns go back to the pool once used (a second backward rebuilds them).
        cols = ctx.saved.pop("cols", None)
        if cols is None:
            cols = im2col(x.reshape(g.n, g.c, g.h, g.w), g, ones_row=has_bias)
        if g.wide:
            full = g_cols @ cols.T
        else:
            # One product per sample, summed over the batch (1.2-1.5x faster than one GEMM
            # over a transposed copy of grad_out, and no copy).
            full = np.matmul(g_per_sample, per_sample(cols, g).transpose(0, 2, 1)).sum(axis=0)
        give_columns(cols, g)
        if ctx.needs[1]:
            grads[1] = np.ascontiguousarray(full[:, :g.rows]).reshape(weight.shape)
        if has_bias and ctx.needs[2]:
            # The row of ones: this column is grad_out summed over samples and positions
            # (wide padding columns of the gradient are zero).
            grads[2] = full[:, g.rows].copy()
    if g_cols is not None:
        give_grad_columns(g_cols, g)
    return grads


def _conv_backward_rows(ctx, grad_out, x, weight, has_bias, g):
    """The backward pass of a conv whose forward used row columns (see im2col.row_sums)."""
    filters = weight.shape[0]
    shifted = shifted_gradients(grad_out.reshape(g.n, filters, g.oh, g.ow), g)   # (kw*F, N*OH*OWc)
    grads = [None, None] + ([None] if has_bias else [])
    if ctx.needs[0]:
        # Rows (c, i), columns (j, f): the column gradients already summed over j.
        matrix_t = weight.transpose(1, 2, 3, 0).reshape(g.c * g.kh, g.kw * filters)
        grads[0] = col2im_rows(matrix_t @ shifted, g).reshape(x.shape)
    if any(ctx.needs[1:]):
        cols = ctx.saved.pop("cols", None)
        if cols is None:
            cols = im2col(x.reshape(g.n, g.c, g.h, g.w), g, ones_row=has_bias, rows_only=True)
        full = shifted @ cols.T                   # rows (j, f), columns (c, i) [+ bias]
        give_columns(cols, g, rows_only=True)
        if ctx.needs[1]:
            per_offset = full[:, :g.c * g.kh].reshape(g.kw, filters, g.c, g.kh)
            grads[1] = np.ascontiguousarray(per_offset.transpose(1, 2, 3, 0))
        if has_bias and ctx.needs[2]:
            grads[2] = full[:filters, -1].copy()     # block j = 0 against the row of ones
    give_shifted_gradients(shifted, g)
    return grads


def _conv_flops(in_types, out_type, attrs):
    c = in_types[0].shape[0]
    kh, kw = attrs["kernel"]
    return out_type.size * (2 * c * kh * kw + int(attrs["bias"]))


def _conv_weight_shape(in_types, attrs):
    return (attrs["filters"], in_types[0].shape[0], *attrs["kernel"])


register(OpDef(
    name="conv", family="layer", inputs=("x",), shape_rule=_conv_shape,
    forward=_conv_forward, backward=_conv_backward, flops=_conv_flops,
    grad_rule="fused conv: GEMM with the im2col columns; col2im over kernel offsets",
    doc="2-D cross-correlation with zero padding, as torch.nn.functional.conv2d(x, weight, bias, "
        "stride, padding): weight [filters, channels, kh, kw]; output size "
        "(H + 2*pad - kernel) / stride + 1, which must be a whole number.",
    attrs=(Attr("filters", "int", doc="output channels", minimum=1),
           Attr("kernel", "pair", (3, 3), "kernel size: an integer or [height, width]", minimum=1),
           Attr("stride", "pair", (1, 1), "step between windows: an integer or [height, width]", minimum=1),
           Attr("pad", "pair", (0, 0), "zeros added on each side: an integer or [height, width]", minimum=0),
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
             Sample(((2, 5, 5),), {"filters": 2, "kernel": 3}, batched=(False,)))))


# ---- pooling ---------------------------------------------------------------------

def _pool_shape(name):
    def rule(in_types, attrs):
        x = _image(in_types, name)
        c, h, w = x.shape
        (kh, kw), (ph, pw) = attrs["size"], attrs["pad"]
        sh, sw = attrs["stride"] or attrs["size"]
        if 2 * ph > kh or 2 * pw > kw:
            # Like torch: a window made only of padding would have no value.
            raise ShapeError(f"{name} pad ({ph}, {pw}) is more than half the window size ({kh}, {kw})",
                             help="use pad <= size / 2", arg="pad")
        oh = conv_out_size(h, kh, sh, ph, what=f"{name} output height")
        ow = conv_out_size(w, kw, sw, pw, what=f"{name} output width")
        return x.with_shape((c, oh, ow))
    return rule


def _pool_geometry(ctx, a):
    attrs = ctx.attrs
    resolved = {"stride": attrs["stride"] or attrs["size"], "pad": attrs["pad"]}
    return geometry(_input_shape(ctx, a), resolved, ctx.out_type.shape[1:], attrs["size"])


def _as_input(ctx, dx):
    """dx reshaped to the input's run-time shape (drops the batch of one of an unbatched input)."""
    t = ctx.in_types[0]
    return dx.reshape(t.runtime_shape(dx.shape[0]) if t.batched else t.shape)


def _index_dtype(g):
    return np.uint8 if g.kh * g.kw <= 256 else np.int32


def _maxpool_forward(ctx, x):
    g = _pool_geometry(ctx, x)
    out = ctx.out.reshape(g.n, g.c, g.oh, g.ow)
    # Inference plans need no gradient: then only the maxima are taken.
    first = np.empty(out.shape, _index_dtype(g)) if any(ctx.needs) else None
    if tiles(g):
        # Windows tile the input: first copy each kernel offset's elements into a contiguous
        # plane (one strided copy), then compare planes. NumPy's strided loops cost ~1 ns per
        # element, contiguous ones ~0.1: on SimpleConvNet's pool (30x24x24, batch 100) the
        # forward pass went from 2.1 to 1.6 ms.
        rows = g.n * g.c * g.oh
        planes = POOL.take("pool planes", (g.kh, g.kw, rows, g.ow), x.dtype)
        np.copyto(planes, _window_rows(x, g).transpose(1, 3, 0, 2))
        _first_maximum(lambda k, i, j: planes[i, j], g, out.reshape(rows, g.ow),
                       None if first is None else first.reshape(rows, g.ow))
        POOL.give("pool planes", planes)
    else:
        padded = pad_input(x.reshape(g.n, g.c, g.h, g.w), g, -np.inf)
        _first_maximum(lambda k, i, j: window(padded, g, i, j), g, out, first)
    if first is not None:
        ctx.saved["first"] = first
    return ctx.out


def _first_maximum(values_at, g, out, first):
    """Write each window's maximum into out and, into first (unless None), which kernel
    offset holds its first maximum in row-major order; values_at(k, i, j) is the offset's values."""
    better = np.empty(out.shape, bool)
    if first is not None:
        first.fill(0)
    for k, i, j in g.offsets():
        values = values_at(k, i, j)
        if k == 0:
            np.copyto(out, values)
            continue
        if first is None:
            np.maximum(out, values, out=out)
            continue
        # Strictly greater: on a tie the earlier offset keeps the gradient, as in torch.
        np.greater(values, out, out=better)
        np.maximum(out, values, out=out)
        # Offsets only grow, so the last strict improvement is the largest k*better.
        # (Cheaper than np.copyto(first, k, where=better), which is ~10x slower.)
        np.maximum(first, better * first.dtype.type(k), out=first)


def _window_rows(a, g):
    """The (N*C*OH, kh, OW, kw) view of an (N, C, H, W) array whose windows tile it."""
    return a.reshape(g.n * g.c * g.oh, g.kh, g.ow, g.kw)


def _maxpool_backward(ctx, grad_out, args, out):
    g = _pool_geometry(ctx, grad_out)
    first = ctx.saved["first"]
    grad = grad_out.reshape(first.shape)
    if tiles(g):
        # Every input element is in exactly one window: write each offset's share once.
        dx = np.empty((g.n, g.c, g.h, g.w), grad.dtype)
        rows = g.n * g.c * g.oh
        target = _window_rows(dx, g)
        grad_rows, first_rows = grad.reshape(rows, g.ow), first.reshape(rows, g.ow)
        mask = np.empty(grad_rows.shape, bool)
        for k, i, j in g.offsets():
            np.equal(first_rows, k, out=mask)
            np.multiply(grad_rows, mask, out=target[:, i, :, j])
    else:
        dx = np.zeros((g.n, g.c, g.hp, g.wp), grad.dtype)
        for k, i, j in g.offsets():
            view = window(dx, g, i, j)
            view += grad * (first == k)
        dx = unpad(dx, g)
    return [_as_input(ctx, dx)]


def _avgpool_forward(ctx, x):
    g = _pool_geometry(ctx, x)
    padded = pad_input(x.reshape(g.n, g.c, g.h, g.w), g, 0.0)   # padded zeros count (count_include_pad)
    out = ctx.out.reshape(g.n, g.c, g.oh, g.ow)
    # One add per kernel offset; np.sum over the window axes of a
    # (N, C, OH, kh, OW, kw) reshape is 30x slower in NumPy.
    for k, i, j in g.offsets():
        if k == 0:
            np.copyto(out, window(padded, g, i, j))
        else:
            np.add(out, window(padded, g, i, j), out=out)
    np.multiply(out, 1.0 / (g.kh * g.kw), out=out)
    return ctx.out


def _avgpool_backward(ctx, grad_out, args, out):
    g = _pool_geometry(ctx, grad_out)
    share = grad_out.reshape(g.n, g.c, g.oh, g.ow) * (1.0 / (g.kh * g.kw))
    if tiles(g):
        # Every input element is in exactly one window: one write per offset.
        dx = np.empty((g.n, g.c, g.h, g.w), share.dtype)
        for k, i, j in g.offsets():
            np.copyto(window(dx, g, i, j), share)
    else:
        dx = np.zeros((g.n, g.c, g.hp, g.wp), share.dtype)
        for k, i, j in g.offsets():
            view = window(dx, g, i, j)
            view += share
        dx = unpad(dx, g)
    return [_as_input(ctx, dx)]


def _pool_flops(in_types, out_type, attrs):
    kh, kw = attrs["size"]
    return out_type.size * kh * kw


def _pool_attrs(what):
    return (Attr("size", "pair", (2, 2), f"window size over which the {what} is taken", minimum=1),
            Attr("stride", "pair", None, "step between windows (default: the size)", minimum=1),
            Attr("pad", "pair", (0, 0), "padding on each side, at most half the size", minimum=0))


_POOL_SAMPLES = (
    Sample(((2, 4, 6),), {"size": 2}),
    Sample(((3, 5, 5),), {"size": 3, "stride": 2}),
    Sample(((2, 7, 5),), {"size": 3, "stride": 2, "pad": 1}),
    Sample(((1, 5, 6),), {"size": [2, 3], "stride": [1, 3]}),
    Sample(((2, 6, 9),), {"size": 2, "stride": 3, "pad": 1}),
    Sample(((2, 3, 3),), {"size": 3}, batched=(False,)),
)

register(OpDef(
    name="maxpool", family="layer", inputs=("x",), shape_rule=_pool_shape("maxpool"),
    forward=_maxpool_forward, backward=_maxpool_backward, flops=_pool_flops,
    grad_rule="maxpool: route to the first maximum of each window",
    doc="Maximum over each window, as torch.nn.functional.max_pool2d(x, size, stride, pad) "
        "(padding counts as -inf). Tie rule: the whole gradient goes to the first maximum "
        "in the window in row-major order, as torch's max_pool2d does (windows that overlap "
        "decide separately). A NaN in a window propagates to the output.",
    attrs=_pool_attrs("maximum"), samples=_POOL_SAMPLES, saves="none", domain="distinct"))

register(OpDef(
    name="avgpool", family="layer", inputs=("x",), shape_rule=_pool_shape("avgpool"),
    forward=_avgpool_forward, backward=_avgpool_backward, flops=_pool_flops,
    grad_rule="avgpool: spread evenly over each window",
    doc="Mean over each window, as torch.nn.functional.avg_pool2d(x, size, stride, pad) with "
        "count_include_pad=True: padded zeros count in the average (divisor size_h * size_w).",
    attrs=_pool_attrs("mean"), samples=_POOL_SAMPLES, saves="none"))
