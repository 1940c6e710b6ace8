"""MNIST-style IDX datasets: finding their four files, downloading them, reading them safely.

Input: a dataset name (`mnist`, `fashion-mnist`) and where to look. Output:
the training and test images (float32 in [0, 1]) and labels (int64), or a
GraphcError naming the file and what is wrong with it.

The files are looked for in `data_dir` (or `data_dir/<name>/`), then
`$GRAPHC_DATA` (same two layouts), then `$XDG_CACHE_HOME/graphc/<name>`; when
absent they are downloaded into that cache and checked against known MD5s. A
folder holding only some of the four files is an error, not a reason to
download. Downloads go to `<file>.<pid>.<random>.part` and are renamed into
place when complete; parts left by a killed download are deleted by the next.
Reads are bounded: an IDX header's claimed size is checked against what the
file can hold before anything is allocated or decompressed.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import math
import os
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from graphc.diagnostics import GraphcError
from graphc.training.bounded import deflate_bound
from graphc.training.idx_files import IDX_FILES

ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist"}
# name -> (canonical base URL, env var overriding it, MD5 of each .gz file)
IDX_SOURCES = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "GRAPHC_MNIST_URL", (
        "f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c")),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                      "GRAPHC_FASHION_MNIST_URL", (
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
        "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")),
}
_BY_HAND = "put the four IDX files (.gz or raw) in a directory and pass `--data DIR` or set $GRAPHC_DATA to it"





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
        found = [base for base in IDX_FILES if _find_file(directory, base)]
        if len(found) == len(IDX_FILES):
            return directory, searched
        if found and directory != cache_dir(name):
            # A folder the user pointed at with some files missing: downloading instead would hide that.
            missing = [base for base in IDX_FILES if base not in found]
            raise GraphcError(f"{directory} holds {len(found)} of the 4 {name} IDX files; missing: "
                              f"{', '.join(missing)} (.gz or raw)", help=_BY_HAND)
        searched.append(str(directory))
    return None, searched


def download_idx(name: str, dest_dir: str | Path | None = None, *, base_url: str | None = None,
                 timeout: float = 60.0) -> Path:
    """Download the four .gz files of `mnist` or `fashion-mnist`; return the directory.

    Files already in `dest_dir` (default: the user cache) are kept. The URL is
    `base_url`, else `$GRAPHC_MNIST_URL`/`$GRAPHC_FASHION_MNIST_URL`, else the
    canonical mirror. Each file must match its known MD5 before it is moved into place.
    """
    name = ALIASES.get(name.lower(), name.lower())
    if name not in IDX_SOURCES:
        raise GraphcError(f"`{name}` is not a downloadable dataset", help="use `mnist` or `fashion-mnist`")
    default_url, env_var, md5s = IDX_SOURCES[name]
    base = base_url or os.environ.get(env_var) or default_url
    base = base if base.endswith("/") else base + "/"
    dest = Path(dest_dir) if dest_dir is not None else cache_dir(name)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GraphcError(f"cannot create download directory {dest}: {e.strerror or e}", help=_BY_HAND) from None
    for base_name, md5 in zip(IDX_FILES, md5s):
        if _find_file(dest, base_name) is None:
            _download_file(base + base_name + ".gz", dest / (base_name + ".gz"), md5, timeout)
    return dest


def _download_file(url: str, target: Path, md5: str, timeout: float) -> None:
    """Fetch `url` into `target` atomically, failing unless its MD5 is `md5`."""
    print(f"graphc: downloading {url}", file=sys.stderr)
    remove_stale_parts(target)
    # a temp file in the same directory makes os.replace atomic, so an interrupted
    # or corrupt download never looks like a cached file; its name holds our pid (see remove_stale_parts)
    fd, tmp = tempfile.mkstemp(prefix=f"{target.name}.{os.getpid()}.", suffix=".part", dir=target.parent)
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


def remove_stale_parts(target: Path) -> None:
    """Delete `<target>.<pid>.*.part` files left by downloads whose process is gone (killed); returns None."""
    for part in target.parent.glob(target.name + ".*.part"):
        pid = part.name[len(target.name) + 1:].split(".", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            with contextlib.suppress(OSError):
                part.unlink()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)   # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True   # it exists, owned by someone else
    return True


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Return the uint8 array in IDX file `path` (gzip or raw), checking its header.

    The header's claimed size is checked against what the file can hold before
    anything is read: a raw file's length, or for gzip the most its compressed
    bytes can expand to; a gzip stream is never decompressed past that size.
    """
    what = "images" if magic == 2051 else "labels"
    fix = f"replace {path} with an intact copy (deleting it from the graphc cache re-downloads it)"
    ndim = 3 if magic == 2051 else 1
    header = 4 * (1 + ndim)
    try:
        with open(path, "rb") as f:
            packed = f.read(2) == b"\x1f\x8b"  # detect gzip by content, not by name: files get renamed
            size = os.fstat(f.fileno()).st_size
        with (gzip.open(path, "rb") if packed else open(path, "rb")) as stream:
            raw = stream.read(header)
            if len(raw) == header and int.from_bytes(raw[:4], "big") == magic:
                claimed = header + math.prod(int.from_bytes(raw[i:i + 4], "big") for i in range(4, header, 4))
                bound = deflate_bound(size) if packed else size
                if claimed > bound:
                    raise GraphcError(f"{path} is corrupt: its header promises {claimed:,} bytes but the file "
                                      f"can hold at most {bound:,}", help=fix)
                raw += stream.read(claimed - header + 1)   # one byte more shows trailing garbage
    except (OSError, EOFError, zlib.error) as e:
        raise GraphcError(f"cannot read {path}: {e}", help=fix) from None
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
        holds = f"{len(raw)} bytes" if len(raw) < expected else "more"
        raise GraphcError(f"{path} is corrupt: its header promises {dims[0]} {what} ({expected} bytes) "
                          f"but it holds {holds}", help=fix)
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def load_idx(name: str, data_dir: str | None, download: bool) -> tuple[np.ndarray, ...]:
    """Return MNIST or Fashion-MNIST as (x_train, y_train, x_test, y_test): (N, 28, 28) float32 images
    in [0, 1] and int64 labels."""
    directory, searched = _find_idx_dir(name, data_dir)
    if directory is None:
        if not download:
            raise GraphcError(f"dataset `{name}` not found; looked in {', '.join(searched)}", help=_BY_HAND)
        directory = download_idx(name)
    paths = [_find_file(directory, base) for base in IDX_FILES]
    arrays = [_read_idx(p, 2051 if "images" in p.name else 2049) for p in paths]
    for path, array in zip(paths, arrays):
        if len(array) == 0:
            # Training on nothing would "succeed" and overwrite good weights with untrained ones.
            raise GraphcError(f"{path} holds no samples (its header says 0 items)",
                              help=f"replace {path} with an intact copy")
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
    return x_tr, arrays[1].astype(np.int64), x_te, arrays[3].astype(np.int64)
