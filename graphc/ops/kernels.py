"""Numerical kernels shared by several ops: the one conv/pool size formula (with pad=same
and the warning for input rows it leaves unread), the image check, broadcast alignment
and its undoing, log_softmax (the one log-sum-exp), and the memory setting of the
commands that train (`retain_freed_memory`).

Input: NumPy arrays and planned shapes. Output: NumPy arrays. Nothing here
knows about graphs or the language.
"""
from __future__ import annotations

import ctypes
import os
import sys

import numpy as np

from graphc.ops.attrs import AttrError
from graphc.tensor_type import ShapeError, TensorType, float_inputs, format_shape


def conv_out_size(size: int, kernel: int, stride: int, pad: int, *, what: str = "output height",
                  ceil: bool = False) -> int:
    """Return floor((size + 2*pad - kernel) / stride) + 1, the one conv/pool output size formula
    (PyTorch's and Caffe's conv); with `ceil`, pooling's ceil_mode as PyTorch has it: the
    division rounds up, but the last window must start inside the input or its left padding.

    Rows the floor leaves unread are `unread_rows`' business (a warning, not an error).
    Raises ShapeError (with the formula filled in) when the size would be less than 1.
    """
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if out < 1:
        raise ShapeError(
            f"{what} would be less than 1: the kernel ({kernel}) is larger than the padded input ({size + 2 * pad})",
            help=f"{'ceil' if ceil else 'floor'}(({size} + 2*{pad} - {kernel}) / {stride}) + 1 = {out}; "
                 "use a smaller kernel or more padding")
    if ceil and (out - 1) * stride >= size + pad:
        out -= 1     # that window would start in the right padding: PyTorch drops it
    return out


def unread_rows(size: int, kernel: int, stride: int, pad: int, out: int) -> range:
    """Return the input rows (or columns) that `out` windows never read although they hold data:
    the rows after the last window's end, when the floor dropped a window that would have
    reached them. Empty when kernel < stride: windows that skip rows are that design."""
    if kernel < stride:
        return range(0)
    last_read = (out - 1) * stride - pad + kernel - 1
    return range(last_read + 1, size)


def pad_that_reads_all(size: int, kernel: int, stride: int, pad: int) -> int:
    """Return the smallest pad >= `pad` whose floored windows read every input row
    (one exists below pad + stride: the remainder of the division is then at most the pad)."""
    p = pad
    while unread_rows(size, kernel, stride, p, (size + 2 * p - kernel) // stride + 1):
        p += 1
    return p


def same_pad(attrs: dict, kernel_name: str, stride: tuple[int, int]) -> dict:
    """Return attrs with `pad=same` replaced by the pad that keeps the size at stride 1:
    (kernel - 1) / 2 on each side. Raises AttrError for a stride other than 1 or an even kernel."""
    if attrs["pad"] != "same":
        return attrs
    kernel = attrs[kernel_name]
    if stride != (1, 1):
        raise AttrError("pad", f"`pad=same` needs stride 1, got stride {_pair(stride)}",
                        help="as PyTorch's padding='same': with a larger stride, give the pad as a number")
    if kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
        raise AttrError("pad", f"`pad=same` needs an odd {kernel_name}, got {kernel_name}={_pair(kernel)}",
                        help="an even kernel needs one more row of padding after the input than before it "
                             f"(PyTorch pads so); graphc pads both sides alike: use an odd {kernel_name}, or give the pad")
    return {**attrs, "pad": ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2)}


def dropped_rows_warning(op_name: str, hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
                         pad: tuple[int, int], out_hw: tuple[int, int], *, kernel_name: str = "kernel",
                         max_pad: tuple[int, int] | None = None, ceil_mode: bool = False) -> tuple[str, str] | None:
    """Return (message, help) of the warning for input rows/columns that a conv or pool never
    reads although they hold data (see `unread_rows`), or None when every row is read.

    The help shows the formula and names the pad that reads them all (or, past `max_pad`,
    the kernel); `ceil_mode` adds pooling's other way out.
    """
    axes = list(zip(("row", "column"), hw, kernel, stride, pad, out_hw))
    unread = [unread_rows(size, k, s, p, out) for _, size, k, s, p, out in axes]
    if not any(unread):
        return None
    message = f"{op_name} never reads input " + " and ".join(
        _rows_named(word, rows) for (word, *_), rows in zip(axes, unread) if rows)
    covered = []
    for (word, size, k, s, p, out), rows in zip(axes, unread):
        if rows and not (covered and (hw[0], kernel[0], stride[0], pad[0]) == (hw[1], kernel[1], stride[1], pad[1])):
            covered.append(f"floor(({size} + 2*{p} - {k}) / {s}) + 1 = {out} windows cover {word}s 0..{rows.start - 1}")
    new_pad = tuple(pad_that_reads_all(size, k, s, p) for _, size, k, s, p, _ in axes)
    if max_pad is None or all(p <= limit for p, limit in zip(new_pad, max_pad)):
        fix = f"pad={_pair(new_pad)}"
    else:
        fix = f"{kernel_name}={_pair(tuple(_kernel_that_reads_all(size, k, s, p) for _, size, k, s, p, _ in axes))}"
    if ceil_mode:
        fix += " or ceil_mode=true"
    return message, "; ".join(covered) + f"; {fix} reads them all"


def _rows_named(word: str, rows: range) -> str:
    """`row 13`, `rows 12 and 13`, `rows 11..13`."""
    if len(rows) == 1:
        return f"{word} {rows.start}"
    joiner = " and " if len(rows) == 2 else ".."
    return f"{word}s {rows.start}{joiner}{rows.stop - 1}"


