"""Datasets: where training data comes from.

Input: a dataset spec (`xor`, `spiral`, `digits`, `mnist`, `fashion-mnist`, or
a path to a `.npz` or `.csv` file) and where to look for downloaded files.
Output: a `Dataset` of float32 inputs with int64 class labels (or float32
targets), and the readers of `.npz`/`.csv` files whose arrays bind to a
model's inputs and labels by name (training/binding.py). Fitting them to a
model, validation splits and minibatches are in training/batching.py.

MNIST-style IDX files are found, downloaded and read by training/idx.py.
Every problem with the user's data or files is raised as `GraphcError`.
"""
from __future__ import annotations

import csv
import io
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphc.diagnostics import GraphcError, did_you_mean
from graphc.training.bounded import check_npz_sizes
from graphc.training.idx import ALIASES, IDX_SOURCES, load_idx

KNOWN_DATASETS = ("xor", "spiral", "digits", "mnist", "fashion-mnist")
@dataclass
class Dataset:
    """Training (and optional test) arrays of one dataset.

    `x_*` are float32 of shape (N, *sample_shape). `y_*` are int64 class
    indices of shape (N,) when `num_classes` is set, else float32 targets of
    shape (N, *target_shape).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    num_classes: int | None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Return the shape of one input sample (without the batch axis)."""
        return tuple(self.x_train.shape[1:])


def load_dataset(spec: str, *, data_dir: str | None = None, seed: int = 0, scale: str = "unit",
                 download: bool = True) -> Dataset:
    """Return the dataset named by `spec` (a known name or a `.npz`/`.csv` path).

    `seed` fixes the generated `spiral` points and the `spiral`/`digits` 80/20
    train/test split. `scale="unit"` maps image pixels to [0, 1] and leaves
    other data untouched; `"standard"` then also standardises every feature
    with the training mean and std. `download=False` forbids network access.
    """
    if scale not in ("unit", "standard"):
        raise GraphcError(f"unknown scale `{scale}`", help="use `unit` (the default) or `standard`")
    name = spec.strip().lower()
    name = ALIASES.get(name, name)
    if name == "xor":
        x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
        y = np.array([0, 1, 1, 0], np.int64)
        ds = Dataset("xor", x, y, x.copy(), y.copy(), 2)
    elif name == "spiral":
        ds = _spiral(seed)
    elif name == "digits":
        ds = _digits(seed)
    elif name in IDX_SOURCES:
        ds = Dataset(name, *load_idx(name, data_dir, download), 10)
    elif name.endswith(".npz"):
        ds = _load_npz(resolve_path(spec, data_dir))
    elif name.endswith(".csv"):
        ds = _load_csv(resolve_path(spec, data_dir))
    else:
        suggestion = did_you_mean(name, KNOWN_DATASETS)
        hint = f"{suggestion} " if suggestion else ""
        raise GraphcError(f"unknown dataset `{spec}`",
                          help=f"{hint}known datasets: {', '.join(KNOWN_DATASETS)}, or a path to a .npz or .csv file")
    return standardise(ds) if scale == "standard" else ds


def _spiral(seed: int) -> Dataset:
    """Return the CS231n 3-class spiral (100 noisy points per arm), 20% held out as test."""
    rng = np.random.default_rng(seed)
    r = np.tile(np.linspace(0.0, 1.0, 100), 3)
    t = (4.0 * np.arange(3)[:, None] + np.linspace(0.0, 4.0, 100)).ravel() + rng.standard_normal(300) * 0.2
    x = np.stack([r * np.sin(t), r * np.cos(t)], axis=1).astype(np.float32)
    x_tr, y_tr, x_te, y_te = split_validation(x, np.repeat(np.arange(3, dtype=np.int64), 100), 0.2, seed)
    return Dataset("spiral", x_tr, y_tr, x_te, y_te, 3)


