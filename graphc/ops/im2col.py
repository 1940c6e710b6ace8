"""Conv and pooling kernels: im2col, col2im and the per-kernel-offset window views.

Input: NCHW arrays and a `Geometry` built from planned shapes (the output size
always comes from kernels.conv_out_size, through the shape rules). Output:
column matrices for conv's one GEMM, input gradients, and views of the input
under one kernel offset for pooling. Nothing here knows about graphs.

Column layout. The columns are a (C*kh*kw, N*OH*OWc) matrix, rows ordered
(c, i, j) like a [filters, C, kh, kw] weight, columns ordered (n, oh, ow).
Measured on LeNet-5's two convs at batch 100 in float32 (2 cores), against
the transposed layout (N*OH*OW, C*kh*kw): forward 1.4 vs 3.5 ms (conv1) and
1.7 vs 2.6 ms (conv2); backward 1.3 vs 1.7 ms (conv1, no input gradient) and
4.4 vs 5.2 ms (conv2).

"Wide" columns. With a horizontal stride of 1 the columns run over the full
padded width (OWc = Wp instead of OW): for a fixed kernel offset, one sample's
row of columns is then a single contiguous run of the padded input, so im2col
and col2im copy runs of OH*Wp elements instead of OW (NumPy's cost is per
run: col2im on runs of 140 floats is already 3x slower than contiguous). On
LeNet's second conv this took forward + backward from 5.5 to 3.6 ms. The
extra Wp - OW columns per output row read whatever follows in memory (the
next row, or a few elements of slack at the end of the buffer); the GEMM
result there is discarded, and the gradient fed back there is zero, so
col2im only ever adds zeros through them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

# Wide columns cost Wp/OW times the GEMM work; past this ratio narrow ones win.
WIDE_LIMIT = 1.5


class BufferPool:
    """Free lists of large scratch arrays, by (tag, shape, dtype).

    Column matrices are megabytes; when two of them were freed each step, glibc
    gave the memory back to the OS and every step paid ~2000 page faults
    (im2col took 1.7 ms instead of 0.33 on LeNet's second conv). An array is
    handed out by `take` and owned by its taker until it is passed to `give`;
    one that is never given back is simply garbage collected.
    """

    def __init__(self, per_key: int = 2, keys: int = 16):
        self._free: dict[tuple, list[np.ndarray]] = {}
        self._per_key, self._keys = per_key, keys

    def take(self, tag: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """Return an uninitialised array of `shape` and `dtype` (reused when one is free)."""
        free = self._free.get((tag, tuple(shape), np.dtype(dtype)))
        return free.pop() if free else np.empty(shape, dtype)

    def give(self, tag: str, array: np.ndarray) -> None:
        """Return an array obtained from `take`; the caller must hold no other reference."""
        key = (tag, array.shape, array.dtype)
        if key not in self._free and len(self._free) >= self._keys:
            self._free.pop(next(iter(self._free)))     # forget the oldest shape (batch sizes change)
        free = self._free.setdefault(key, [])
        if len(free) < self._per_key:
            free.append(array)


POOL = BufferPool()


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

    @property
    def hp(self) -> int:
        """Padded input height."""
        return self.h + 2 * self.ph

    @property
    def wp(self) -> int:
        """Padded input width."""
        return self.w + 2 * self.pw

    @property
    def owc(self) -> int:
        """Width of the column grid: the padded width for wide columns, else OW."""
        if self.sw == 1 and self.wp <= WIDE_LIMIT * self.ow:
            return self.wp
        return self.ow

    @property
    def rows(self) -> int:
        """Rows of the column matrix: C * kh * kw."""
        return self.c * self.kh * self.kw

    @property
    def cols(self) -> int:
        """Columns of the column matrix: N * OH * OWc."""
        return self.n * self.oh * self.owc

    def offsets(self):
        """Yield (k, i, j): every kernel offset, row-major (the order ties are broken in)."""
        for i in range(self.kh):
            for j in range(self.kw):
                yield i * self.kw + j, i, j


def geometry(x_shape: tuple[int, ...], attrs: dict, out_hw: tuple[int, int], kernel: tuple[int, int]) -> Geometry:
    """Return the Geometry of an (N, C, H, W) input, a kernel, the op's stride/pad and its planned output size."""
    n, c, h, w = x_shape
    return Geometry(n, c, h, w, *kernel, *attrs["stride"], *attrs["pad"], *out_hw)


def _padded_flat(g: Geometry, dtype) -> np.ndarray:
    """A zeroed flat buffer for an (N, C, Hp, Wp) array plus kw - 1 elements of
    slack, which the last wide column of the last row reads or adds into."""
    return np.zeros(g.n * g.c * g.hp * g.wp + g.kw - 1, dtype)


def _offset_view(flat: np.ndarray, g: Geometry, i: int, j: int) -> np.ndarray:
    """The (C, N, OH, OWc) view of a padded flat buffer under kernel offset (i, j)."""
    item = flat.itemsize
    plane = g.hp * g.wp
    return as_strided(flat[i * g.wp + j:], (g.c, g.n, g.oh, g.owc),
                      (plane * item, g.c * plane * item, g.sh * g.wp * item, g.sw * item))


def im2col(x: np.ndarray, g: Geometry) -> np.ndarray:
    """Return the (C*kh*kw, N*OH*OWc) column matrix of x, zero padding included.

    The matrix comes from POOL (tag "cols"): give it back when done with it.
    """
    flat = _padded_flat(g, x.dtype)
    padded = flat[:flat.size - (g.kw - 1)].reshape(g.n, g.c, g.hp, g.wp)
    padded[:, :, g.ph:g.ph + g.h, g.pw:g.pw + g.w] = x
    item = flat.itemsize
    plane = g.hp * g.wp
    # One strided view holds every window; a single copy lays it out as columns.
    windows = as_strided(flat, (g.c, g.kh, g.kw, g.n, g.oh, g.owc),
                         (plane * item, g.wp * item, item, g.c * plane * item,
                          g.sh * g.wp * item, g.sw * item), writeable=False)
    cols = POOL.take("cols", (g.rows, g.cols), x.dtype)
    np.copyto(cols.reshape(windows.shape), windows)
    return cols


def col2im(dcols: np.ndarray, g: Geometry) -> np.ndarray:
    """Return the (N, C, H, W) input gradient from column gradients (a fresh array).

    A loop over the kh*kw kernel offsets, each one strided slice-add of every
    window's gradient at that offset (never np.add.at). Column gradients at
    wide padding columns must be zero.
    """
    flat = _padded_flat(g, dcols.dtype)
    per_offset = dcols.reshape(g.c, g.kh, g.kw, g.n, g.oh, g.owc)
    for _, i, j in g.offsets():
        view = _offset_view(flat, g, i, j)
        np.add(view, per_offset[:, i, j], out=view)
    padded = flat[:flat.size - (g.kw - 1)].reshape(g.n, g.c, g.hp, g.wp)
    if g.ph or g.pw:
        return padded[:, :, g.ph:g.ph + g.h, g.pw:g.pw + g.w].copy()
    return padded


def to_columns(grad_out: np.ndarray, g: Geometry) -> np.ndarray:
    """Return an (F, N*OH*OWc) copy of an (N, F, OH, OW) gradient, zero in wide padding columns."""
    f = grad_out.shape[1]
    out = (np.zeros if g.owc != g.ow else np.empty)((f, g.n, g.oh, g.owc), grad_out.dtype)
    out[:, :, :, :g.ow] = grad_out.transpose(1, 0, 2, 3)
    return out.reshape(f, g.cols)


def from_columns(product: np.ndarray, g: Geometry) -> np.ndarray:
    """Return the (N, F, OH, OW) view of an (F, N*OH*OWc) GEMM result, wide columns dropped."""
    f = product.shape[0]
    return product.reshape(f, g.n, g.oh, g.owc)[:, :, :, :g.ow].transpose(1, 0, 2, 3)


# ---- pooling ---------------------------------------------------------------------

def pad_input(x: np.ndarray, g: Geometry, fill: float) -> np.ndarray:
    """Return x itself without padding, else a padded copy filled with `fill` (-inf for max, 0 for average)."""
    if not (g.ph or g.pw):
        return x
    padded = np.full((g.n, g.c, g.hp, g.wp), fill, x.dtype)
    padded[:, :, g.ph:g.ph + g.h, g.pw:g.pw + g.w] = x
    return padded


def window(a: np.ndarray, g: Geometry, i: int, j: int) -> np.ndarray:
    """Return the (N, C, OH, OW) view of a padded (N, C, Hp, Wp) array under kernel offset (i, j)."""
    return a[:, :, i:i + g.sh * (g.oh - 1) + 1:g.sh, j:j + g.sw * (g.ow - 1) + 1:g.sw]


def tiles(g: Geometry) -> bool:
    """True when the windows tile the input exactly (stride == size, no padding):
    every input element lies in exactly one window."""
    return (g.sh, g.sw) == (g.kh, g.kw) and not (g.ph or g.pw)


def unpad(grad: np.ndarray, g: Geometry) -> np.ndarray:
    """Return the gradient of the unpadded input from the gradient of the padded one."""
    if not (g.ph or g.pw):
        return grad
    return grad[:, :, g.ph:g.ph + g.h, g.pw:g.pw + g.w].copy()
