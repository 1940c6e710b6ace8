"""What users see while a run goes on, and what a run records: progress lines and bars, --quiet's result,
--limit on every split, best vs last weights on the test set, accuracy for every classification loss,
and the per-step training loss (metrics.json and curves.png)."""
from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from paths import REPO
from tiny_models import TINY

from graphc.program import Program, check_source
from graphc.training.batching import TrainData
from graphc.training.checkpoint import load_weights
from graphc.training.config import train_config
from graphc.training.curves import step_points
from graphc.training.data import split_validation
from graphc.training.metrics import Classifier, Tally, best_epoch, classifiers, evaluate_split, format_metrics
from graphc.training.trainer import MAX_STEP_POINTS, mean_of_groups


def write(tmp_path: Path, text: str, name: str = "m.nn") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def graphc_process(*argv, **kwargs) -> subprocess.CompletedProcess:
    """Return the finished `python -m graphc ARGV` with pipes for stdout and stderr (no terminal)."""
    return subprocess.run([sys.executable, "-m", "graphc", *map(str, argv)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, **kwargs)


# ---- 1. progress ------------------------------------------------------------------------------

def test_without_a_terminal_each_epoch_is_one_line_with_its_learning_rate(tmp_path):
    done = graphc_process("run", write(tmp_path, TINY), "--out", tmp_path / "out", "--limit", "300",
                          "--set", "schedule=step(step_size=1, gamma=0.5)")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("training tiny") and "train 270 / val 30 / test 300 samples" in lines[0]
    assert lines[1].startswith("epoch 1/2  train loss ") and " lr 0.1 " in lines[1]
    assert lines[2].startswith("epoch 2/2  train loss ") and " lr 0.05 " in lines[2]
    assert lines[3].startswith("test: loss ") and lines[4].startswith("wrote ")
    assert "\r" not in done.stdout + done.stderr and "%|" not in done.stderr     # no bar without a terminal


def test_quiet_prints_only_the_result(tmp_path):
    done = graphc_process("run", write(tmp_path, TINY), "--out", tmp_path / "out", "--limit", "300", "--quiet")
    assert done.returncode == 0, done.stderr
    test = metrics(tmp_path / "out")["test"]
    assert done.stdout == f"test: {format_metrics(test)}\n" and done.stderr == ""


def _run_on_a_terminal(argv: list, rows_cols: tuple[int, int] | None) -> str:
    """Return everything `python -m graphc ARGV` wrote to a pseudo-terminal holding its stdout and stderr."""
    master, slave = pty.openpty()
    if rows_cols is not None:
        import fcntl
        import struct
        import termios
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *rows_cols, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "graphc", *map(str, argv)], cwd=REPO, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:      # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=300) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("rows_cols", [(24, 100), None], ids=["sized", "unsized"])
def test_on_a_terminal_bars_show_batches_and_evaluations(tmp_path, rows_cols):
    pytest.importorskip("tqdm")
    text = _run_on_a_terminal(["run", write(tmp_path, TINY), "--out", tmp_path / "out", "--limit", "300"],
                              rows_cols)
    # tqdm draws with carriage returns: the training bar with its learning rate, then each evaluation's bar.
    assert "\repoch 1/2:" in text and "%|" in text and "sample/s" in text and "lr=0.1" in text
    assert "\rvalidation:" in text and "\rtest:" in text
    assert "epoch 2/2  train loss" in text and "test: loss" in text         # the lines are still there


def test_quiet_on_a_terminal_draws_no_bar(tmp_path):
    pytest.importorskip("tqdm")
    text = _run_on_a_terminal(["run", write(tmp_path, TINY), "--out", tmp_path / "out", "--limit", "300",
                               "--quiet"], (24, 100))
    assert "%|" not in text and text.startswith("test: loss ") and text.count("\n") == 1


# ---- 2. --limit on every split ---------------------------------------------------------------------

