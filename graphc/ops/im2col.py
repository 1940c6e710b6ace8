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
    def wide(self) -> bool:
        """True when the columns run over the full padded width (see the module docstring)."""
        return self.sw == 1 and self.ow < WIDE_BELOW_OW and self.wp <= WIDE_LIMIT * self.ow

    @property
    def owc(self) -> int:
        """Width of the column grid: the padded width for wide columns, else OW."""
        return self.wp if self.wide else self.ow

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


def _padded_flat(g: Geometry, dtype, tag: str) -> np.ndarray:
    """A pooled flat buffer for an (N, C, Hp, Wp) array plus kw - 1 elements of slack,
    which the last wide column of the last row reads or adds into. Zeroed when made;
    keyed by the padding too, so that a buffer whose border is zero is only ever
    reused with the same border."""
    return POOL.take((tag, g.hp, g.wp, g.ph, g.pw), (g.n * g.c * g.hp * g.wp + g.kw - 1,), dtype, np.zeros)


def _interior(flat: np.ndarray, g: Geometry) -> np.ndarray:
    """The (N, C, H, W) unpadded part of a padded flat buffer."""
    padded = flat[:flat.size - (g.kw - 1)].reshape(g.n, g.c, g.hp, g.wp)
    return padded[:, :, g.ph:g.ph + g.h, g.pw:g.pw + g.w]


def _offset_view(flat: np.ndarray, g: Geometry, i: int, j: int) -> np.ndarray:
    """The (C, N, OH, OWc) view of a padded flat buffer under kernel offset (i, j)."""
    item = flat.itemsize
    plane = g.hp * g.wp
    return as_strided(flat[i * g.wp + j:], (g.c, g.n, g.oh, g.owc),
                      (plane * item, g.c * plane * item, g.sh * g.wp * item, g.sw * item))


def im2col(x: np.ndarray, g: Geometry, ones_row: bool = False, rows_only: bool = False) -> np.ndarray:
    """Return the (C*kh*kw [+ 1], N*OH*OWc) column matrix of x, zero padding included.

    With `ones_row` the matrix has one more row, of ones (the bias row). With
    `rows_only` (wide columns only) it holds only the kernel offsets (i, 0):
    C*kh [+ 1] rows (see `row_sums`). The matrix comes from POOL: give it back
    with `give_columns` when done with it.
    """
    kernel_columns = 1 if rows_only else g.kw
    rows = g.c * g.kh * kernel_columns
    if ones_row:
        # Only im2col takes "cols+1" matrices and it never writes their last row: ones once.
        cols = POOL.take("cols+1", (rows + 1, g.cols), x.dtype, _with_ones_row)
    else:
        cols = POOL.take("cols", (rows, g.cols), x.dtype)
    pooled = bool(g.ph or g.pw or g.wide)
    if pooled:
        # Only the interior is ever written, so the pooled buffer's border stays zero.
        flat = _padded_flat(g, x.dtype, "padded")
        np.copyto(_interior(flat, g), x.reshape(g.n, g.c, g.h, g.w))
    else:
        flat = np.ascontiguousarray(x).reshape(-1)   # no padding, no slack read: x itself
    item = flat.itemsize
    plane = g.hp * g.wp
    # One strided view holds every window; a single copy lays it out as columns.
    windows = as_strided(flat, (g.c, g.kh, kernel_columns, g.n, g.oh, g.owc),
                         (plane * item, g.wp * item, item, g.c * plane * item,
                          g.sh * g.wp * item, g.sw * item), writeable=False)
    np.copyto(cols[:rows].reshape(windows.shape), windows)
    if pooled:
        POOL.give(("padded", g.hp, g.wp, g.ph, g.pw), flat)
    return cols


def _with_ones_row(shape, dtype) -> np.ndarray:
    cols = np.empty(shape, dtype)
    cols[-1] = 1
    return cols


