"""Pooling layers: maxpool and avgpool over (N, C, H, W) windows.

maxpool routes the gradient to the first maximum of each window (row-major, as
torch), avgpool spreads it evenly. Both loop over kernel offsets with the
window views of im2col.py; when the windows tile the input (stride == size, no
padding) they take faster contiguous paths. Output sizes come from
kernels.conv_out_size.
"""
from __future__ import annotations

import numpy as np

from graphc.ops.conv_fast import POOL
from graphc.ops.im2col import geometry, pad_input, unpad, window
from graphc.ops.kernels import conv_out_size, image_shape, image_type
from graphc.ops.registry import Attr, OpDef, Sample, register
from graphc.tensor_type import ShapeError


def tiles(geo) -> bool:
    """True when the windows tile the input exactly (stride == size, no padding):
    every input element lies in exactly one window."""
    return (geo.sh, geo.sw) == (geo.kh, geo.kw) and not (geo.ph or geo.pw)


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
        oh = conv_out_size(h, kh, sh, ph, what=f"{name} output height")
        ow = conv_out_size(w, kw, sw, pw, what=f"{name} output width")
        return x.with_shape((c, oh, ow))
    return rule


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
        np.copyto(planes, _window_rows(x, geo).transpose(1, 3, 0, 2))
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


def _window_rows(a, geo):
    """The (N*C*OH, kh, OW, kw) view of an (N, C, H, W) array whose windows tile it."""
    return a.reshape(geo.n * geo.c * geo.oh, geo.kh, geo.ow, geo.kw)


def _maxpool_backward(ctx, grad_out, args, out):
    geo = _pool_geometry(ctx, grad_out)
    first = ctx.saved["first"]
    grad = grad_out.reshape(first.shape)
    if tiles(geo):
        # Every input element is in exactly one window: write each offset's share once.
        dx = np.empty((geo.n, geo.c, geo.h, geo.w), grad.dtype)
        rows = geo.n * geo.c * geo.oh
        target = _window_rows(dx, geo)
        grad_rows, first_rows = grad.reshape(rows, geo.ow), first.reshape(rows, geo.ow)
        mask = np.empty(grad_rows.shape, bool)
        for k, i, j in geo.offsets():
            np.equal(first_rows, k, out=mask)
            np.multiply(grad_rows, mask, out=target[:, i, :, j])
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
    np.multiply(out, 1.0 / (geo.kh * geo.kw), out=out)
    return ctx.out


def _avgpool_backward(ctx, grad_out, args, out):
    geo = _pool_geometry(ctx, grad_out)
    share = grad_out.reshape(geo.n, geo.c, geo.oh, geo.ow) * (1.0 / (geo.kh * geo.kw))
    if tiles(geo):
        # Every input element is in exactly one window: one write per offset.
        dx = np.empty((geo.n, geo.c, geo.h, geo.w), share.dtype)
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
