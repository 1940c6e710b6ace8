"""Pooling layers: maxpool and avgpool over (N, C, H, W) windows.

maxpool routes the gradient to the first maximum of each window (row-major, as
torch), avgpool spreads it evenly. Both loop over kernel offsets with the
window views of im2col.py; when the windows tile the input (stride == size, no
padding) they take faster contiguous paths. Output sizes come from
kernels.conv_out_size: floored as PyTorch's (the last rows may go unread, their
gradient zero), or with `ceil_mode` rounded up, the last window hanging over
extra padding (-inf for max; for the average it counts as PyTorch counts it).
"""
from __future__ import annotations

import numpy as np

from graphc.ops.conv_fast import POOL
from graphc.ops.im2col import geometry, pad_input, unpad, window
from graphc.ops.kernels import conv_out_size, dropped_rows_warning, image_shape, image_type, same_pad
from graphc.ops.registry import Attr, OpDef, OpWarning, Sample, register
from graphc.tensor_type import ShapeError


def tiles(geo) -> bool:
    """True when the windows tile the input (stride == size, no padding): every input
    element lies in at most one window (none, in rows or columns a floored size drops)."""
    return (geo.sh, geo.sw) == (geo.kh, geo.kw) and not geo.padded


def _covers_all(geo) -> bool:
    """True when tiling windows cover every input element (the size divides exactly)."""
    return geo.oh * geo.kh == geo.h and geo.ow * geo.kw == geo.w


# ---- pooling ---------------------------------------------------------------------

def _pool_shape(name):
    def rule(in_types, attrs):
        x = image_type(in_types, name)
        c, h, w = x.shape
        (kh, kw), (ph, pw) = attrs["size"], attrs["pad"]
        sh, sw = attrs["stride"] or attrs["size"]
        if 2 * ph > kh or 2 * pw > kw:
            # Like torch: a window made only of padding would have no value.
            raise ShapeError(f"{name} pad ({ph}, {pw}) is more than half the window size ({kh}, {kw})",
                             help="use pad <= size / 2", arg="pad")
        ceil = attrs["ceil_mode"]
        oh = conv_out_size(h, kh, sh, ph, what=f"{name} output height", ceil=ceil)
        ow = conv_out_size(w, kw, sw, pw, what=f"{name} output width", ceil=ceil)
        return x.with_shape((c, oh, ow))
    return rule