def test_limit_bounds_validation_and_test_and_limit_test_overrides(tmp_path, graphc_run):
    path = write(tmp_path, TINY)
    status, text, err = graphc_run("run", path, "--out", tmp_path / "a", "--limit", "200")
    assert status == 0, err
    assert "train 180 / val 20 / test 200 samples" in text
    result = metrics(tmp_path / "a")
    assert result["samples"] == {"train": 180, "val": 20, "test": 200} and result["test"]["samples"] == 200
    # the validation split is held out from the first 200 samples, not from the whole set
    graph = check_source(TINY)
    data = TrainData.load(Program(graph), train_config(graph), limit=200)
    first = TrainData.load(Program(graph), train_config(graph, ["validation=0"])).x_train[:200]
    rows = sorted(r.tobytes() for r in np.concatenate([data.x_train, data.x_val]))
    assert rows == sorted(r.tobytes() for r in first)

    status, text, err = graphc_run("run", path, "--out", tmp_path / "b", "--limit", "200", "--limit-test", "50")
    assert status == 0, err
    assert "test 50 samples" in text and metrics(tmp_path / "b")["test"]["samples"] == 50
    status, text, err = graphc_run("run", path, "--out", tmp_path / "c", "--limit", "200", "--limit-test", "0")
    assert status == 0, err
    assert "test 0 samples" in text and "test:" not in text and metrics(tmp_path / "c")["test"] == {}
    status, _, err = graphc_run("run", path, "--out", tmp_path / "d", "--limit-test", "-1")
    assert status == 1 and "--limit-test must be at least 0" in err


# ---- 3. best vs last weights ----------------------------------------------------------------------

RISING = """
model rising {
  input x: [2]
  label y: class[2]
  logits = linear(x, 2)
  loss = cross_entropy(logits, y)
}
train { data = "DATA"; batch = 20; epochs = 4; optimizer = sgd(lr=0.5); validation = 0.2; seed = 1 }
"""


def test_test_metrics_of_last_and_best_weights_are_both_reported(tmp_path, graphc_run):
    n = 200
    x = np.random.default_rng(0).standard_normal((n, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    val = split_validation(np.arange(n), np.arange(n), 0.2, 1)[2]
    y[val] = 1 - y[val]       # validation labels negated: its loss rises every epoch, the best epoch is 1
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:40], y_test=(x[:40, 0] > 0).astype(np.int64))
    path = write(tmp_path, RISING.replace("DATA", str(tmp_path / "d.npz")))
    status, text, err = graphc_run("run", path, "--out", tmp_path / "out")
    assert status == 0, err
    result = metrics(tmp_path / "out")
    assert result["best_epoch"] == 1 and len(result["epochs"]) == 4
    assert result["test"] != result["test_best"] and set(result["test_best"]) == {"loss", "accuracy", "samples"}
    assert f"test (last weights, epoch 4, weights.npz): {format_metrics(result['test'])}" in text
    assert f"test (best validation weights, epoch 1, best.npz): {format_metrics(result['test_best'])}" in text
    # the program ends with its last weights: evaluating weights.npz again gives `test`
    status, text, err = graphc_run("run", path, "--eval", "--weights", tmp_path / "out" / "weights.npz")
    assert text == f"test: {format_metrics(result['test'])}\n"
    status, text, err = graphc_run("run", path, "--eval", "--weights", tmp_path / "out" / "best.npz")
    assert text == f"test: {format_metrics(result['test_best'])}\n"


def test_without_validation_there_is_no_best_epoch(tmp_path, graphc_run):
    status, text, err = graphc_run("run", write(tmp_path, TINY), "--out", tmp_path / "out", "--limit", "100",
                                   "--set", "validation=0")
    assert status == 0, err
    result = metrics(tmp_path / "out")
    assert result["best_epoch"] is None and result["test_best"] == {} and "best validation weights" not in text
    assert best_epoch([{"epoch": 1, "val_loss": 2.0}, {"epoch": 2, "val_loss": 1.0}, {"epoch": 3, "val_loss": 1.0}]) == 2


# ---- 4. accuracy for every classification loss ------------------------------------------------------

BINARY = """
model binary {
  input x: [2]
  label y: [1]
  output p = linear(x, 1) -> sigmoid
  loss = binary_cross_entropy(p, y) + 0.001 * mean(p * p)
}
train { data = "DATA"; batch = 25; epochs = 3; optimizer = sgd(lr=1.0); validation = 0.2; seed = 2 }
"""


