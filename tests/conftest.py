"""Shared fixtures: the real datasets and `graphc ...` run in-process (the repository's paths are in tests/paths.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
from paths import shared_datasets

from graphc.training.idx import IDX_FILES

# The PostgreSQL server fixtures (postgres_url_fixture, fresh_postgres_url), usable by name in every test.
pytest_plugins = ["postgres_server"]


def _has_idx(directory: Path) -> bool:
    return all((directory / f).is_file() or (directory / (f + ".gz")).is_file() for f in IDX_FILES)


@pytest.fixture
def real_datasets(monkeypatch, tmp_path) -> Path:
    """Return the shared datasets directory with $GRAPHC_DATA pointing at it (skip if MNIST is absent).

    The download cache is redirected into tmp_path, so a test can never fetch anything.
    """
    root = shared_datasets()
    if not _has_idx(root / "mnist"):
        pytest.skip(f"MNIST IDX files not found in {root / 'mnist'} (set $GRAPHC_DATA to the shared datasets)")
    monkeypatch.setenv("GRAPHC_DATA", str(root))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return root


@pytest.fixture
def graphc_run(capsys):
    """Return run(*argv) -> (exit status, stdout, stderr) of `graphc ARGV` run in this process."""
    from graphc.cli import main

    def run(*argv):
        capsys.readouterr()
        status = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, err

    return run
