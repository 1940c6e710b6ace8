"""The MNIST-layout file names, and whether a folder holds them.

Apart from idx.py (readers, downloads) so that the train section's resolution,
which `graphc check` runs, can recognise an IDX folder without loading them.
"""
from __future__ import annotations

from pathlib import Path

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def holds_idx(directory: Path) -> bool:
    """Return True when `directory` itself holds the four MNIST-layout IDX files (.gz or raw)."""
    return directory.is_dir() and all((directory / b).is_file() or (directory / (b + ".gz")).is_file()
                                      for b in IDX_FILES)