def give_columns(cols: np.ndarray, g: Geometry, rows_only: bool = False) -> None:
    """Return a column matrix from `im2col` to the pool."""
    rows = g.c * g.kh if rows_only else g.rows
    POOL.give("cols+1" if cols.shape[0] > rows else "cols", cols)


def per_sample(cols: np.ndarray, g: Geometry) -> np.ndarray:
    """The (N, rows, OH*OWc) view of a (rows, N*OH*OWc) matrix: sample n's columns as one
    matrix, which BLAS reads in place (row stride N*OH*OWc)."""
    return cols.reshape(cols.shape[0], g.n, g.oh * g.owc).transpose(1, 0, 2)


def col2im(dcols: np.ndarray, g: Geometry, overwrite: bool = False) -> np.ndarray:
    """Return the (N, C, H, W) input gradient from column gradients (a fresh array).

    A loop over the kh*kw kernel offsets, each one strided slice-add of every
    window's gradient at that offset (never np.add.at). Column gradients at
    wide padding columns must be zero. With `overwrite` (wide columns only),
    dcols is used as scratch: see `_sum_over_kernel_columns`.
    """
    if overwrite and g.wide:
        return col2im_rows(_sum_over_kernel_columns(dcols, g), g)
    flat = _gradient_flat(g, dcols.dtype)
    per_offset = dcols.reshape(g.c, g.kh, g.kw, g.n, g.oh, g.owc)
    for _, i, j in g.offsets():
        view = _offset_view(flat, g, i, j)
        np.add(view, per_offset[:, i, j], out=view)
    return _image_of(flat, g)


def col2im_rows(sums: np.ndarray, g: Geometry) -> np.ndarray:
    """Return the (N, C, H, W) input gradient from wide column gradients already summed over
    the kernel's column offsets: (C, kh, N, OH, OWc) or (C*kh, N*OH*OWc) sums, each added
    in at offset (i, 0). A fresh array."""
    flat = _gradient_flat(g, sums.dtype)
    sums = sums.reshape(g.c, g.kh, g.n, g.oh, g.owc)
    for i in range(g.kh):
        view = _offset_view(flat, g, i, 0)
        np.add(view, sums[:, i], out=view)
    return _image_of(flat, g)


def _gradient_flat(g: Geometry, dtype) -> np.ndarray:
    """A zeroed flat (N, C, Hp, Wp) buffer plus slack for col2im's sums: pooled when padded
    (the interior is copied out), fresh otherwise (it is the result)."""
    if g.ph or g.pw:
        flat = _padded_flat(g, dtype, "dpadded")
        flat.fill(0)
        return flat
    return np.zeros(g.n * g.c * g.hp * g.wp + g.kw - 1, dtype)


def _image_of(flat: np.ndarray, g: Geometry) -> np.ndarray:
    """Return the input gradient held in a `_gradient_flat` buffer (and pool the buffer)."""
    if g.ph or g.pw:
        dx = _interior(flat, g).copy()
        POOL.give(("dpadded", g.hp, g.wp, g.ph, g.pw), flat)
        return dx
    return flat[:flat.size - (g.kw - 1)].reshape(g.n, g.c, g.hp, g.wp)


def _sum_over_kernel_columns(dcols: np.ndarray, g: Geometry) -> np.ndarray:
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
    per_offset = dcols.reshape(g.c, g.kh, g.kw, -1)
    sums = per_offset[:, :, 0]
    total = sums.shape[-1]
    for j in range(1, g.kw):
        np.add(sums[:, :, j:], per_offset[:, :, j, :total - j], out=sums[:, :, j:])
    return sums.reshape(g.c, g.kh, g.n, g.oh, g.owc)


