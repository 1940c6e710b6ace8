"""Numerical kernels shared by several ops: the one conv/pool size formula,
broadcast alignment and its undoing, log-sum-exp, im2col and col2im.

Input: NumPy arrays and planned shapes. Output: NumPy arrays. Nothing here
knows about graphs or the language.
"""
from __future__ import annotations

import numpy as np

from ..types import ShapeError, TensorType


def conv_out_size(size: int, kernel: int, stride: int, pad: int, *, what: str = "output height") -> int:
    """Return (size + 2*pad - kernel) / stride + 1, the one conv/pool output size formula.

    Raises ShapeError (with the formula filled in) when it is not a whole number >= 1.
    """
    span = size + 2 * pad - kernel
    if span < 0:
        raise ShapeError(
            f"{what} would be less than 1: the kernel ({kernel}) is larger than the padded input ({size + 2 * pad})",
            help=f"({size} + 2*{pad} - {kernel}) / {stride} + 1 = {span / stride + 1:g}; "
                 "use a smaller kernel or more padding")
    if span % stride:
        value = span / stride + 1
        raise ShapeError(
            f"{what} is not a whole number",
            help=f"({size} + 2*{pad} - {kernel}) / {stride} + 1 = {value:g}; "
                 f"choose pad and stride so that stride divides {span}")
    return span // stride + 1


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
    return np.ascontiguousarray(unbroadcast(grad, align(x, t, out_rank).shape).reshape(x.shape))


def logsumexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Return log(sum(exp(x))) along axis with keepdims, stable for large |x|."""
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