def _digits(seed: int) -> Dataset:
    """Return scikit-learn's 8x8 digits, pixels 0..16 scaled to [0, 1], 20% held out as test."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise GraphcError("dataset `digits` needs scikit-learn, which is not installed",
                          help="pip install scikit-learn") from None
    x, y = load_digits(return_X_y=True)
    x_tr, y_tr, x_te, y_te = split_validation((x / 16.0).astype(np.float32), y.astype(np.int64), 0.2, seed)
    return Dataset("digits", x_tr, y_tr, x_te, y_te, 10)


def standardise(ds: Dataset) -> Dataset:
    """Return `ds` with every feature shifted and scaled by training statistics."""
    mean = ds.x_train.mean(axis=0, dtype=np.float64)
    std = ds.x_train.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0  # constant features (MNIST's blank border) stay 0 instead of dividing by zero
    scaled = [None if x is None else ((x - mean) / std).astype(np.float32) for x in (ds.x_train, ds.x_test)]
    return Dataset(ds.name, scaled[0], ds.y_train, scaled[1], ds.y_test, ds.num_classes)


# ---------------------------------------------------------------- files

def resolve_path(spec: str, data_dir: str | None, root: str | None = None) -> Path:
    """Return the path of a data file: as given (relative to `root`, the `.nn` file's folder, when
    the path was written in a train section), else relative to `data_dir` (--data DIR)."""
    path = Path(spec).expanduser()
    if root and not path.is_absolute():
        path = Path(root) / path   # like `include`: the .nn file's folder, not the current directory
    if not path.exists() and data_dir and not Path(spec).is_absolute() and (Path(data_dir) / spec).exists():
        path = Path(data_dir) / spec
    if not path.is_file():
        where = f"{root} (the .nn file's folder)" if root else "the current directory"
        raise GraphcError(f"data file {path} does not exist" if not path.exists() else f"{path} is not a file",
                          help=f"check the path (relative paths are tried from {where}, then --data)")
    return path


def _load_npz(path: Path) -> Dataset:
    """Return a dataset from an .npz holding x_train/y_train[/x_test/y_test] or x/y."""
    return npz_dataset(path, read_npz(path))


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Return every array of an .npz archive by key (GraphcError when it is not a numeric .npz)."""
    try:
        with open(path, "rb") as f:  # our own handle: np.load leaks its file when the zip is corrupt
            if f.read(6) == b"\x93NUMPY":
                raise GraphcError(f"{path} is a single .npy array, not an .npz archive",
                                  help="save it with np.savez(path, x_train=..., y_train=...)")
            check_npz_sizes(f)   # before numpy allocates what a header claims
            archive = np.load(f, allow_pickle=False)
            if not hasattr(archive, "files"):
                raise GraphcError(f"{path} is a single .npy array, not an .npz archive",
                                  help="save it with np.savez(path, x_train=..., y_train=...)")
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, RuntimeError) as e:
        raise GraphcError(f"cannot read {path}: {e}",
                          help="write it with np.savez(path, x_train=..., y_train=...) using numeric arrays") from None
    odd = [key for key, value in arrays.items() if not isinstance(value, np.ndarray)]
    if odd:
        raise GraphcError(f"cannot read {path}: member '{odd[0]}' is not a .npy array",
                          help="write it with np.savez(path, x_train=..., y_train=...) using numeric arrays")
    return arrays


def npz_dataset(path: Path, arrays: dict[str, np.ndarray]) -> Dataset:
    """Return the dataset of an .npz's arrays in the positional scheme: x_train/y_train[/x_test/y_test] or x/y."""
    if "x_train" in arrays or "y_train" in arrays:
        keys = ("x_train", "y_train", "x_test", "y_test")
    else:
        keys = ("x", "y", "x_test", "y_test")
    missing = [k for k in keys[:2] if k not in arrays]
    if missing or (("x_test" in arrays) != ("y_test" in arrays)):
        raise GraphcError(f"{path} holds arrays {sorted(arrays)}; expected x_train and y_train (or x and y), "
                          f"and optionally x_test with y_test",
                          help="rename the arrays when calling np.savez: x_train=..., y_train=..., or after the "
                               "model's inputs and labels (NAME_train=..., NAME_test=...)")
    return _from_arrays(str(path), *(arrays.get(k) for k in keys))


def _load_csv(path: Path) -> Dataset:
    """Return a dataset from a CSV whose last column is the label (all rows are training data).

    A first row that is not all numbers is a header. A label column of
    non-negative whole numbers gives class labels; anything else gives float targets.
    """
    return csv_dataset(path, read_csv_table(path)[1])


