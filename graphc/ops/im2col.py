"""Conv as the textbook writes it: im2col, one GEMM, col2im; and the window views pooling uses.

Input: NCHW arrays and a `Geometry` built from planned shapes (the output size
always comes from kernels.conv_out_size, through the shape rules; floored sizes
leave the last input rows unread, and their gradient is zero). Output:
column matrices, input gradients, a reference conv forward/backward, and views
of the (padded) input under one kernel offset. Nothing here knows about graphs.

The reference conv is the classic formulation (e.g. Saito, "Deep Learning from
Scratch", Convolution.forward/backward): im2col lays every window out as a row
of an (N*OH*OW, C*kh*kw) matrix, so the conv is one matrix product with the
weight reshaped to (filters, C*kh*kw), and its input gradient is col2im of the
column gradients, a sum over kernel offsets. The registered conv kernel
(ops/layers.py) runs the same maths through ops/conv_fast.py, which picks one
of three column layouts per geometry and reuses its scratch buffers: about 2x
faster on LeNet's convs (forward + backward, batch 100, float32, 1 thread: 23 vs
44 ms and 15 vs 31 ms on a loaded machine). tests/test_conv_reference.py checks
that the two agree.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Geometry:
    """Sizes of one conv or pool application on an (N, C, H, W) input."""

    n: int
    c: int
    h: int
    w: int
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    oh: int
    ow: int
    eh: int = 0   # extra padding rows after the input: pooling's ceil_mode lets the last window hang over
    ew: int = 0   # extra padding columns after the input

    def __post_init__(self):
        # The planned output size decides the windows; none may read past the padded input.
        if (self.oh - 1) * self.sh + self.kh > self.hp or (self.ow - 1) * self.sw + self.kw > self.wp:
            raise ValueError(f"the windows of {self} reach past the padded input")

    @property
    def hp(self) -> int:
        """Padded input height."""
        return self.h + 2 * self.ph + self.eh

    @property
    def wp(self) -> int:
        """Padded input width."""
        return self.w + 2 * self.pw + self.ew

    @property
    def padded(self) -> bool:
        """True when the input gets any padding (on any side)."""
        return bool(self.ph or self.pw or self.eh or self.ew)

    @property
    def rows(self) -> int:
        """Values in one window: C * kh * kw."""
        return self.c * self.kh * self.kw

    def offsets(self):
        """Yield (k, i, j): every kernel offset, row-major (the order ties are broken in)."""
        for i in range(self.kh):
            for j in range(self.kw):
                yield i * self.kw + j, i, j


def geometry(x_shape: tuple[int, ...], attrs: dict, out_hw: tuple[int, int], kernel: tuple[int, int]) -> Geometry:
    """Return the Geometry of an (N, C, H, W) input, a kernel, the op's stride/pad and its planned output size.

    Floored sizes leave the end of the input unread; a ceil_mode pool's last window may hang
    over the padding: that window gets extra padding after the input (eh, ew), as PyTorch's.
    """
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel, attrs["stride"], attrs["pad"], out_hw
    eh = max(0, (oh - 1) * sh + kh - (h + 2 * ph))
    ew = max(0, (ow - 1) * sw + kw - (w + 2 * pw))
    return Geometry(n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow, eh, ew)


def pad_input(x: np.ndarray, geo: Geometry, fill: float) -> np.ndarray:
    """Return x itself without padding, else a padded copy filled with `fill` (-inf for max, 0 for average)."""
    if not geo.padded:
        return x
    padded = np.full((geo.n, geo.c, geo.hp, geo.wp), fill, x.dtype)
    padded[:, :, geo.ph:geo.ph + geo.h, geo.pw:geo.pw + geo.w] = x
    return padded


def window(a: np.ndarray, geo: Geometry, i: int, j: int) -> np.ndarray:
    """Return the (N, C, OH, OW) view of a padded (N, C, Hp, Wp) array under kernel offset (i, j):
    element (n, c, oh, ow) is the value offset (i, j) of window (oh, ow) reads."""
    return a[:, :, i:i + geo.sh * (geo.oh - 1) + 1:geo.sh, j:j + geo.sw * (geo.ow - 1) + 1:geo.sw]


def unpad(grad: np.ndarray, geo: Geometry) -> np.ndarray:
    """Return the gradient of the unpadded input from the gradient of the padded one."""
    if not geo.padded:
        return grad
    return grad[:, :, geo.ph:geo.ph + geo.h, geo.pw:geo.pw + geo.w].copy()


def im2col(x: np.ndarray, geo: Geometry) -> np.ndarray:
    """Return the (N*OH*OW, C*kh*kw) matrix whose row (n, oh, ow) holds the window of output
    (oh, ow) of sample n, zero padding included, ordered (c, i, j) like a [filters, C, kh, kw] weight.

    One strided copy per kernel offset: offset (i, j) of every window at once.
    """
    padded = pad_input(x, geo, 0.0)
    cols = np.empty((geo.n, geo.c, geo.kh, geo.kw, geo.oh, geo.ow), x.dtype)
    for _, i, j in geo.offsets():
        cols[:, :, i, j] = window(padded, geo, i, j)
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(geo.n * geo.oh * geo.ow, geo.rows)


def col2im(dcols: np.ndarray, geo: Geometry) -> np.ndarray:
    """Return the (N, C, H, W) gradient of the input of `im2col` from the gradient of its matrix.

    The reverse of im2col: every window's gradient is added back where the window
    read, one kernel offset at a time (windows overlap, so the adds accumulate).
    """
    per_offset = dcols.reshape(geo.n, geo.oh, geo.ow, geo.c, geo.kh, geo.kw).transpose(0, 3, 4, 5, 1, 2)
    padded = np.zeros((geo.n, geo.c, geo.hp, geo.wp), dcols.dtype)
    for _, i, j in geo.offsets():
        window(padded, geo, i, j)[...] += per_offset[:, :, i, j]
    return unpad(padded, geo)


def conv_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                 geo: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Return (the (N, F, OH, OW) conv output, the im2col matrix backward needs).

    weight is [F, C, kh, kw]; bias is [F] or None.
    """
    filters = weight.shape[0]
    cols = im2col(x, geo)
    out = cols @ weight.reshape(filters, -1).T           # the one GEMM: (N*OH*OW, F)
    if bias is not None:
        out += bias
    return out.reshape(geo.n, geo.oh, geo.ow, filters).transpose(0, 3, 1, 2), cols


def conv_backward(grad_out: np.ndarray, weight: np.ndarray, cols: np.ndarray,
                  geo: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the gradients (input, weight, bias) of `conv_forward` for an (N, F, OH, OW) grad_out."""
    filters = weight.shape[0]
    grad = grad_out.transpose(0, 2, 3, 1).reshape(-1, filters)     # rows (n, oh, ow), like cols
    dweight = (grad.T @ cols).reshape(weight.shape)
    dbias = grad.sum(axis=0)
    dx = col2im(grad @ weight.reshape(filters, -1), geo)
    return dx, dweight, dbias
