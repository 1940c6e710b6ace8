"""Datasets: where training data comes from and how it is fitted to a model.

Input: a dataset spec (`xor`, `spiral`, `digits`, `mnist`, `fashion-mnist`, or
a path to a `.npz` or `.csv` file) and where to look for downloaded files.
Output: a `Dataset` of float32 inputs with int64 class labels (or float32
targets), plus helpers that fit those arrays to a model's declared input and
label shapes, split off validation data and cut minibatches.

MNIST-style IDX files are looked for in `data_dir` (or `data_dir/<name>/`),
then `$GRAPHC_DATA` (same two layouts), then `$XDG_CACHE_HOME/graphc/<name>`;
when absent they are downloaded into that cache and checked against known MD5s.
Every problem with the user's data or files is raised as `GraphcError`.
"""
from __future__ import annotations

import csv
import difflib
import gzip
import hashlib
import http.client
import io
import math
import os
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphc.diagnostics import GraphcError

KNOWN_DATASETS = ("xor", "spiral", "digits", "mnist", "fashion-mnist")
_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist"}
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# name -> (canonical base URL, env var overriding it, MD5 of each .gz file)
_IDX_SOURCES = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "GRAPHC_MNIST_URL", (
        "f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c")),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                      "GRAPHC_FASHION_MNIST_URL", (
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
        "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")),
}
_BY_HAND = "put the four IDX files (.gz or raw) in a directory and pass `--data DIR` or set $GRAPHC_DATA to it"


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
    name = _ALIASES.get(name, name)
    if name == "xor":
        x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
        y = np.array([0, 1, 1, 0], np.int64)
        ds = Dataset("xor", x, y, x.copy(), y.copy(), 2)
    elif name == "spiral":
        ds = _spiral(seed)
    elif name == "digits":
        ds = _digits(seed)
    elif name in _IDX_SOURCES:
        ds = _load_idx_dataset(name, data_dir, download)
    elif name.endswith(".npz"):
        ds = _load_npz(_resolve(spec, data_dir))
    elif name.endswith(".csv"):
        ds = _load_csv(_resolve(spec, data_dir))
    else:
        close = difflib.get_close_matches(name, KNOWN_DATASETS, n=1)
        hint = f"did you mean `{close[0]}`? " if close else ""
        raise GraphcError(f"unknown dataset `{spec}`",
                          help=f"{hint}known datasets: {', '.join(KNOWN_DATASETS)}, or a path to a .npz or .csv file")
    return _standardise(ds) if scale == "standard" else ds


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


def _standardise(ds: Dataset) -> Dataset:
    """Return `ds` with every feature shifted and scaled by training statistics."""
    mean = ds.x_train.mean(axis=0, dtype=np.float64)
    std = ds.x_train.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0  # constant features (MNIST's blank border) stay 0 instead of dividing by zero
    scaled = [None if x is None else ((x - mean) / std).astype(np.float32) for x in (ds.x_train, ds.x_test)]
    return Dataset(ds.name, scaled[0], ds.y_train, scaled[1], ds.y_test, ds.num_classes)


# ---------------------------------------------------------------- IDX (MNIST)

