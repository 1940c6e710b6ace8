"""A user error never shows a traceback: `python -m graphc` in a real process, one case per class of error path.

In-process tests call `main()`, so an unexpected exception would propagate into pytest and stderr could never hold a
traceback; only a separate process shows what a user sees. Exit status 1 is a diagnostic about the user's program,
data or files, 2 is bad command-line usage (DESIGN.md).
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
from paths import MODELS, REPO

SYNTAX = "model m {\n  input x: [2]\n  h = linear(x, 4\n  output p = softmax(h)\n}\n"
SHAPE = "model m {\n  input x: [2]\n  input y: [3]\n  output f = x + y\n}\n"
WRONG_DATA = """\
model m {
  input x: [2]
  label y: class[2]
  logits = linear(x, 2)
  loss = cross_entropy(logits, y)
  output p = softmax(logits)
}
train {
  data = "three_features.npz"
  epochs = 1
}
"""


@dataclass(frozen=True)
class Case:
    """One command, the exit status it must end with, and text its stderr must hold."""
    argv: tuple[str, ...]
    status: int
    says: str


XOR, GATES = str(MODELS / "xor.nn"), str(MODELS / "gates.nn")
CASES = {
    "syntax": Case(("check", "syntax.nn"), 1, "syntax.nn:4:3: error: "),
    "shape": Case(("check", "shape.nn"), 1, "shape.nn:4:14: error: add: shapes [2] and [3] do not broadcast"),
    "data-shape": Case(("run", "wrong_data.nn", "--out", "out"), 1,
                       "dataset `three_features.npz` gives samples of shape [3], but input `x` is declared [2]"),
    "data-unknown": Case(("run", XOR, "--data", "nowhere", "--out", "out"), 1, "unknown dataset `nowhere`"),
    "option-value": Case(("run", XOR, "--set", "epochs=abc", "--out", "out"), 1, "bad value for `epochs`"),
    "option-feed": Case(("run", GATES, "--feed", "x=abc"), 1, "--feed x=abc: not a number"),
    "usage": Case(("check", XOR, "--bogus"), 2, "unrecognized arguments: --bogus"),
    "file-missing": Case(("check", "nope.nn"), 1, "cannot read nope.nn"),
    "file-directory": Case(("check", "."), 1, "cannot read ."),
    "file-not-utf8": Case(("check", "binary.nn"), 1, "cannot read binary.nn"),
    "file-bad-weights": Case(("run", XOR, "--eval", "--weights", "binary.nn"), 1, "binary.nn: is not a .npz archive"),
    "file-bad-output": Case(("viz", XOR, "-o", "graph.jpg"), 1, "unknown format `.jpg`"),
}


@pytest.fixture
def workdir(tmp_path):
    """Return a directory holding the broken inputs the cases name."""
    (tmp_path / "syntax.nn").write_text(SYNTAX)
    (tmp_path / "shape.nn").write_text(SHAPE)
    (tmp_path / "wrong_data.nn").write_text(WRONG_DATA)
    (tmp_path / "binary.nn").write_bytes(b"\xff\xfe not text")
    np.savez(tmp_path / "three_features.npz", x_train=np.zeros((4, 3), np.float32), y_train=np.zeros(4, np.int64),
             x_test=np.zeros((2, 3), np.float32), y_test=np.zeros(2, np.int64))
    return tmp_path


def _environment(tmp_path) -> dict[str, str]:
    """Return an environment that runs this checkout's graphc and can never reach the network or the real cache."""
    env = {k: v for k, v in os.environ.items() if k != "GRAPHC_DATA"}
    env.update(PYTHONPATH=str(REPO), XDG_CACHE_HOME=str(tmp_path / "cache"), MPLBACKEND="Agg",
               # the discard port: a download attempt fails at once instead of fetching
               GRAPHC_MNIST_URL="http://127.0.0.1:9/", GRAPHC_FASHION_MNIST_URL="http://127.0.0.1:9/")
    return env


@pytest.mark.parametrize("name", CASES)
def test_user_error_exits_cleanly_without_a_traceback(name, workdir):
    case = CASES[name]
    done = subprocess.run([sys.executable, "-m", "graphc", *case.argv], cwd=workdir, env=_environment(workdir),
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == case.status, done.stderr
    assert case.says in done.stderr, done.stderr
    assert "error: " in done.stderr.splitlines()[0 if case.status == 1 else -1], done.stderr