def to_columns(grad_out: np.ndarray, g: Geometry) -> np.ndarray:
    """Return an (F, N*OH*OWc) copy of an (N, F, OH, OW) gradient, zero in wide padding columns.

    The copy comes from POOL (tag ("gcols", OW); only its first OW columns of each row
    are ever written, so the wide ones stay zero): give it back with `give_grad_columns`.
    """
    f = grad_out.shape[1]
    out = POOL.take(("gcols", g.ow), (f, g.n, g.oh, g.owc), grad_out.dtype, np.zeros)
    out[:, :, :, :g.ow] = grad_out.transpose(1, 0, 2, 3)
    return out.reshape(f, g.cols)


# ---- row columns: im2col over the kernel's rows only -------------------------------

def row_columns_pay(g: Geometry, filters: int) -> bool:
    """True when a conv should use row columns (see `row_sums`): wide columns, and no more
    filters than C*kh, so that its (kw*F, N*OH*OWc) product is no bigger than full columns."""
    return g.wide and filters <= g.c * g.kh


def row_sums(product: np.ndarray, g: Geometry, filters: int) -> np.ndarray:
    """Sum a row-columns product over the kernel's column offsets, in place; return the
    (F, N*OH*OWc) result (a view of the product), as a full-columns GEMM would give it.

    Row columns hold only kernel offsets (i, 0): C*kh rows instead of C*kh*kw. With wide
    columns, the column of offset (i, j) for output column q is the column of (i, 0) for
    q + j (the same image row, j elements on; only wide padding columns, whose results are
    discarded, run into the next row). So one GEMM of the weights stacked as (j, f) rows
    against row columns, then kw - 1 shifted adds, gives the conv: on LeNet's second conv
    im2col copies 5x less, and its three GEMMs get kw times longer inner dimensions.
    """
    blocks = product.reshape(g.kw, filters, -1)
    total = blocks.shape[-1]
    for j in range(1, g.kw):
        np.add(blocks[0, :, :total - j], blocks[j, :, j:], out=blocks[0, :, :total - j])
    return blocks[0]


def shifted_gradients(grad_out: np.ndarray, g: Geometry) -> np.ndarray:
    """Return the (kw*F, N*OH*OWc) matrix whose block j is `to_columns(grad_out)` shifted
    right by j columns (zeros shifted in): against row columns it gives the weight
    gradient of offset (i, j), and the weights times it the row-summed column gradient
    (see `row_sums`). Pooled: give it back with `give_shifted_gradients`."""
    f = grad_out.shape[1]
    blocks = POOL.take(("shifted", g.ow), (g.kw, f, g.n, g.oh, g.owc), grad_out.dtype, np.zeros)
    # Block 0's wide columns are never written, so they stay zero; the others are
    # rewritten whole every time.
    blocks[0, :, :, :, :g.ow] = grad_out.transpose(1, 0, 2, 3)
    flat = blocks.reshape(g.kw, f, -1)
    total = flat.shape[-1]
    for j in range(1, g.kw):
        flat[j, :, :j] = 0
        flat[j, :, j:] = flat[0, :, :total - j]
    return flat.reshape(g.kw * f, total)


def give_shifted_gradients(blocks: np.ndarray, g: Geometry) -> None:
    """Return a matrix from `shifted_gradients` to the pool."""
    POOL.give(("shifted", g.ow), blocks.reshape(g.kw, -1, g.n, g.oh, g.owc))


def give_grad_columns(g_cols: np.ndarray, g: Geometry) -> None:
    """Return a matrix from `to_columns` to the pool."""
    POOL.give(("gcols", g.ow), g_cols.reshape(g_cols.shape[0], g.n, g.oh, g.owc))


def from_columns(product: np.ndarray, g: Geometry, out: np.ndarray) -> np.ndarray:
    """Copy an (F, N*OH*OWc) GEMM result into the (N, F, OH, OW) array `out`, wide columns
    dropped; return out."""
    f = product.shape[0]
    np.copyto(out, product.reshape(f, g.n, g.oh, g.owc)[:, :, :, :g.ow].transpose(1, 0, 2, 3))
    return out


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
