"""Binding: a dataset's named arrays -> the model's inputs and labels, per split.

Input: the model's graph (its `input`s and `label`s, by name) and the train
configuration (`data`, `--data DIR`, the `.nn` file's folder). Output: a
`Bound` — for the training split and the optional test split, one raw array per
input and label name — or a GraphcError that names what did not bind and
lists what the dataset offers. Fitting the arrays to the declared types is
training/batching.py's job.

How names bind (the README's "Data" section says the same):
- `.npz`: the key `NAME_train` (and `NAME_test`) holds the split of input or
  label NAME; `train/NAME` and `test/NAME` are accepted too, and a plain `NAME`
  is training data without a test split. When no key names any input or
  label, the positional scheme of earlier versions applies to a model with
  one input and at most one label: x_train, y_train[, x_test, y_test] (or x, y).
- `.csv` (every row is training data): a header row names the columns; input
  or label NAME of k elements takes the columns NAME_0 .. NAME_{k-1} (row-major
  order of its declared shape), or the single column NAME when k is 1. Without
  a header naming any input or label, the last column is the label as before.
- built-in datasets (xor, spiral, digits, mnist, fashion_mnist) offer one
  sample array and one class array: they bind to a model with one input and
  at most one label (a label-less model, an autoencoder, reads the samples only).
- `mnist_halves`: a built-in dataset of named arrays, `top` and `bottom` (the
  two halves of each MNIST image) and `digit`, for two-input models.
- `data = none`: nothing is read. The inputs and labels the loss does not read
  are fed zeros for one sample, so each epoch is exactly one full-batch step
  (and no validation split is held out).
- `--data DIR` whose folder holds the four MNIST-layout IDX files reads them
  whatever the folder is called; the dataset's name says which folder it was.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np

from graphc.diagnostics import GraphcError, did_you_mean
from graphc.tensor_type import CLASS
from graphc.training.data import (
    Dataset,
    csv_dataset,
    load_dataset,
    npz_dataset,
    read_csv_table,
    read_npz,
    resolve_path,
    standardise,
)
from graphc.training.idx import ALIASES, IDX_SOURCES, load_idx
from graphc.training.idx_files import holds_idx

NO_DATA = "none"
SPLITS = ("train", "test")


@dataclass
class Bound:
    """A dataset bound to a model: name -> raw array (N, ...) of its training and (optional) test split."""

    name: str
    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray] | None


def bind(graph, cfg) -> Bound:
    """Return the configured dataset bound to the model's inputs and labels by name."""
    spec = cfg.data.strip()
    if spec.lower() == NO_DATA:
        return bind_none(graph)
    if spec.lower() in NAMED_DATASETS:
        return _bind_named(graph, NAMED_DATASETS[spec.lower()](cfg), spec.lower(), cfg,
                           fix="rename `{name}` after an array it offers, or bind your own data (an .npz or CSV)")
    if cfg.data_dir and holds_idx(Path(cfg.data_dir)):
        return _bind_idx_dir(graph, spec, Path(cfg.data_dir), cfg)
    lowered = spec.lower()
    if lowered.endswith(".npz"):
        return _bind_npz(graph, resolve_path(spec, cfg.data_dir, cfg.data_root), spec, cfg)
    if lowered.endswith(".csv"):
        return _bind_csv(graph, resolve_path(spec, cfg.data_dir, cfg.data_root), spec, cfg)
    return bind_pair(graph, load_dataset(spec, data_dir=cfg.data_dir, seed=cfg.seed, scale=cfg.scale))


def bind_pair(graph, ds) -> Bound:
    """Return a (samples, classes) Dataset bound to a model with one input and at most one label."""
    inputs, labels = list(graph.inputs), list(graph.labels)
    if len(inputs) != 1 or len(labels) > 1:
        raise GraphcError(f"dataset `{ds.name}` offers one sample array and one label array, but `{graph.model}` has "
                          f"{_names('input', inputs)} and {_names('label', labels)}",
                          span=graph.train_span,
                          help="bind several inputs or labels by name: an .npz with NAME_train/NAME_test arrays "
                               "or a CSV whose header names the columns (see README, Data)")
    train = {inputs[0]: ds.x_train, **({labels[0]: ds.y_train} if labels else {})}
    test = None
    if ds.x_test is not None:
        test = {inputs[0]: ds.x_test, **({labels[0]: ds.y_test} if labels else {})}
    return Bound(ds.name, train, test)


def bind_none(graph) -> Bound:
    """Return `data = none`: one sample of zeros for each input and label, which the loss must not read."""
    if graph.loss is None:
        raise GraphcError(f"`data = none` trains a loss over parameters only, but `{graph.model}` has no loss",
                          span=graph.train_span, help="declare `loss = ...`")
    read = [n for n in nx.ancestors(graph.nx, graph.loss) if graph.node(n).kind in ("input", "label")]
    if read:
        names = [n for n in [*graph.inputs, *graph.labels] if n in read]
        raise GraphcError(f"`data = none`, but the loss reads {', '.join(f'`{n}`' for n in names)}",
                          span=graph.train_span,
                          help="name a dataset that offers them (e.g. an .npz with NAME_train arrays), "
                               "or make the loss depend on parameters only")
    zeros = {}
    for name in [*graph.inputs, *graph.labels]:
        t = graph.node(name).declared
        zeros[name] = np.zeros(1, np.int64) if t.kind == CLASS else np.zeros((1, *t.shape), np.float32)
    return Bound(NO_DATA, zeros, None)