def _pool_warnings(name):
    def rule(in_types, attrs, out_type):
        """A warning when the floor of the output size leaves input rows or columns unread."""
        (kh, kw) = attrs["size"]
        dropped = dropped_rows_warning(name, in_types[0].shape[1:], attrs["size"], attrs["stride"] or attrs["size"],
                                       attrs["pad"], out_type.shape[1:], kernel_name="size",
                                       max_pad=(kh // 2, kw // 2), ceil_mode=not attrs["ceil_mode"])
        return [OpWarning(*dropped)] if dropped else []
    return rule


def _pool_resolve(attrs):
    return same_pad(attrs, "size", attrs["stride"] or attrs["size"])


def _pool_geometry(ctx, a):
    attrs = ctx.attrs
    resolved = {"stride": attrs["stride"] or attrs["size"], "pad": attrs["pad"]}
    return geometry(image_shape(ctx, a), resolved, ctx.out_type.shape[1:], attrs["size"])


def _as_input(ctx, dx):
    """dx reshaped to the input's run-time shape (drops the batch of one of an unbatched input)."""
    t = ctx.in_types[0]
    return dx.reshape(t.runtime_shape(dx.shape[0]) if t.batched else t.shape)


def _index_dtype(geo):
    return np.uint8 if geo.kh * geo.kw <= 256 else np.int32


def _maxpool_forward(ctx, x):
    geo = _pool_geometry(ctx, x)
    out = ctx.out.reshape(geo.n, geo.c, geo.oh, geo.ow)
    # Inference plans need no gradient: then only the maxima are taken.
    first = np.empty(out.shape, _index_dtype(geo)) if any(ctx.needs) else None
    if tiles(geo):
        # Windows tile the input: first copy each kernel offset's elements into a contiguous
        # plane (one strided copy), then compare planes. NumPy's strided loops cost ~1 ns per
        # element, contiguous ones ~0.1: on SimpleConvNet's pool (30x24x24, batch 100) the
        # forward pass went from 2.1 to 1.6 ms.
        rows = geo.n * geo.c * geo.oh
        planes = POOL.take("pool planes", (geo.kh, geo.kw, rows, geo.ow), x.dtype)
        np.copyto(planes.reshape(geo.kh, geo.kw, geo.n, geo.c, geo.oh, geo.ow),
                  _tiled_windows(x, geo).transpose(3, 5, 0, 1, 2, 4))
        _first_maximum(lambda k, i, j: planes[i, j], geo, out.reshape(rows, geo.ow),
                       None if first is None else first.reshape(rows, geo.ow))
        POOL.give("pool planes", planes)
    else:
        padded = pad_input(x.reshape(geo.n, geo.c, geo.h, geo.w), geo, -np.inf)
        _first_maximum(lambda k, i, j: window(padded, geo, i, j), geo, out, first)
    if first is not None:
        ctx.saved["first"] = first
    return ctx.out


def _first_maximum(values_at, geo, out, first):
    """Write each window's maximum into out and, into first (unless None), which kernel
    offset holds its first maximum in row-major order; values_at(k, i, j) is the offset's values."""
    better = np.empty(out.shape, bool)
    if first is not None:
        first.fill(0)
    for k, i, j in geo.offsets():
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


def _tiled_windows(a, geo):
    """The (N, C, OH, kh, OW, kw) view of an (N, C, H, W) array (or its unbatched (C, H, W))
    whose windows tile it; rows and columns a floored size drops are left out."""
    a = a.reshape(geo.n, geo.c, geo.h, geo.w)
    return a[:, :, :geo.oh * geo.kh, :geo.ow * geo.kw].reshape(geo.n, geo.c, geo.oh, geo.kh, geo.ow, geo.kw)


def _maxpool_backward(ctx, grad_out, args, out):
    geo = _pool_geometry(ctx, grad_out)
    first = ctx.saved["first"]
    grad = grad_out.reshape(first.shape)
    if tiles(geo):
        # Every input element is in at most one window: write each offset's share once
        # (rows a floored size drops keep their zero).
        dx = (np.empty if _covers_all(geo) else np.zeros)((geo.n, geo.c, geo.h, geo.w), grad.dtype)
        target = _tiled_windows(dx, geo)
        mask = np.empty(grad.shape, bool)
        for k, i, j in geo.offsets():
            np.equal(first, k, out=mask)
            np.multiply(grad, mask, out=target[:, :, :, i, :, j])
    else:
        dx = np.zeros((geo.n, geo.c, geo.hp, geo.wp), grad.dtype)
        for k, i, j in geo.offsets():
            view = window(dx, geo, i, j)
            view += grad * (first == k)
        dx = unpad(dx, geo)
    return [_as_input(ctx, dx)]


def _avgpool_forward(ctx, x):
    geo = _pool_geometry(ctx, x)
    padded = pad_input(x.reshape(geo.n, geo.c, geo.h, geo.w), geo, 0.0)   # padded zeros count (count_include_pad)
    out = ctx.out.reshape(geo.n, geo.c, geo.oh, geo.ow)
    # One add per kernel offset; np.sum over the window axes of a
    # (N, C, OH, kh, OW, kw) reshape is 30x slower in NumPy.
    for k, i, j in geo.offsets():
        if k == 0:
            np.copyto(out, window(padded, geo, i, j))
        else:
            np.add(out, window(padded, geo, i, j), out=out)
    np.multiply(out, reciprocal_counts(geo, out.dtype), out=out)
    return ctx.out


def reciprocal_counts(geo, dtype):
    """Return 1 / the divisor of each window's average: size_h * size_w, except for a ceil_mode
    window that hangs over the end, which counts only its part inside the padded input (as
    PyTorch's avg_pool2d with count_include_pad): a scalar, or an (OH, OW) array."""
    if not (geo.eh or geo.ew):
        return dtype.type(1.0 / (geo.kh * geo.kw))
    starts_h, starts_w = np.arange(geo.oh) * geo.sh, np.arange(geo.ow) * geo.sw
    rows = np.minimum(starts_h + geo.kh, geo.h + 2 * geo.ph) - starts_h
    cols = np.minimum(starts_w + geo.kw, geo.w + 2 * geo.pw) - starts_w
    return (1.0 / np.outer(rows, cols)).astype(dtype)


def _avgpool_backward(ctx, grad_out, args, out):
    geo = _pool_geometry(ctx, grad_out)
    share = grad_out.reshape(geo.n, geo.c, geo.oh, geo.ow) * reciprocal_counts(geo, grad_out.dtype)
    if tiles(geo):
        # Every input element is in at most one window: one write per offset (rows a
        # floored size drops keep their zero).
        dx = (np.empty if _covers_all(geo) else np.zeros)((geo.n, geo.c, geo.h, geo.w), share.dtype)
        for _, i, j in geo.offsets():
            np.copyto(window(dx, geo, i, j), share)
    else:
        dx = np.zeros((geo.n, geo.c, geo.hp, geo.wp), share.dtype)
        for _, i, j in geo.offsets():
            view = window(dx, geo, i, j)
            view += share
        dx = unpad(dx, geo)
    return [_as_input(ctx, dx)]


def _pool_flops(in_types, out_type, attrs):
    kh, kw = attrs["size"]
    return out_type.size * kh * kw


def _pool_attrs(what):
    return (Attr("size", "pair", (2, 2), f"window size over which the {what} is taken", minimum=1),
            Attr("stride", "pair", None, "step between windows (default: the size)", minimum=1),
            Attr("pad", "pair", (0, 0), "padding on each side, at most half the size; same: "
                 "(size - 1) / 2 (stride 1, odd size: the output keeps the input's size)", minimum=0,
                 choices=("same",)),
            Attr("ceil_mode", "bool", False, "round the output size up, as PyTorch's ceil_mode: the last "
                 "window may hang over the end if it starts inside the input or its left padding"))


_POOL_SAMPLES = (
    Sample(((2, 4, 6),), {"size": 2}),
    Sample(((3, 5, 5),), {"size": 3, "stride": 2}),
    Sample(((2, 7, 5),), {"size": 3, "stride": 2, "pad": 1}),
    Sample(((1, 5, 6),), {"size": [2, 3], "stride": [1, 3]}),
    Sample(((2, 6, 9),), {"size": 2, "stride": 3, "pad": 1}),
    Sample(((2, 3, 3),), {"size": 3}, batched=(False,)),
    # Floored sizes (rows 4 and 5 and column 6 are never read), and on the tiling path.
    Sample(((2, 6, 7),), {"size": 3, "stride": 2}),
    Sample(((1, 5, 7),), {"size": 2}),
    # ceil_mode: last windows that hang over the end, and one PyTorch drops (it would start in the padding).
    Sample(((2, 6, 7),), {"size": 3, "stride": 2, "ceil_mode": True}),
    Sample(((1, 5, 5),), {"size": 2, "ceil_mode": True}),
    Sample(((2, 6, 5),), {"size": [3, 2], "stride": [2, 2], "pad": 1, "ceil_mode": True}),
    Sample(((2, 5, 4),), {"size": 3, "stride": 1, "pad": "same"}),
)

_POOL_SHAPE_DOC = "[C, H, W] -> [C, floor((H + 2*pad - size) / stride) + 1, the same for W] (ceil with ceil_mode=true)"

register(OpDef(
    name="maxpool", family="layer", inputs=("x",), shape_rule=_pool_shape("maxpool"),
    shape_doc=_POOL_SHAPE_DOC,
    warn_rule=_pool_warnings("maxpool"), resolve=_pool_resolve,
    forward=_maxpool_forward, backward=_maxpool_backward, flops=_pool_flops,
    grad_rule="maxpool: route to the first maximum of each window",
    doc="Maximum over each window, as torch.nn.functional.max_pool2d(x, size, stride, pad, "
        "ceil_mode=ceil_mode) (padding counts as -inf; output size as conv's, floored unless "
        "ceil_mode). Tie rule: the whole gradient goes to the first maximum in the window in "
        "row-major order, as torch's max_pool2d does (windows that overlap decide separately). "
        "A NaN in a window propagates to the output.",
    attrs=_pool_attrs("maximum"), samples=_POOL_SAMPLES, saves="none", domain="distinct"))

register(OpDef(
    name="avgpool", family="layer", inputs=("x",), shape_rule=_pool_shape("avgpool"),
    shape_doc=_POOL_SHAPE_DOC,
    warn_rule=_pool_warnings("avgpool"), resolve=_pool_resolve,
    forward=_avgpool_forward, backward=_avgpool_backward, flops=_pool_flops,
    grad_rule="avgpool: spread evenly over each window",
    doc="Mean over each window, as torch.nn.functional.avg_pool2d(x, size, stride, pad, ceil_mode) with "
        "count_include_pad=True: padded zeros count in the average (divisor size_h * size_w; a ceil_mode "
        "window hanging over the end counts only its part inside the padded input, as PyTorch's).",
    attrs=_pool_attrs("mean"), samples=_POOL_SAMPLES, saves="none"))


# ---- global pooling: one value per channel ------------------------------------------

def _global_shape(name):
    def rule(in_types, attrs):
        x = image_type(in_types, name)
        return x.with_shape(x.shape[:1])
    return rule


def _global_forward_mean(ctx, x):
    n, c, h, w = image_shape(ctx, x)
    np.mean(x.reshape(n, c, h * w), axis=2, out=ctx.out.reshape(n, c))
    return ctx.out


def _global_backward_mean(ctx, grad_out, args, out):
    n, c, h, w = image_shape(ctx, grad_out)
    dx = np.empty((n, c, h * w), grad_out.dtype)
    np.copyto(dx, (grad_out.reshape(n, c, 1) * (1.0 / (h * w))))
    return [_as_input(ctx, dx)]


def _global_forward_max(ctx, x):
    n, c, h, w = image_shape(ctx, x)
    planes = x.reshape(n, c, h * w)
    # np.argmax returns the first maximum in row-major order (the tie rule); a NaN counts as the maximum.
    first = np.argmax(planes, axis=2)
    if any(ctx.needs):
        ctx.saved["first"] = first
    np.copyto(ctx.out.reshape(n, c), np.take_along_axis(planes, first[..., None], axis=2)[..., 0])
    return ctx.out


def _global_backward_max(ctx, grad_out, args, out):
    n, c, h, w = image_shape(ctx, grad_out)
    dx = np.zeros((n, c, h * w), grad_out.dtype)
    np.put_along_axis(dx, ctx.saved["first"][..., None], grad_out.reshape(n, c, 1), axis=2)
    return [_as_input(ctx, dx)]


def _global_flops(in_types, out_type, attrs):
    return in_types[0].size


_GLOBAL_SAMPLES = (
    Sample(((2, 3, 4),)),
    Sample(((3, 1, 5),)),
    Sample(((1, 1, 1),)),
    Sample(((2, 2, 3),), batched=(False,)),
)

register(OpDef(
    name="global_avgpool", family="layer", inputs=("x",), shape_rule=_global_shape("global_avgpool"),
    shape_doc="[C, H, W] -> [C]",
    forward=_global_forward_mean, backward=_global_backward_mean, flops=_global_flops,
    grad_rule="global_avgpool: spread evenly over each channel's height * width values",
    doc="Mean of each channel over its whole height and width, as "
        "torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1): [C, H, W] -> [C]. The "
        "spatial axes are dropped (keepdims is not offered; reshape(y, [C, 1, 1]) puts them back).",
    samples=_GLOBAL_SAMPLES, saves="none", expansion="mean(x, axis=[1, 2])"))

register(OpDef(
    name="global_maxpool", family="layer", inputs=("x",), shape_rule=_global_shape("global_maxpool"),
    shape_doc="[C, H, W] -> [C]",
    forward=_global_forward_max, backward=_global_backward_max, flops=_global_flops,
    grad_rule="global_maxpool: route to the first maximum of each channel",
    doc="Maximum of each channel over its whole height and width, as "
        "torch.nn.functional.adaptive_max_pool2d(x, 1).flatten(1): [C, H, W] -> [C]; the "
        "spatial axes are dropped. Tie rule: the whole gradient goes to the first maximum in "
        "row-major order (as torch's adaptive_max_pool2d). A NaN counts as the maximum.",
    samples=_GLOBAL_SAMPLES, saves="none", domain="distinct"))