def cache_dir(name: str) -> Path:
    """Return the per-user download cache directory for dataset `name`."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "graphc" / name


def _find_file(directory: Path, base: str) -> Path | None:
    """Return the gzipped or raw copy of IDX file `base` in `directory`, if any."""
    for candidate in (directory / (base + ".gz"), directory / base):
        if candidate.is_file():
            return candidate
    return None


def _find_idx_dir(name: str, data_dir: str | None) -> tuple[Path | None, list[str]]:
    """Return the first directory holding all four files, and the places searched."""
    roots = [data_dir] if data_dir else []
    roots += [r for r in os.environ.get("GRAPHC_DATA", "").split(os.pathsep) if r]
    # a directory named after the other dataset (`--data .../mnist` for fashion-mnist)
    # must not be taken for this one: the files have the same names
    others = {"mnist", "fashion-mnist", "fashion_mnist"} - {name, name.replace("-", "_")}
    candidates: list[Path] = []
    for root in map(lambda r: Path(r).expanduser(), roots):
        candidates += [root] if root.name.lower() not in others else []
        candidates += [root / name, root / name.replace("-", "_")]
    candidates.append(cache_dir(name))
    searched = []
    for directory in dict.fromkeys(candidates):
        if all(_find_file(directory, base) for base in _IDX_FILES):
            return directory, searched
        searched.append(str(directory))
    return None, searched


def download_idx(name: str, dest_dir: str | Path | None = None, *, base_url: str | None = None,
                 timeout: float = 60.0) -> Path:
    """Download the four .gz files of `mnist` or `fashion-mnist`; return the directory.

    Files already in `dest_dir` (default: the user cache) are kept. The URL is
    `base_url`, else `$GRAPHC_MNIST_URL`/`$GRAPHC_FASHION_MNIST_URL`, else the
    canonical mirror. Each file must match its known MD5 before it is moved into place.
    """
    name = _ALIASES.get(name.lower(), name.lower())
    if name not in _IDX_SOURCES:
        raise GraphcError(f"`{name}` is not a downloadable dataset", help="use `mnist` or `fashion-mnist`")
    default_url, env_var, md5s = _IDX_SOURCES[name]
    base = base_url or os.environ.get(env_var) or default_url
    base = base if base.endswith("/") else base + "/"
    dest = Path(dest_dir) if dest_dir is not None else cache_dir(name)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GraphcError(f"cannot create download directory {dest}: {e.strerror or e}", help=_BY_HAND) from None
    for base_name, md5 in zip(_IDX_FILES, md5s):
        if _find_file(dest, base_name) is None:
            _download_file(base + base_name + ".gz", dest / (base_name + ".gz"), md5, timeout)
    return dest


def _download_file(url: str, target: Path, md5: str, timeout: float) -> None:
    """Fetch `url` into `target` atomically, failing unless its MD5 is `md5`."""
    print(f"graphc: downloading {url}", file=sys.stderr)
    # a temp file in the same directory makes os.replace atomic, so an interrupted
    # or corrupt download never looks like a cached file
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
    try:
        digest = hashlib.md5(usedforsecurity=False)  # integrity check only; FIPS builds allow this
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:
            raise GraphcError(f"downloaded {url} but its MD5 is {digest.hexdigest()}, expected {md5}",
                              help=f"the mirror may be broken; {_BY_HAND}")
        os.replace(tmp, target)
    except (OSError, ValueError, http.client.HTTPException) as e:  # URLError and timeouts are OSErrors
        # URLError wraps the socket error in .reason; HTTPError's own text carries the status
        if isinstance(e, urllib.error.HTTPError):
            e.close()  # it holds the open response socket
        reason = e if isinstance(e, urllib.error.HTTPError) else getattr(e, "reason", e)
        raise GraphcError(f"could not download {url}: {reason}", help=_BY_HAND) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Return the uint8 array in IDX file `path` (gzip or raw), checking its header."""
    what = "images" if magic == 2051 else "labels"
    fix = f"replace {path} with an intact copy (deleting it from the graphc cache re-downloads it)"
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # detect gzip by content, not by name: files get renamed
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise GraphcError(f"cannot read {path}: {e}", help=fix) from None
    ndim = 3 if magic == 2051 else 1
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise GraphcError(f"{path} is corrupt: {len(raw)} bytes is shorter than the {header}-byte IDX header",
                          help=fix)
    fields = [int(v) for v in np.frombuffer(raw, ">u4", count=1 + ndim)]
    if fields[0] != magic:
        raise GraphcError(f"{path} is not an IDX {what} file: magic number {fields[0]}, expected {magic}",
                          help=fix)
    dims = tuple(fields[1:])
    expected = header + math.prod(dims)
    if len(raw) != expected:
        raise GraphcError(f"{path} is corrupt: its header promises {dims[0]} {what} ({expected} bytes) "
                          f"but it holds {len(raw)} bytes", help=fix)
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _load_idx_dataset(name: str, data_dir: str | None, download: bool) -> Dataset:
    """Return MNIST or Fashion-MNIST as (N, 28, 28) float32 images in [0, 1]."""
    directory, searched = _find_idx_dir(name, data_dir)
    if directory is None:
        if not download:
            raise GraphcError(f"dataset `{name}` not found; looked in {', '.join(searched)}", help=_BY_HAND)
        directory = download_idx(name)
    paths = [_find_file(directory, base) for base in _IDX_FILES]
    arrays = [_read_idx(p, 2051 if "images" in p.name else 2049) for p in paths]
    for images, labels, img_path, lab_path in ((arrays[0], arrays[1], paths[0], paths[1]),
                                               (arrays[2], arrays[3], paths[2], paths[3])):
        if len(images) != len(labels):
            raise GraphcError(f"{img_path} holds {len(images)} images but {lab_path} holds {len(labels)} labels",
                              help="the two files come from different datasets; replace them with a matching pair")
        if labels.size and labels.max() > 9:
            raise GraphcError(f"{lab_path} is corrupt: label {labels.max()} is outside 0..9",
                              help=f"replace {lab_path} with an intact copy")
    if arrays[0].shape[1:] != arrays[2].shape[1:]:
        raise GraphcError(f"{paths[0]} has images of {arrays[0].shape[1:]} pixels but {paths[2]} has "
                          f"{arrays[2].shape[1:]}", help="use training and test files from the same dataset")
    # dividing (not multiplying by 1/255) keeps 255 -> exactly 1.0
    x_tr, x_te = (np.divide(a, np.float32(255), dtype=np.float32) for a in (arrays[0], arrays[2]))
    return Dataset(name, x_tr, arrays[1].astype(np.int64), x_te, arrays[3].astype(np.int64), 10)


