"""The fast conv path: column matrices in three layouts (wide, narrow, row), pooled scratch.

Input: NCHW arrays and a `ColumnGeometry` built from planned shapes (the output
size always comes from kernels.conv_out_size, through the shape rules; a floored
size leaves the last input rows or columns unread: only the discarded results of
wide columns touch them, and col2im leaves their gradient zero). Output:
column matrices for conv's one GEMM, input gradients and the GEMM results laid
out as NCHW. Nothing here knows about graphs. This is the registered conv
kernel's machinery (ops/layers.py); ops/im2col.py holds the textbook version it
is tested against (tests/test_conv_reference.py): same maths, one layout, no
pooled buffers, a fraction of the code.

Column layout. The columns are a (C*kh*kw, N*OH*OWc) matrix, rows ordered
(c, i, j) like a [filters, C, kh, kw] weight, columns ordered (n, oh, ow).
Measured on LeNet-5's two convs at batch 100 in float32 (2 cores), against
the transposed layout (N*OH*OW, C*kh*kw): forward 1.4 vs 3.5 ms (conv1) and
1.7 vs 2.6 ms (conv2); backward 1.3 vs 1.7 ms (conv1, no input gradient) and
4.4 vs 5.2 ms (conv2).

"Wide" columns. With a horizontal stride of 1 the columns can run over the
full padded width (OWc = Wp instead of OW): for a fixed kernel offset, one
sample's row of columns is then a single contiguous run of the padded input,
so im2col and col2im copy runs of OH*Wp elements instead of OW (NumPy's cost
is per run: col2im on runs of 140 floats is already 3x slower than
contiguous). On LeNet's second conv (OW = 10) this took forward + backward
from 5.5 to 3.6 ms. The extra Wp - OW columns per output row read whatever
follows in memory (the next row, or a few elements of slack at the end of the
buffer); the GEMM result there is discarded, and the gradient fed back there
is zero, so col2im only ever adds zeros through them. Wide columns cost Wp/OW
times the GEMM work and need a transposing copy on each side of the GEMM, so
they are used only for narrow outputs (OW < WIDE_BELOW_OW).

Narrow columns (every other conv) skip both transposes: the columns of
sample n are the (C*kh*kw, OH*OW) block `per_sample(cols)[n]`, a strided
view BLAS reads directly, so one batched matmul writes the output straight
into the planned NCHW buffer and the weight gradient is a sum of per-sample
products that reads grad_out as it is. On SimpleConvNet's conv (30 filters,
24x24 outputs) at 1 thread: forward 2.86 -> 2.0 ms, weight gradient
3.3 -> 1.9 ms.

Bias row. When a conv has a bias, the column matrix gets one more row of
ones (written once, when the pooled buffer is made) and the weight one more
column holding the bias: the GEMM adds the bias for free, and the same row
turns the weight-gradient GEMM's last column into the bias gradient.

Row columns. With wide columns, the column of kernel offset (i, j) is the
column of (i, 0) shifted by j, so a conv with few filters keeps only the
C*kh rows of offsets (i, 0) and does the kernel's columns with shifted adds
(`row_sums`, `shifted_gradients`, `col2im_rows`). col2im of full wide columns
sums over j the same way first (`_sum_over_kernel_columns`).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

from graphc.ops.im2col import Geometry

# Wide columns cost Wp/OW times the GEMM work; past this ratio narrow ones win.
WIDE_LIMIT = 1.5
# Outputs at least this wide use narrow columns: their runs are long enough, and the
# batched GEMM saves two transposing copies (LeNet's first conv, OW = 28: 2.7 -> 2.3 ms
# forward + backward; SimpleConvNet's, OW = 24: 6.1 -> 3.9 ms; its second, OW = 10, stays wide).
WIDE_BELOW_OW = 16


class BufferPool:
    """Free lists of large scratch arrays, by (tag, shape, dtype).

    Column matrices are megabytes; when two of them were freed each step, glibc
    gave the memory back to the OS and every step paid ~2000 page faults
    (im2col took 1.7 ms instead of 0.33 on LeNet's second conv). An array is
    handed out by `take` and owned by its taker until it is passed to `give`;
    one that is never given back is simply garbage collected. Each thread has
    free lists of its own, so kernels may run in several threads at once.
    """

    def __init__(self, per_key: int = 2, keys: int = 64):
        self._local = threading.local()
        self._per_key, self._keys = per_key, keys

    @property
    def _free(self) -> dict[tuple, list[np.ndarray]]:
        free = getattr(self._local, "free", None)
        if free is None:
            free = self._local.free = {}
        return free

    def take(self, tag, shape: tuple[int, ...], dtype, fresh=np.empty) -> np.ndarray:
        """Return an array of `shape` and `dtype`: a free one (holding whatever its last user
        left) or, when none is free, `fresh(shape, dtype)` (np.empty, np.zeros, ...)."""
        free = self._free.get((tag, tuple(shape), np.dtype(dtype)))
        return free.pop() if free else fresh(shape, dtype)

    def give(self, tag, array: np.ndarray) -> None:
        """Return an array obtained from `take`; the caller must hold no other reference."""
        key = (tag, array.shape, array.dtype)
        if key not in self._free and len(self._free) >= self._keys:
            self._free.pop(next(iter(self._free)))     # forget the oldest shape (batch sizes change)
        free = self._free.setdefault(key, [])
        if len(free) < self._per_key:
            free.append(array)


POOL = BufferPool()


@dataclass(frozen=True)
class ColumnGeometry(Geometry):
    """A conv's Geometry plus the column layout the fast path picks for it."""

    @property
    def wide(self) -> bool:
        """True when the columns run over the full padded width (see the module docstring)."""
        return self.sw == 1 and self.ow < WIDE_BELOW_OW and self.wp <= WIDE_LIMIT * self.ow

    @property
    def owc(self) -> int:
        """Width of the column grid: the padded width for wide columns, else OW."""
        return self.wp if self.wide else self.ow

    @property
    def cols(self) -> int:
        """Columns of the column matrix: N * OH * OWc."""
        return self.n * self.oh * self.owc


def column_geometry(x_shape: tuple[int, ...], attrs: dict, out_hw: tuple[int, int]) -> ColumnGeometry:
    """Return the ColumnGeometry of a conv on an (N, C, H, W) input, given its attributes and planned output size."""
    n, c, h, w = x_shape
    return ColumnGeometry(n, c, h, w, *attrs["kernel"], *attrs["stride"], *attrs["pad"], *out_hw)


def _padded_flat(geo: ColumnGeometry, dtype, tag: str) -> np.ndarray:
    """A pooled flat buffer for an (N, C, Hp, Wp) array plus kw - 1 elements of slack,
    which the last wide column of the last row reads or adds into. Zeroed when made;
    keyed by the padding too, so that a buffer whose border is zero is only ever
    reused with the same border."""
    return POOL.take((tag, geo.hp, geo.wp, geo.ph, geo.pw), (geo.n * geo.c * geo.hp * geo.wp + geo.kw - 1,), dtype, np.zeros)


def _interior(flat: np.ndarray, geo: ColumnGeometry) -> np.ndarray:
    """The (N, C, H, W) unpadded part of a padded flat buffer."""
    padded = flat[:flat.size - (geo.kw - 1)].reshape(geo.n, geo.c, geo.hp, geo.wp)
    return padded[:, :, geo.ph:geo.ph + geo.h, geo.pw:geo.pw + geo.w]


def _offset_view(flat: np.ndarray, geo: ColumnGeometry, i: int, j: int) -> np.ndarray:
    """The (C, N, OH, OWc) view of a padded flat buffer under kernel offset (i, j)."""
    item = flat.itemsize
    plane = geo.hp * geo.wp
    return as_strided(flat[i * geo.wp + j:], (geo.c, geo.n, geo.oh, geo.owc),
                      (plane * item, geo.c * plane * item, geo.sh * geo.wp * item, geo.sw * item))


def im2col(x: np.ndarray, geo: ColumnGeometry, ones_row: bool = False, rows_only: bool = False) -> np.ndarray:
    """Return the (C*kh*kw [+ 1], N*OH*OWc) column matrix of x, zero padding included.

    With `ones_row` the matrix has one more row, of ones (the bias row). With
    `rows_only` (wide columns only) it holds only the kernel offsets (i, 0):
    C*kh [+ 1] rows (see `row_sums`). The matrix comes from POOL: give it back
    with `give_columns` when done with it.
    """
    kernel_columns = 1 if rows_only else geo.kw
    rows = geo.c * geo.kh * kernel_columns
    if ones_row:
        # Only im2col takes "cols+1" matrices and it never writes their last row: ones once.
        cols = POOL.take("cols+1", (rows + 1, geo.cols), x.dtype, _with_ones_row)
    else:
        cols = POOL.take("cols", (rows, geo.cols), x.dtype)
    pooled = geo.padded or geo.wide
    if pooled:
        # Only the interior is ever written, so the pooled buffer's border stays zero.
        flat = _padded_flat(geo, x.dtype, "padded")
        np.copyto(_interior(flat, geo), x.reshape(geo.n, geo.c, geo.h, geo.w))
    else:
        flat = np.ascontiguousarray(x).reshape(-1)   # no padding, no slack read: x itself
    item = flat.itemsize
    plane = geo.hp * geo.wp
    # One strided view holds every window; a single copy lays it out as columns.
    windows = as_strided(flat, (geo.c, geo.kh, kernel_columns, geo.n, geo.oh, geo.owc),
                         (plane * item, geo.wp * item, item, geo.c * plane * item,
                          geo.sh * geo.wp * item, geo.sw * item), writeable=False)
    np.copyto(cols[:rows].reshape(windows.shape), windows)
    if pooled:
        POOL.give(("padded", geo.hp, geo.wp, geo.ph, geo.pw), flat)
    return cols


def _with_ones_row(shape, dtype) -> np.ndarray:
    cols = np.empty(shape, dtype)
    cols[-1] = 1
    return cols


def give_columns(cols: np.ndarray, geo: ColumnGeometry, rows_only: bool = False) -> None:
    """Return a column matrix from `im2col` to the pool."""
    rows = geo.c * geo.kh if rows_only else geo.rows
    POOL.give("cols+1" if cols.shape[0] > rows else "cols", cols)


def per_sample(cols: np.ndarray, geo: ColumnGeometry) -> np.ndarray:
    """The (N, rows, OH*OWc) view of a (rows, N*OH*OWc) matrix: sample n's columns as one
    matrix, which BLAS reads in place (row stride N*OH*OWc)."""
    return cols.reshape(cols.shape[0], geo.n, geo.oh * geo.owc).transpose(1, 0, 2)


def col2im(dcols: np.ndarray, geo: ColumnGeometry, overwrite: bool = False) -> np.ndarray:
    """Return the (N, C, H, W) input gradient from column gradients (a fresh array).

    A loop over the kh*kw kernel offsets, each one strided slice-add of every
    window's gradient at that offset (never np.add.at). Column gradients at
    wide padding columns must be zero. With `overwrite` (wide columns only),
    dcols is used as scratch: see `_sum_over_kernel_columns`.
    """
    if overwrite and geo.wide:
        return col2im_rows(_sum_over_kernel_columns(dcols, geo), geo)
    flat = _gradient_flat(geo, dcols.dtype)
    per_offset = dcols.reshape(geo.c, geo.kh, geo.kw, geo.n, geo.oh, geo.owc)
    for _, i, j in geo.offsets():
        view = _offset_view(flat, geo, i, j)
        np.add(view, per_offset[:, i, j], out=view)
    return _image_of(flat, geo)


def col2im_rows(sums: np.ndarray, geo: ColumnGeometry) -> np.ndarray:
    """Return the (N, C, H, W) input gradient from wide column gradients already summed over
    the kernel's column offsets: (C, kh, N, OH, OWc) or (C*kh, N*OH*OWc) sums, each added
    in at offset (i, 0). A fresh array."""
    flat = _gradient_flat(geo, sums.dtype)
    sums = sums.reshape(geo.c, geo.kh, geo.n, geo.oh, geo.owc)
    for i in range(geo.kh):
        view = _offset_view(flat, geo, i, 0)
        np.add(view, sums[:, i], out=view)
    return _image_of(flat, geo)


def _gradient_flat(geo: ColumnGeometry, dtype) -> np.ndarray:
    """A zeroed flat (N, C, Hp, Wp) buffer plus slack for col2im's sums: pooled when padded
    (the interior is copied out), fresh otherwise (it is the result)."""
    if geo.padded:
        flat = _padded_flat(geo, dtype, "dpadded")
        flat.fill(0)
        return flat
    return np.zeros(geo.n * geo.c * geo.hp * geo.wp + geo.kw - 1, dtype)


def _image_of(flat: np.ndarray, geo: ColumnGeometry) -> np.ndarray:
    """Return the input gradient held in a `_gradient_flat` buffer (and pool the buffer)."""
    if geo.padded:
        dx = _interior(flat, geo).copy()
        POOL.give(("dpadded", geo.hp, geo.wp, geo.ph, geo.pw), flat)
        return dx
    return flat[:flat.size - (geo.kw - 1)].reshape(geo.n, geo.c, geo.hp, geo.wp)


def _sum_over_kernel_columns(dcols: np.ndarray, geo: ColumnGeometry) -> np.ndarray:
    """Sum wide column gradients over the kernel's column offset j, in place; return the
    (C, kh, N, OH, OWc) sums (a view of dcols), which col2im adds in at offset (i, 0).

    With wide columns, offset (i, j) sends column q of a sample to the image element
    j after the one offset (i, 0) sends it to, and consecutive columns go to consecutive
    elements; so shifting each j's gradients by j along the flat columns lines them
    up with j = 0. A shift crosses from one sample's columns into the next only with
    the last kw - 1 columns of a row, the wide padding ones, whose gradient is zero.
    The shifts are kw - 1 long contiguous adds: on LeNet's second conv col2im took
    0.64 ms instead of 1.4 (25 strided adds, each of 600 runs of 140 elements).
    """
    per_offset = dcols.reshape(geo.c, geo.kh, geo.kw, -1)
    sums = per_offset[:, :, 0]
    total = sums.shape[-1]
    for j in range(1, geo.kw):
        np.add(sums[:, :, j:], per_offset[:, :, j, :total - j], out=sums[:, :, j:])
    return sums.reshape(geo.c, geo.kh, geo.n, geo.oh, geo.owc)


def to_columns(grad_out: np.ndarray, geo: ColumnGeometry) -> np.ndarray:
    """Return an (F, N*OH*OWc) copy of an (N, F, OH, OW) gradient, zero in wide padding columns.

    The copy comes from POOL (tag ("gcols", OW); only its first OW columns of each row
    are ever written, so the wide ones stay zero): give it back with `give_grad_columns`.
    """
    f = grad_out.shape[1]
    out = POOL.take(("gcols", geo.ow), (f, geo.n, geo.oh, geo.owc), grad_out.dtype, np.zeros)
    out[:, :, :, :geo.ow] = grad_out.transpose(1, 0, 2, 3)
    return out.reshape(f, geo.cols)


# ---- row columns: im2col over the kernel's rows only -------------------------------

def row_columns_pay(geo: ColumnGeometry, filters: int) -> bool:
    """True when a conv should use row columns (see `row_sums`): wide columns, and no more
    filters than C*kh, so that its (kw*F, N*OH*OWc) product is no bigger than full columns."""
    return geo.wide and filters <= geo.c * geo.kh


def row_sums(product: np.ndarray, geo: ColumnGeometry, filters: int) -> np.ndarray:
    """Sum a row-columns product over the kernel's column offsets, in place; return the
    (F, N*OH*OWc) result (a view of the product), as a full-columns GEMM would give it.

    Row columns hold only kernel offsets (i, 0): C*kh rows instead of C*kh*kw. With wide
    columns, the column of offset (i, j) for output column q is the column of (i, 0) for
    q + j (the same image row, j elements on; only wide padding columns, whose results are
    discarded, run into the next row). So one GEMM of the weights stacked as (j, f) rows
    against row columns, then kw - 1 shifted adds, gives the conv: on LeNet's second conv
    im2col copies 5x less, and its three GEMMs get kw times longer inner dimensions.
    """
    blocks = product.reshape(geo.kw, filters, -1)
    total = blocks.shape[-1]
    for j in range(1, geo.kw):
        np.add(blocks[0, :, :total - j], blocks[j, :, j:], out=blocks[0, :, :total - j])
    return blocks[0]


def shifted_gradients(grad_out: np.ndarray, geo: ColumnGeometry) -> np.ndarray:
    """Return the (kw*F, N*OH*OWc) matrix whose block j is `to_columns(grad_out)` shifted
    right by j columns (zeros shifted in): against row columns it gives the weight
    gradient of offset (i, j), and the weights times it the row-summed column gradient
    (see `row_sums`). Pooled: give it back with `give_shifted_gradients`."""
    f = grad_out.shape[1]
    blocks = POOL.take(("shifted", geo.ow), (geo.kw, f, geo.n, geo.oh, geo.owc), grad_out.dtype, np.zeros)
    # Block 0's wide columns are never written, so they stay zero; the others are
    # rewritten whole every time.
    blocks[0, :, :, :, :geo.ow] = grad_out.transpose(1, 0, 2, 3)
    flat = blocks.reshape(geo.kw, f, -1)
    total = flat.shape[-1]
    for j in range(1, geo.kw):
        flat[j, :, :j] = 0
        flat[j, :, j:] = flat[0, :, :total - j]
    return flat.reshape(geo.kw * f, total)


def give_shifted_gradients(blocks: np.ndarray, geo: ColumnGeometry) -> None:
    """Return a matrix from `shifted_gradients` to the pool."""
    POOL.give(("shifted", geo.ow), blocks.reshape(geo.kw, -1, geo.n, geo.oh, geo.owc))


def give_grad_columns(g_cols: np.ndarray, geo: ColumnGeometry) -> None:
    """Return a matrix from `to_columns` to the pool."""
    POOL.give(("gcols", geo.ow), g_cols.reshape(g_cols.shape[0], geo.n, geo.oh, geo.owc))


def from_columns(product: np.ndarray, geo: ColumnGeometry, out: np.ndarray) -> np.ndarray:
    """Copy an (F, N*OH*OWc) GEMM result into the (N, F, OH, OW) array `out`, wide columns
    dropped; return out."""
    f = product.shape[0]
    np.copyto(out, product.reshape(f, geo.n, geo.oh, geo.owc)[:, :, :, :geo.ow].transpose(1, 0, 2, 3))
    return out
