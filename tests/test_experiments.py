"""The course's experiments gallery in its quick form (the CI form): every experiment runs at reduced size and
its qualitative outcome holds (experiments/run.py asserts each; this test fails if any does not).

Without the MNIST files, only the experiments that need no MNIST run (XOR, gates, histograms, optimizer paths,
worked losses).
"""
from __future__ import annotations

import importlib.util
import json

import pytest
from paths import REPO, shared_datasets

from graphc.training.idx import IDX_FILES

NO_MNIST = "e1,e2,e3,e4,e10"


def _gallery():
    spec = importlib.util.spec_from_file_location("experiments_run", REPO / "experiments" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _has_mnist() -> bool:
    root = shared_datasets() / "mnist"
    return all((root / f).is_file() or (root / (f + ".gz")).is_file() for f in IDX_FILES)


@pytest.mark.slow
def test_quick_gallery_reproduces_every_outcome(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_DATA", str(shared_datasets()))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))   # never a download
    only = [] if _has_mnist() else ["--only", NO_MNIST]
    status = _gallery().main(["--quick", "--out", str(tmp_path), *only])
    rows = json.loads((tmp_path / "results.json").read_text())
    failed = [f"{r['id']}: {c['check']}" for r in rows for c in r.get("checks", []) if not c["passed"]]
    assert failed == [] and status == 0
    expected = {"E1", "E2", "E3", "E4", "E10"} | (set() if only else {"E5", "E6", "E7", "E8", "E9"})
    assert {r["id"] for r in rows} == expected
    for r in rows:
        for figure in r["figures"]:
            data = (tmp_path / "figures" / figure).read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 150_000, figure


def test_gallery_rejects_an_unknown_experiment(capsys):
    with pytest.raises(SystemExit):
        _gallery().main(["--quick", "--only", "e11"])
    assert "unknown experiment(s) e11" in capsys.readouterr().err
