"""Batching: a Dataset fitted to a model, split into train/validation, cut into minibatches.

Input: the arrays a dataset binds to the model's inputs and labels by name
(training/binding.py) and their declared types. Output: `TrainData` — one
feed per input and label, per split (train, validation, test) — arrays reshaped to the input's
sample shape, labels checked (class indices in range, or float targets of the
declared shape, one-hot encoded when classes feed a [K] target), a
deterministic validation hold-out — and the minibatch iterator of the loop.
Every mismatch between data and model is a GraphcError naming both.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from graphc.diagnostics import GraphcError
from graphc.tensor_type import CLASS
from graphc.training.binding import NO_DATA, Bound, bind, bind_pair
from graphc.training.config import TrainConfig
from graphc.training.data import split_validation


@dataclass
class TrainData:
    """The dataset fitted to the model's inputs and labels: train/validation/test feeds (test may be None).

    Each split is a dict name -> array (N, ...) with one entry per input and
    label the dataset binds (training/binding.py); `x_*`/`y_*` are the first
    input's and the first label's arrays, for models with one of each.
    """

    name: str
    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    test: dict[str, np.ndarray] | None
    limit: int | None = None   # --limit: part of the resume fingerprint (the numbers depend on it)
    inputs: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()

    @classmethod
    def load(cls, program, cfg: TrainConfig, limit: int | None = None, limit_test: int | None = None) -> "TrainData":
        """Return the configured dataset, bound by name and checked against the model's inputs and labels.

        `limit` N keeps the first N training samples (the validation split is
        held out from those) and the first N test samples; `limit_test` M, when
        given, keeps the first M test samples instead.
        """
        return cls.from_bound(program, cfg, bind(program.graph, cfg), limit=limit, limit_test=limit_test)

    @staticmethod
    def check_model(program) -> None:
        """Return None when the model can train from a (samples, labels) pair: exactly one input and one label."""
        graph = program.graph
        if len(graph.inputs) != 1 or len(graph.labels) != 1:
            raise GraphcError(f"training from a dataset needs exactly one input and one label; `{graph.model}` "
                              f"has {len(graph.inputs)} inputs and {len(graph.labels)} labels",
                              span=graph.train_span, help="feed other models through the Python API")

    @classmethod
    def fitted(cls, program, cfg: TrainConfig, ds, *, limit: int | None = None,
               limit_test: int | None = None) -> "TrainData":
        """Return a loaded (samples, labels) Dataset fitted to the model, limited (see `load`) and split."""
        return cls.from_bound(program, cfg, bind_pair(program.graph, ds), limit=limit, limit_test=limit_test)

    @classmethod
    def from_bound(cls, program, cfg: TrainConfig, bound: Bound, *, limit: int | None = None,
                   limit_test: int | None = None) -> "TrainData":
        """Return bound arrays fitted to the declared types, limited (see `load`) and split for validation."""
        graph = program.graph

        def fit(split: dict) -> dict:
            fitted = {}
            for name, a in split.items():
                t = graph.node(name).declared
                if name in graph.inputs:
                    a = fit_to_input(a, t.shape, dataset=bound.name, input_name=name).astype(program.dtype,
                                                                                             copy=False)
                elif t.kind == CLASS:
                    a = check_labels(a, num_classes=t.classes, target_shape=None, dataset=bound.name,
                                     label_name=name)
                else:
                    a = check_labels(a, num_classes=None, target_shape=t.shape, dataset=bound.name,
                                     label_name=name).astype(program.dtype, copy=False)
                fitted[name] = a
            return fitted

        train = fit({name: a[:limit] for name, a in bound.train.items()})
        limit_test = limit if limit_test is None else limit_test
        test = fit({name: a[:limit_test] for name, a in bound.test.items()}) if bound.test is not None else None
        # Held out from the limited samples: --limit bounds validation too, and the split stays the same fraction.
        # `data = none` has one zero sample, the same every step: nothing to validate on.
        train, val = split_feeds(train, 0.0 if bound.name == NO_DATA else cfg.validation, cfg.seed)
        return cls(bound.name, train, val, test, limit=limit, inputs=tuple(graph.inputs), labels=tuple(graph.labels))

    def size(self, split: str) -> int:
        """Return the number of samples of a split (`train`, `val` or `test`; 0 when absent)."""
        feeds = getattr(self, split)
        return len(next(iter(feeds.values()))) if feeds else 0

    def _first(self, split: str, names: tuple[str, ...]):
        feeds = getattr(self, split)
        if feeds is None or not names or names[0] not in feeds:
            return None
        return feeds[names[0]]

    x_train = property(lambda self: self._first("train", self.inputs), doc="The first input's training array.")
    y_train = property(lambda self: self._first("train", self.labels), doc="The first label's training array.")
    x_val = property(lambda self: self._first("val", self.inputs), doc="The first input's validation array.")
    y_val = property(lambda self: self._first("val", self.labels), doc="The first label's validation array.")
    x_test = property(lambda self: self._first("test", self.inputs), doc="The first input's test array.")
    y_test = property(lambda self: self._first("test", self.labels), doc="The first label's test array.")


def split_feeds(feeds: dict[str, np.ndarray], fraction: float, seed: int) -> tuple[dict, dict]:
    """Return (train, validation) feeds: the hold-out `split_validation` makes, applied to every array alike."""
    if not feeds:
        return feeds, {}
    names = list(feeds)
    n = len(feeds[names[0]])
    # split_validation picks the rows; an index array carries them to every named array
    train_rows, _, val_rows, _ = split_validation(np.arange(n), np.arange(n), fraction, seed)
    if len(val_rows) == 0:
        return feeds, {name: a[:0] for name, a in feeds.items()}
    return {name: a[train_rows] for name, a in feeds.items()}, {name: a[val_rows] for name, a in feeds.items()}


def _fmt(shape) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def _shape_hint(n: int) -> str:
    """Return example declarations for samples of `n` elements."""
    side = math.isqrt(n)
    return f"{_fmt([n])} or {_fmt([1, side, side])}" if side * side == n and side > 1 else _fmt([n])


def fit_to_input(x: np.ndarray, sample_shape: tuple[int, ...], *, dataset: str, input_name: str) -> np.ndarray:
    """Return `x` reshaped to (N, *sample_shape); the per-sample element counts must agree."""
    have = math.prod(x.shape[1:])
    if x.ndim == 0 or have != math.prod(sample_shape):
        raise GraphcError(f"dataset `{dataset}` gives samples of shape {_fmt(x.shape[1:])}, "
                          f"but input `{input_name}` is declared {_fmt(sample_shape)}",
                          help=f"declare `{input_name}` with {have} elements per sample, e.g. {_shape_hint(have)}")
    return x.reshape((len(x), *sample_shape))


def check_labels(y: np.ndarray, *, num_classes: int | None, target_shape: tuple | None, dataset: str,
                 label_name: str) -> np.ndarray:
    """Return labels fitted to the model's label declaration.

    With `num_classes` K: returns int64 class indices (N,), all in [0, K).
    With `target_shape`: returns float32 (N, *target_shape), reshaping by
    element count; class indices fed to a 1-D float target [K] are one-hot
    encoded (so class data can train e.g. a mean-squared-error output). When
    the element counts already match (indices for a [1] target) the values are
    used as numbers, not one-hot encoded.
    """
    if (num_classes is None) == (target_shape is None):
        raise ValueError("check_labels needs exactly one of num_classes and target_shape")
    y = np.asarray(y)
    per = math.prod(y.shape[1:])
    whole = y.dtype.kind in "biu" or (y.dtype.kind == "f" and bool(np.all(y == np.round(y))))
    if num_classes is not None:
        if y.ndim == 0 or per != 1 or not whole:
            kind = "float" if y.dtype.kind == "f" else "integer"
            raise GraphcError(f"dataset `{dataset}` gives {kind} targets of shape {_fmt(y.shape[1:])}, "
                              f"but label `{label_name}` is a class label over {num_classes} classes",
                              help=f"declare `{label_name}` as a float target {_fmt(y.shape[1:])}, "
                                   f"or use a dataset with integer class labels")
        return _check_range(y.reshape(len(y)).astype(np.int64), num_classes, dataset, label_name)
    shape = tuple(int(d) for d in target_shape)
    if y.ndim >= 1 and per == math.prod(shape):
        return y.reshape((len(y), *shape)).astype(np.float32)
    if y.ndim == 1 and y.dtype.kind in "biu" and len(shape) == 1:
        indices = _check_range(y.astype(np.int64), shape[0], dataset, label_name)
        return np.eye(shape[0], dtype=np.float32)[indices]
    raise GraphcError(f"dataset `{dataset}` gives targets of shape {_fmt(y.shape[1:])}, "
                      f"but label `{label_name}` is declared {_fmt(shape)}",
                      help=f"declare `{label_name}` with {per} elements per sample, e.g. {_shape_hint(per)}")


def _check_range(y: np.ndarray, k: int, dataset: str, label_name: str) -> np.ndarray:
    """Return `y` unchanged if every class index is in [0, k), else raise."""
    if y.size and (y.min() < 0 or y.max() >= k):
        lo, hi = int(y.min()), int(y.max())
        raise GraphcError(f"dataset `{dataset}` has class labels {lo}..{hi} ({hi + 1} classes), "
                          f"but label `{label_name}` is declared with {k} classes (0..{k - 1})",
                          help=f"declare `{label_name}` with at least {hi + 1} classes" if lo >= 0
                          else "class labels must be non-negative")
    return y


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool, rng: np.random.Generator,
            drop_last: bool = False):
    """Return an iterator of (xb, yb) minibatches covering the data once.

    With `shuffle`, one permutation is drawn from `rng` at call time; the last
    short batch is kept unless `drop_last`.
    """
    if batch_size < 1:
        raise GraphcError(f"batch size must be at least 1, got {batch_size}",
                          help="use a positive batch size, e.g. 32")
    if len(x) != len(y):
        raise GraphcError(f"{len(x)} inputs but {len(y)} labels", help="inputs and labels must pair up one to one")
    n = len(x)
    order = rng.permutation(n) if shuffle else None
    stop = n - n % batch_size if drop_last else n

    def generate():
        for start in range(0, stop, batch_size):
            # without shuffling, slices are views: no copy per batch
            idx = slice(start, start + batch_size) if order is None else order[start:start + batch_size]
            yield x[idx], y[idx]

    return generate()


def feed_batches(feeds: dict[str, np.ndarray], batch_size: int, *, shuffle: bool, rng: np.random.Generator,
                 drop_last: bool = False):
    """Return an iterator of minibatch feeds (name -> rows) covering `feeds` once.

    The same rows of every array go together; the permutation drawn from
    `rng` is the one `batches` draws, so a run's order does not depend on
    how many arrays the model reads.
    """
    if batch_size < 1:
        raise GraphcError(f"batch size must be at least 1, got {batch_size}",
                          help="use a positive batch size, e.g. 32")
    counts = {len(a) for a in feeds.values()}
    if len(counts) > 1:
        raise GraphcError(f"the arrays have different numbers of samples: {sorted(counts)}",
                          help="every input and label needs one row per sample")
    # No arrays at all: a model without inputs (`data = none`) takes one step per pass, on an empty batch.
    n = counts.pop() if counts else 1
    order = rng.permutation(n) if shuffle else None
    stop = n - n % batch_size if drop_last else n

    def generate():
        for start in range(0, stop, batch_size):
            # without shuffling, slices are views: no copy per batch
            idx = slice(start, start + batch_size) if order is None else order[start:start + batch_size]
            yield {name: a[idx] for name, a in feeds.items()}

    return generate()
