"""Batching: a Dataset fitted to a model, split into train/validation, cut into minibatches.

Input: the arrays of a `Dataset` (training/data.py) and the model's declared
input and label types. Output: `TrainData` — arrays reshaped to the input's
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
from graphc.training.config import TrainConfig
from graphc.training.data import load_dataset, split_validation


@dataclass
class TrainData:
    """The dataset fitted to the model's input and label: train/validation/test arrays (test may be None)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    limit: int | None = None   # --limit: part of the resume fingerprint (the numbers depend on it)

    @classmethod
    def load(cls, program, cfg: TrainConfig, limit: int | None = None, limit_test: int | None = None) -> "TrainData":
        """Return the configured dataset, reshaped and checked against the model's input and label.

        `limit` N keeps the first N training samples (the validation split is
        held out from those) and the first N test samples; `limit_test` M, when
        given, keeps the first M test samples instead.
        """
        cls.check_model(program)
        ds = load_dataset(cfg.data, data_dir=cfg.data_dir, seed=cfg.seed, scale=cfg.scale)
        return cls.fitted(program, cfg, ds, limit=limit, limit_test=limit_test)

    @staticmethod
    def check_model(program) -> None:
        """Return None when the model can train from a dataset: exactly one input and one label."""
        graph = program.graph
        if len(graph.inputs) != 1 or len(graph.labels) != 1:
            raise GraphcError(f"training from a dataset needs exactly one input and one label; `{graph.model}` "
                              f"has {len(graph.inputs)} inputs and {len(graph.labels)} labels",
                              span=graph.train_span, help="feed other models through the Python API")

    @classmethod
    def fitted(cls, program, cfg: TrainConfig, ds, *, limit: int | None = None,
               limit_test: int | None = None) -> "TrainData":
        """Return a loaded Dataset fitted to the model, limited (see `load`) and split for validation."""
        cls.check_model(program)
        graph = program.graph
        x_name, y_name = graph.inputs[0], graph.labels[0]
        x_type, y_type = graph.node(x_name).declared, graph.node(y_name).declared

        def fit(x, y):
            x = fit_to_input(x, x_type.shape, dataset=ds.name, input_name=x_name).astype(program.dtype, copy=False)
            if y_type.kind == CLASS:
                y = check_labels(y, num_classes=y_type.classes, target_shape=None, dataset=ds.name, label_name=y_name)
            else:
                y = check_labels(y, num_classes=None, target_shape=y_type.shape, dataset=ds.name,
                                 label_name=y_name).astype(program.dtype, copy=False)
            return x, y

        x_train, y_train = fit(ds.x_train[:limit], ds.y_train[:limit])
        limit_test = limit if limit_test is None else limit_test
        x_test, y_test = fit(ds.x_test[:limit_test], ds.y_test[:limit_test]) if ds.x_test is not None else (None, None)
        # Held out from the limited samples: --limit bounds validation too, and the split stays the same fraction.
        x_train, y_train, x_val, y_val = split_validation(x_train, y_train, cfg.validation, cfg.seed)
        return cls(ds.name, x_train, y_train, x_val, y_val, x_test, y_test, limit=limit)


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
