"""Tensor types: per-sample shapes, the implicit batch dimension, broadcasting.

Input: shapes written in `.nn` programs. Output: `TensorType` records that the
shape rules produce and every later stage reads. A shape is *per sample*: a
batched tensor with shape [784] is an array of shape (N, 784) at run time;
parameters and constants are not batched.
"""
from __future__ import annotations

from dataclasses import dataclass

FLOAT = "float"
CLASS = "class"
MAX_ELEMENTS = 2 ** 40   # elements one tensor may hold: a limit, so a typo cannot ask for exabytes
# Axes per sample: NumPy arrays have at most 64, and the batch axis and kernels' broadcast views add some.
MAX_RANK = 32


class ShapeError(Exception):
    """Raised by a shape rule: the message, an optional help line, and which
    argument (input index or attribute name) the caret should point at."""

    def __init__(self, message: str, help: str | None = None, arg: int | str | None = None):
        super().__init__(message)
        self.message = message
        self.help = help
        self.arg = arg


@dataclass(frozen=True)
class TensorType:
    """The static type of a tensor: per-sample shape, kind and batching.

    kind is FLOAT for real-valued tensors and CLASS for integer class indices
    in [0, classes); a CLASS tensor has per-sample shape [].
    """

    shape: tuple[int, ...]
    kind: str = FLOAT
    batched: bool = True
    classes: int | None = None

    @property
    def rank(self) -> int:
        """Number of per-sample dimensions."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of elements per sample (or in total, when not batched)."""
        return num_elements(self.shape)

    def runtime_shape(self, batch: int) -> tuple[int, ...]:
        """Return the array shape at run time for a given batch size."""
        return (batch, *self.shape) if self.batched else self.shape

    def with_shape(self, shape: tuple[int, ...]) -> "TensorType":
        """Return a float tensor type with the same batching and a new shape."""
        return TensorType(tuple(shape), FLOAT, self.batched)

    def __str__(self) -> str:
        if self.kind == CLASS:
            return f"class[{self.classes}]"
        return format_shape(self.shape)


def num_elements(shape) -> int:
    """Return the number of elements of a shape (1 for a scalar), as an exact Python int."""
    n = 1
    for d in shape:
        n *= d
    return n


def format_shape(shape: tuple[int, ...]) -> str:
    """Return a shape written as in `.nn` source: `[1, 28, 28]`."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


def broadcast_shapes(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """Return NumPy's broadcast of two shapes; raise ShapeError if they do not broadcast."""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        da = a[-i] if i <= len(a) else 1
        db = b[-i] if i <= len(b) else 1
        if da != db and da != 1 and db != 1:
            raise ShapeError(
                f"shapes {format_shape(a)} and {format_shape(b)} do not broadcast",
                help=f"dimension -{i} is {da} on the left and {db} on the right; "
                     "sizes must be equal or one of them 1")
        out.append(max(da, db) if min(da, db) != 0 else 0)
    return tuple(reversed(out))


def float_inputs(in_types: list[TensorType], *indices: int) -> None:
    """Raise ShapeError if any of the given inputs holds class indices instead of floats."""
    for i in indices:
        if in_types[i].kind == CLASS:
            raise ShapeError("expects a float tensor, got class indices "
                             f"({in_types[i]})", help="class labels can only feed a loss", arg=i)