def read_csv_table(path: Path) -> tuple[list[str] | None, np.ndarray]:
    """Return a CSV file's header (None without one) and its numbers as a 2-D float64 table."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # utf-8-sig: spreadsheets often write a BOM
    except (OSError, UnicodeDecodeError) as e:
        raise GraphcError(f"cannot read {path}: {e}", help="save the file as UTF-8 CSV") from None
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    start = first + (first < len(lines) and not all(_is_number(c) for c in next(csv.reader([lines[first]]))))
    if not any(line.strip() for line in lines[start:]):
        raise GraphcError(f"{path} has no data rows", help="one row per sample: features..., label")
    try:
        table = np.loadtxt(io.StringIO("\n".join(lines[start:])), delimiter=",", ndmin=2, quotechar='"')
    except ValueError:
        raise _csv_error(path, lines, start) from None
    header = [c.strip() for c in next(csv.reader([lines[first]]))] if start > first else None
    return header, table


def csv_dataset(path: Path, table: np.ndarray) -> Dataset:
    """Return the dataset of a CSV table in the positional scheme: features..., label."""
    if table.shape[1] < 2:
        raise GraphcError(f"{path} needs a feature column and a label column",
                          help="one row per sample: features..., label")
    x, y = table[:, :-1], table[:, -1]
    if np.all(np.isfinite(y)) and np.all(y == np.round(y)) and y.min() >= 0:
        y = y.astype(np.int64)
    return _from_arrays(str(path), x, y, None, None)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def _csv_error(path: Path, lines: list[str], start: int) -> GraphcError:
    """Return an error pointing at the first malformed row of a CSV file."""
    width = None
    for number, line in enumerate(lines[start:], start + 1):
        if not line.strip():
            continue
        row = next(csv.reader([line]))
        width = width or len(row)
        if len(row) != width:
            return GraphcError(f"{path}:{number}: row has {len(row)} columns, expected {width}",
                               help="every row needs the same number of columns")
        for column, cell in enumerate(row, 1):
            if not _is_number(cell):
                return GraphcError(f"{path}:{number}: column {column} is `{cell}`, not a number",
                                   help="features and labels must be numbers; only the first row may be a header")
    return GraphcError(f"cannot parse {path} as CSV", help="one row per sample: numbers separated by commas")


def _from_arrays(name: str, x_tr, y_tr, x_te, y_te) -> Dataset:
    """Return a validated Dataset from user arrays: float32 x, int64 labels or float32 targets."""
    pairs = [(x_tr, y_tr, "training")] + ([(x_te, y_te, "test")] if x_te is not None else [])
    classes = all(y.dtype.kind in "biu" and (y.ndim == 1 or y.shape[1:] == (1,)) for _, y, _ in pairs)
    out = []
    for x, y, part in pairs:
        if x.dtype.kind not in "biuf" or y.dtype.kind not in "biuf":
            raise GraphcError(f"{name}: {part} arrays must be numeric, got {x.dtype} inputs and {y.dtype} labels",
                              help="convert the arrays to numbers before saving")
        if x.ndim == 0 or y.ndim == 0 or len(x) != len(y) or len(x) == 0:
            raise GraphcError(f"{name}: {part} inputs have shape {list(x.shape)} and labels {list(y.shape)}; "
                              f"both need the same non-zero number of samples on the first axis",
                              help="the first axis of x and y counts samples")
        x = (x.reshape(len(x), 1) if x.ndim == 1 else x).astype(np.float32)
        if not np.all(np.isfinite(x)) or (y.dtype.kind == "f" and not np.all(np.isfinite(y))):
            raise GraphcError(f"{name}: {part} data contains NaN or infinite values",
                              help="remove or impute missing values first")
        if classes:
            y = y.reshape(len(y)).astype(np.int64)
            if y.min() < 0:
                raise GraphcError(f"{name}: {part} class labels include {y.min()}; labels must be 0..K-1",
                                  help="renumber the classes from 0, or store labels as floats for regression")
        out += [x, y if classes else y.astype(np.float32)]
    if len(out) == 4 and (out[0].shape[1:] != out[2].shape[1:] or out[1].shape[1:] != out[3].shape[1:]):
        raise GraphcError(f"{name}: training samples have shape {list(out[0].shape[1:])} but test samples "
                          f"{list(out[2].shape[1:])}", help="training and test data must have the same sample shape")
    num_classes = int(max(y.max() for y in out[1::2])) + 1 if classes else None
    out += [None, None] if len(out) == 2 else []
    return Dataset(name, out[0], out[1], out[2], out[3], num_classes)


# A dataset-level split: spiral and digits cut their test sets with it too.
def split_validation(x: np.ndarray, y: np.ndarray, fraction: float, seed: int):
    """Return (x_train, y_train, x_val, y_val): a deterministic shuffled hold-out.

    About `fraction` of the samples (at least one if fraction > 0) go to
    validation; fraction 0 returns all data for training and empty validation arrays.
    """
    if not 0 <= fraction < 1:
        raise GraphcError(f"validation fraction must be in [0, 1), got {fraction}",
                          help="e.g. 0.1 holds out 10% of the training data")
    n = len(x)
    if len(y) != n:
        raise GraphcError(f"{n} inputs but {len(y)} labels", help="inputs and labels must pair up one to one")
    n_val = max(1, round(n * fraction)) if fraction > 0 else 0
    if n_val == 0:
        return x, y, x[:0], y[:0]
    if n_val >= n:
        raise GraphcError(f"a validation fraction of {fraction} leaves no training data out of {n} samples",
                          help="use a smaller validation fraction")
    perm = np.random.default_rng(seed).permutation(n)
    # sorted indices keep the original sample order inside each part
    val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return x[train], y[train], x[val], y[val]