def _pair(values: tuple[int, int]) -> str:
    return str(values[0]) if values[0] == values[1] else f"[{values[0]}, {values[1]}]"


def _kernel_that_reads_all(size: int, kernel: int, stride: int, pad: int) -> int:
    """Return the smallest kernel >= `kernel` whose floored windows read every input row."""
    k = kernel
    while k < size + 2 * pad and unread_rows(size, k, stride, pad, (size + 2 * pad - k) // stride + 1):
        k += 1
    return k


def image_type(in_types: list[TensorType], what: str) -> TensorType:
    """Return the first input's type after checking it is a float [channels, height, width]
    image (conv, pooling); raise ShapeError otherwise."""
    float_inputs(in_types, 0)
    x = in_types[0]
    if x.rank != 3:
        raise ShapeError(
            f"{what} expects a per-sample shape [channels, height, width], got {format_shape(x.shape)}",
            help="reshape the input first, e.g. reshape(x, [1, 28, 28]) for MNIST's [784]", arg=0)
    return x


def batch_size(t: TensorType, a: np.ndarray) -> int:
    """Return a step's batch size read off an array whose type is (or is batched like) t:
    its leading axis when t is batched, else 1 (an unbatched tensor counts as one sample)."""
    return a.shape[0] if t.batched else 1


def image_shape(ctx, a: np.ndarray) -> tuple[int, int, int, int]:
    """Return (N, C, H, W) of a conv or pool step's input, given any batched array of the step
    (the input, or grad_out); an unbatched input counts as a batch of one."""
    t = ctx.in_types[0]
    return (batch_size(t, a), *t.shape)


def align(x: np.ndarray, t: TensorType, out_rank: int) -> np.ndarray:
    """Return x viewed so that NumPy's broadcasting matches per-sample broadcasting.

    A batched tensor of per-sample rank r < out_rank gets ones inserted after
    its batch axis; NumPy would otherwise align its batch axis with a feature axis.
    """
    if t.batched and t.rank < out_rank:
        return x.reshape((x.shape[0],) + (1,) * (out_rank - t.rank) + x.shape[1:])
    return x


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Return grad summed down to `shape`: the reverse of NumPy broadcasting.

    The add gate passes its gradient through; where an input was broadcast,
    every copy's gradient flows back into the one original, so they are summed.
    """
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def grad_for(grad: np.ndarray, x: np.ndarray, t: TensorType, out_rank: int) -> np.ndarray:
    """Return the gradient of an elementwise-gate input: unbroadcast to its aligned view, then its own shape."""
    # asarray, not ascontiguousarray: that one turns a 0-d gradient into shape (1,).
    return np.asarray(unbroadcast(grad, align(x, t, out_rank).shape).reshape(x.shape), order="C")


def log_softmax(x: np.ndarray, axis: int = -1, out: np.ndarray | None = None) -> np.ndarray:
    """Return x - logsumexp(x) along axis (written into `out` when given): log-probabilities.

    The one log-sum-exp of graphc (softmax, log_softmax and cross_entropy use it).
    Computed as (x - max) - log(sum(exp(x - max))): exp never overflows, and the
    shift by the maximum is exact, so float32 logits of 1e4 keep their precision
    (x - logsumexp(x) would round logsumexp to 1e4's ulp, ~1e-3, first).
    """
    out = np.subtract(x, np.max(x, axis=axis, keepdims=True), out=out)
    return np.subtract(out, np.log(np.sum(np.exp(out), axis=axis, keepdims=True)), out=out)


# ---- memory: keep freed arrays in the heap ------------------------------------------

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def retain_freed_memory(mmap_threshold: int = 64 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Ask glibc to serve arrays up to `mmap_threshold` bytes from the heap and to keep up to
    `trim_threshold` bytes of freed heap; return True when it applied.

    Why: a training step allocates the same megabyte-sized gradients and temporaries every
    step and frees them at its end. By default glibc hands such blocks back to the OS and
    every step pays ~2 microseconds per 4 KiB page to fault them in again (in this VM): LeNet-5
    took ~2,000 page faults per step at batch 100, about 4 ms of an 18 ms step; with the heap
    kept, none. The cost is that up to `trim_threshold` bytes of freed memory stay with the
    process. GRAPHC_MALLOC=default leaves glibc's settings alone. A no-op off glibc.
    Not called at import: the commands that train or bench call it (an API user decides).
    """
    if os.environ.get("GRAPHC_MALLOC", "") == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))
                    and libc.mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))
    except (OSError, AttributeError):
        return False



# ---- elementwise helpers -------------------------------------------------------------------

_ROW = 8192
_ZERO_ROWS: dict = {}


def maximum_zero(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = max(x, 0) for contiguous arrays (out may be x); return out.

    NumPy's SIMD maximum loop runs only when both operands are arrays: against the scalar
    0 it takes 0.83 ms on 1.7M float32, against rows of a cached zero row 0.30 ms.
    """
    xf, of = x.reshape(-1), out.reshape(-1)
    key = x.dtype
    zero = _ZERO_ROWS.get(key)
    if zero is None:
        zero = _ZERO_ROWS[key] = np.zeros(_ROW, x.dtype)

    whole = xf.size // _ROW * _ROW
    if whole:
        np.maximum(xf[:whole].reshape(-1, _ROW), zero, out=of[:whole].reshape(-1, _ROW))
    if xf.size > whole:
        np.maximum(xf[whole:], zero[:xf.size - whole], out=of[whole:])
    return out