# ---------------------------------------------------------------- files

def _resolve(spec: str, data_dir: str | None) -> Path:
    """Return the path of a data file: as given, else relative to `data_dir`."""
    path = Path(spec).expanduser()
    if not path.exists() and data_dir and not path.is_absolute() and (Path(data_dir) / path).exists():
        path = Path(data_dir) / path
    if not path.is_file():
        raise GraphcError(f"data file {spec} does not exist" if not path.exists() else f"{spec} is not a file",
                          help="check the path (relative paths are tried from the current directory, then --data)")
    return path


def _load_npz(path: Path) -> Dataset:
    """Return a dataset from an .npz holding x_train/y_train[/x_test/y_test] or x/y."""
    try:
        with open(path, "rb") as f:  # our own handle: np.load leaks its file when the zip is corrupt
            archive = np.load(f, allow_pickle=False)
            if not hasattr(archive, "files"):
                raise GraphcError(f"{path} is a single .npy array, not an .npz archive",
                                  help="save it with np.savez(path, x_train=..., y_train=...)")
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise GraphcError(f"cannot read {path}: {e}",
                          help="write it with np.savez(path, x_train=..., y_train=...) using numeric arrays") from None
    if "x_train" in arrays or "y_train" in arrays:
        keys = ("x_train", "y_train", "x_test", "y_test")
    else:
        keys = ("x", "y", "x_test", "y_test")
    missing = [k for k in keys[:2] if k not in arrays]
    if missing or (("x_test" in arrays) != ("y_test" in arrays)):
        raise GraphcError(f"{path} holds arrays {sorted(arrays)}; expected x_train and y_train (or x and y), "
                          f"and optionally x_test with y_test", help="rename the arrays when calling np.savez")
    return _from_arrays(str(path), *(arrays.get(k) for k in keys))


def _load_csv(path: Path) -> Dataset:
    """Return a dataset from a CSV whose last column is the label (all rows are training data).

    A first row that is not all numbers is a header. A label column of
    non-negative whole numbers gives class labels; anything else gives float targets.
    """
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


# ---------------------------------------------------------------- fitting to a model

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