def test_a_sigmoid_with_binary_cross_entropy_inside_an_expression_reports_accuracy(tmp_path, graphc_run):
    x = np.random.default_rng(1).standard_normal((300, 2)).astype(np.float32)
    y = (x[:, :1] + x[:, 1:] > 0).astype(np.float32)
    np.savez(tmp_path / "b.npz", x_train=x[:200], y_train=y[:200], x_test=x[200:], y_test=y[200:])
    path = write(tmp_path, BINARY.replace("DATA", str(tmp_path / "b.npz")))
    status, text, err = graphc_run("run", path, "--out", tmp_path / "out")
    assert status == 0, err
    result = metrics(tmp_path / "out")
    for r in result["epochs"]:
        assert 0 <= r["train_accuracy"] <= 1 and 0 <= r["val_accuracy"] <= 1
    assert result["test"]["accuracy"] > 0.8 and "acc" in text.splitlines()[-2]
    # the accuracy is the fraction of predictions p > 0.5 that match y
    program = Program(check_source(path.read_text()))
    load_weights(program, tmp_path / "out" / "weights.npz")
    p = program.run({"x": x[200:]})["p"]
    assert result["test"]["accuracy"] == pytest.approx(np.mean((p > 0.5) == (y[200:] > 0.5)))


def test_every_classification_loss_in_the_expression_gets_an_accuracy(tmp_path):
    graph = check_source("""
model two {
  input x: [64]
  label y: class[10]
  h = linear(x, 16) -> relu
  logits = linear(h, 10)
  aux = linear(x, 10)
  loss = cross_entropy(logits, y) + 0.3 * cross_entropy(aux, y) + 0.01 * mean(logits * logits)
}
train { data = digits; batch = 64; epochs = 1; optimizer = sgd(lr=0.1); seed = 3 }
""")
    assert [c.pred for c in classifiers(graph)] == ["logits", "aux"]      # in the order the loss names them
    program = Program(graph)
    data = TrainData.load(program, train_config(graph), limit=200)
    m = evaluate_split(program, data.x_test, data.y_test)
    assert m["accuracy"] == m["accuracies"]["logits"] and set(m["accuracies"]) == {"logits", "aux"}
    assert "(logits " in format_metrics(m) and ", aux " in format_metrics(m)


def test_classifier_decisions():
    argmax = Classifier("l", "z", "y", None, class_target=True)
    assert argmax.correct(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1]), 2) == (1, 2)
    one_hot = Classifier("l", "z", "y", None, class_target=False)
    assert one_hot.correct(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([[0.0, 1.0], [1.0, 0.0]]), 2) == (2, 2)
    logits = Classifier("l", "z", "y", 0.0, class_target=False)      # cut at 0 for logits, per element
    assert logits.correct(np.array([[-1.0, 2.0], [0.5, -3.0]]), np.array([[0.0, 1.0], [0.0, 0.0]]), 2) == (3, 4)
    tally = Tally([argmax])
    assert tally.metrics("val_") == {"val_accuracy": 0.0} and Tally([]).metrics() == {}


# ---- 5. per-step training loss ----------------------------------------------------------------------

def test_every_step_loss_is_recorded_and_drawn(tmp_path, graphc_run):
    status, _, err = graphc_run("run", write(tmp_path, TINY), "--out", tmp_path / "out", "--limit", "300",
                                "--set", "epochs=1")
    assert status == 0, err
    (record,) = metrics(tmp_path / "out")["epochs"]
    steps = record["step_loss"]
    assert len(steps) == 5                         # 270 samples in batches of 64
    sizes = [64, 64, 64, 64, 14]
    assert np.dot(steps, sizes) / 270 == pytest.approx(record["train_loss"], rel=1e-6)
    assert (tmp_path / "out" / "curves.png").stat().st_size > 0
    xs, ys = step_points([record, {"epoch": 2, "train_loss": 1.0}])        # a record without steps is skipped
    assert xs == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0]) and ys == steps


def test_long_epochs_keep_at_most_a_thousand_step_points():
    losses = [float(i) for i in range(2500)]
    every = -(-len(losses) // MAX_STEP_POINTS)
    points = mean_of_groups(losses, every)
    assert every == 3 and len(points) == 834 and points[0] == 1.0 and points[-2] == 2497.0 and points[-1] == 2499.0
    assert mean_of_groups([1.0, 2.0], 1) == [1.0, 2.0]


def test_quiet_without_a_test_split_prints_the_last_epoch(tmp_path, graphc_run):
    x = np.random.default_rng(1).standard_normal((100, 2)).astype(np.float32)
    np.savez(tmp_path / "b.npz", x=x, y=(x[:, :1] > 0).astype(np.float32))
    path = write(tmp_path, BINARY.replace("DATA", str(tmp_path / "b.npz")))
    status, text, err = graphc_run("run", path, "--out", tmp_path / "out", "--quiet")
    assert status == 0, err
    assert text.startswith("after epoch 3: train loss ") and "  val loss " in text and text.count("\n") == 1