# ---------------------------------------------------------------- .npz

def _npz_splits(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Return {"train": {name: array}, "test": {...}} read from the keys NAME_train, train/NAME or NAME."""
    splits: dict[str, dict[str, np.ndarray]] = {"train": {}, "test": {}}
    for key, value in arrays.items():
        for split in SPLITS:
            if key.endswith("_" + split) and len(key) > len(split) + 1:
                splits[split].setdefault(key[:-len(split) - 1], value)
                break
            if key.startswith(split + "/") and len(key) > len(split) + 1:
                splits[split].setdefault(key[len(split) + 1:], value)
                break
        else:
            splits["train"].setdefault(key, value)
    return splits


def _bind_npz(graph, path: Path, spec: str, cfg) -> Bound:
    """Return an .npz bound by name (or by position, when no key names an input or label); messages
    and the run's records name it `spec`, as the user wrote it."""
    arrays = read_npz(path)
    path = Path(spec)
    splits = _npz_splits(arrays)
    wanted = [*graph.inputs, *graph.labels]
    if not any(n in splits["train"] or n in splits["test"] for n in wanted) and _positional(graph):
        x_key = next((k for k in ("x_train", "x") if k in arrays), None)
        if not graph.labels and x_key:   # a label-less model reads x (and x_test) alone
            test = {graph.inputs[0]: arrays["x_test"]} if "x_test" in arrays else None
            bound = Bound(str(path), _checked(graph, {graph.inputs[0]: arrays[x_key]}, str(path), "training"),
                          test and _checked(graph, test, str(path), "test"))
            return _standardised(graph, bound, cfg)
        return bind_pair(graph, _scaled(npz_dataset(path, arrays), cfg))
    return _bind_named(graph, splits, str(path), cfg, fix="name the data after the model's inputs and labels: "
                                                          "np.savez(path, {name}_train=..., {name}_test=...)")


def _bind_named(graph, splits: dict[str, dict[str, np.ndarray]], source: str, cfg, *, fix: str) -> Bound:
    """Return the arrays of `splits` named after the model's inputs and labels (`fix`, with {name}, says
    how to offer a missing one)."""
    wanted = [*graph.inputs, *graph.labels]
    offers = sorted(set(splits["train"]) | set(splits["test"]))
    for name in wanted:
        if name not in splits["train"]:
            raise _unbound(graph, name, source, [_offer(n, splits) for n in offers], fix.format(name=name))
    has_test = [n for n in wanted if n in splits["test"]]
    if has_test and len(has_test) != len(wanted):
        missing = [n for n in wanted if n not in splits["test"]]
        raise GraphcError(f"{source} has a test split for {', '.join(has_test)} but not for {', '.join(missing)}",
                          span=graph.train_span, help=f"add {', '.join(m + '_test' for m in missing)}, or drop "
                                                      f"the other _test arrays")
    train = _checked(graph, {n: splits["train"][n] for n in wanted}, source, "training")
    test = _checked(graph, {n: splits["test"][n] for n in wanted}, source, "test") if has_test else None
    return _standardised(graph, Bound(source, train, test), cfg)


# ---------------------------------------------------------------- built-in named datasets

def _mnist_halves(cfg) -> dict[str, dict[str, np.ndarray]]:
    """Return MNIST as three named arrays per split: `top` and `bottom` (rows 0-13 and 14-27 of each
    image, 392 pixels each) and `digit` (the class): a built-in dataset for two-input models."""
    x_tr, y_tr, x_te, y_te = load_idx("mnist", cfg.data_dir, download=True)
    splits = {}
    for split, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        flat = x.reshape(len(x), -1)
        half = flat.shape[1] // 2
        splits[split] = {"top": flat[:, :half], "bottom": flat[:, half:], "digit": y}
    return splits


# name -> the function returning its named arrays per split
NAMED_DATASETS = {"mnist_halves": _mnist_halves}


def _offer(name: str, splits) -> str:
    """Return `name (train, test)`: one entry of what a dataset offers."""
    return f"{name} ({', '.join(s for s in SPLITS if name in splits[s])})"


# ---------------------------------------------------------------- .csv

def _bind_csv(graph, path: Path, spec: str, cfg) -> Bound:
    """Return a CSV bound by its header (or by position: features..., label), named `spec`."""
    header, table = read_csv_table(path)
    path = Path(spec)
    wanted = [*graph.inputs, *graph.labels]
    columns = {c: i for i, c in enumerate(header or [])}
    stems = {c.rsplit("_", 1)[0] for c in columns if c.rsplit("_", 1)[-1].isdigit()}
    if not any(n in columns or n in stems for n in wanted) and _positional(graph):
        if not graph.labels:   # a label-less model reads every column
            return _standardised(graph, Bound(str(path), {graph.inputs[0]: table}, None), cfg)
        return bind_pair(graph, _scaled(csv_dataset(path, table), cfg))
    offers = sorted(stems | {c for c in columns if c.rsplit("_", 1)[0] not in stems})
    train = {}
    for name in wanted:
        t = graph.node(name).declared
        k = 1 if t.kind == CLASS else max(t.size, 1)
        names = [name] if k == 1 and name in columns else [f"{name}_{i}" for i in range(k)]
        absent = [c for c in names if c not in columns]
        if absent and not any(c in columns for c in names):
            raise _unbound(graph, name, str(path), offers or ["no header row"],
                           f"name the columns after the model's inputs and labels: {_columns_hint(name, k)}")
        if absent:
            raise GraphcError(f"{path}: `{name}` has {k} elements per sample but the header lacks "
                              f"{', '.join(absent[:3])}{' ...' if len(absent) > 3 else ''}",
                              span=graph.train_span, help=f"name its columns {_columns_hint(name, k)}")
        values = table[:, [columns[c] for c in names]]
        train[name] = values[:, 0] if t.kind == CLASS else values
    bound = Bound(str(path), _checked(graph, train, str(path), "training"), None)
    return _standardised(graph, bound, cfg)


def _columns_hint(name: str, k: int) -> str:
    return f"`{name}`" if k == 1 else f"`{name}_0` .. `{name}_{k - 1}`"


# ---------------------------------------------------------------- IDX folder

def _bind_idx_dir(graph, spec: str, directory: Path, cfg) -> Bound:
    """Return the IDX files of `directory` (whatever it is called) bound like MNIST."""
    name = ALIASES.get(spec.lower(), spec.lower())
    name = name if name in IDX_SOURCES else "mnist-layout"
    # idx.py passes over a folder named after the *other* dataset; here the user named the folder itself.
    looked_up = "fashion-mnist" if directory.name.lower() in ("fashion-mnist", "fashion_mnist") else "mnist"
    x_tr, y_tr, x_te, y_te = load_idx(looked_up, str(directory), download=False)
    ds = Dataset(f"{name} (IDX files in {directory})", x_tr, y_tr, x_te, y_te, 10)
    return bind_pair(graph, _scaled(ds, cfg))


# ---------------------------------------------------------------- shared

def _positional(graph) -> bool:
    """Return True when the model can take a positional (samples, labels) dataset."""
    return len(graph.inputs) == 1 and len(graph.labels) <= 1


def _names(kind: str, names: list[str]) -> str:
    if not names:
        return f"no {kind}"
    return f"{len(names)} {kind}{'s' if len(names) != 1 else ''} ({', '.join(names)})"


def _unbound(graph, name: str, source: str, offers: list[str], fix: str) -> GraphcError:
    """Return the diagnostic of a model name that binds nothing in a dataset, listing what it offers."""
    role = "input" if name in graph.inputs else "label"
    plain = [o.split(" ")[0] for o in offers]
    close = did_you_mean(name, plain)
    return GraphcError(f"{role} `{name}` binds nothing in {source}; it offers: {', '.join(offers) or 'nothing'}",
                       span=graph.train_span,
                       help=(f"{close} " if close else "") + fix)


def _checked(graph, split: dict[str, np.ndarray], source: str, part: str) -> dict[str, np.ndarray]:
    """Return one split's arrays checked: numeric, one shared non-zero sample count, finite inputs."""
    counts = {}
    for name, a in split.items():
        if a.dtype.kind not in "biuf" or a.ndim == 0:
            raise GraphcError(f"{source}: {part} array `{name}` is {a.dtype} of shape {list(a.shape)}; "
                              f"it needs numbers with one row per sample", help="convert it to numbers first")
        if a.dtype.kind == "f" and name in graph.inputs and not np.all(np.isfinite(a)):
            raise GraphcError(f"{source}: {part} array `{name}` contains NaN or infinite values",
                              help="remove or impute missing values first")
        counts[name] = len(a)
    if len(set(counts.values())) > 1 or 0 in counts.values():
        listed = ", ".join(f"{n} {c}" for n, c in counts.items())
        raise GraphcError(f"{source}: the {part} arrays need the same non-zero number of samples; they have "
                          f"{listed}", help="the first axis of every array counts samples")
    return split


def _scaled(ds, cfg):
    """Return a positional dataset standardised when the config asks for it."""
    return standardise(ds) if cfg.scale == "standard" else ds


def _standardised(graph, bound: Bound, cfg) -> Bound:
    """Return `bound` with every input standardised by its training statistics when `scale = standard`."""
    if cfg.scale != "standard":
        return bound
    for name in graph.inputs:
        x = bound.train[name].astype(np.float64)
        mean, std = x.mean(axis=0), x.std(axis=0)
        std[std == 0] = 1.0   # a constant feature stays 0 instead of dividing by zero
        for split in (bound.train, bound.test or {}):
            split[name] = ((split[name] - mean) / std).astype(np.float32)
    return bound

