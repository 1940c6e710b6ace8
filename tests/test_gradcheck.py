"""gradcheck and the mode of gradients (issue 11): NaN never passes, a zero gradient is not a failure,
the check is made in training mode with one dropout mask and the batch's statistics, magnitudes are
printed, bad options are diagnostics; `inspect` shows training-mode gradients unless `--eval-mode`.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from paths import REPO

from graphc.cli import main
from graphc.ops import lookup
from graphc.program import Program, check_source
from graphc.runtime.feeds import random_feeds
from graphc.tools.gradcheck import FLOOR, GradRow, _score, gradcheck
from graphc.tools.inspection import gradient_stats

NAN_BOTH_SIDES = "model m {\n  input x: [4]\n  param w: [4, 3]\n  loss = mean(log(x @ w))\n}\n"
BIAS_BEFORE_BATCHNORM = """\
model m {
  input x: [1, 6, 6]
  label y: class[3]
  h = conv(x, 4, kernel=[3, 3]) -> batchnorm -> relu -> flatten -> linear(3)
  loss = SCALE * cross_entropy(h, y)
  output p = softmax(h)
}
"""
DROPOUT_AND_BATCHNORM = """\
model m {
  input x: [6]
  label y: class[3]
  h = linear(x, 8) -> batchnorm -> relu -> dropout(0.5)
  loss = cross_entropy(linear(h, 3), y)
}
"""


def write(tmp_path, source: str):
    path = tmp_path / "m.nn"
    path.write_text(source)
    return str(path)


def test_nan_on_both_sides_fails_with_its_reason(tmp_path, capsys):
    assert main(["gradcheck", write(tmp_path, NAN_BOTH_SIDES)]) == 1
    out = capsys.readouterr().out
    assert out.count("FAIL: the loss is NaN or infinite at this point") == 2
    assert "0 of 2 tensors within tolerance" in out


@pytest.mark.parametrize("scale", ["1", "10000"])
def test_a_gradient_that_is_truly_zero_passes(tmp_path, capsys, scale):
    # A conv bias followed by batchnorm: the batch mean removes it, so d loss / d bias = 0 exactly;
    # round-off leaves ~1e-16 on one side, which a purely relative error called a 100 % mismatch.
    path = write(tmp_path, BIAS_BEFORE_BATCHNORM.replace("SCALE", scale))
    assert main(["gradcheck", path, "--batch", "4"]) == 0
    out = capsys.readouterr().out
    bias = next(line for line in out.splitlines() if line.startswith("h.conv.bias"))
    assert bias.endswith("ok"), bias


def test_the_table_prints_both_magnitudes_and_the_definition(tmp_path, capsys):
    assert main(["gradcheck", write(tmp_path, BIAS_BEFORE_BATCHNORM.replace("SCALE", "1"))]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    for column in ("max |analytic|", "max |numeric|", "max |diff|", "max error"):
        assert column in header
    assert f"error |a - n| / max(|a| + |n|, {FLOOR:g}), training mode" in out


def test_training_mode_with_dropout_and_batchnorm_agrees(tmp_path, capsys):
    assert main(["gradcheck", write(tmp_path, DROPOUT_AND_BATCHNORM), "--batch", "5", "--samples", "6"]) == 0
    assert "FAIL" not in capsys.readouterr().out


def test_a_wrong_gradient_still_fails():
    program = Program(check_source(DROPOUT_AND_BATCHNORM, "m.nn"), dtype="float64", seed=0)
    feeds = random_feeds(program.graph, 5, 0)
    rows = {r.name: r for r in gradcheck(program, feeds, samples=6)}
    assert all(r.ok(1e-4) for r in rows.values())
    op = lookup("relu")
    original = op.backward
    object.__setattr__(op, "backward", lambda ctx, g, args, out: [r * 1.01 if r is not None else None
                                                                  for r in original(ctx, g, args, out)])
    try:
        rows = gradcheck(program, feeds, samples=6)
    finally:
        object.__setattr__(op, "backward", original)
    assert not all(r.ok(1e-4) for r in rows)


def test_the_error_is_symmetric_floored_and_keeps_nan():
    row = GradRow("w", (3,), 3, 0.0, 0.0, 0.0, 0.0)
    _score(row, 1.0, 1.0 + 2e-6, FLOOR)
    assert row.max_error == pytest.approx(1e-6, rel=1e-3) and not row.reason
    _score(row, 1e-12, 0.0, FLOOR)                 # tiny on both sides: absolute, scaled by the floor
    assert row.max_error == pytest.approx(1e-6, rel=1e-3)
    _score(row, 1.0, -1.0, FLOOR)                  # a sign flip scores 1
    assert row.max_error == 1.0 and row.max_abs_error == 2.0 and row.max_analytic == 1.0
    _score(row, math.nan, 0.5, FLOOR)
    assert math.isnan(row.max_error) and row.reason.startswith("analytic gradient not finite")
    assert not row.ok(1e9)


@pytest.mark.parametrize("argv, message", [
    (["--eps", "0"], "--eps must be a positive step, got 0"),
    (["--eps", "nan"], "--eps must be a positive step"),
    (["--samples", "0"], "--samples must be at least 1, got 0"),
    (["--tol", "-1"], "--tol must be a positive number"),
    (["--floor", "0"], "--floor must be a positive number"),
    (["--batch", "0"], "--batch must be at least 1"),
])
def test_bad_options_are_diagnostics(tmp_path, capsys, argv, message):
    assert main(["gradcheck", write(tmp_path, NAN_BOTH_SIDES), *argv]) == 1
    assert message in capsys.readouterr().err


def test_eps_zero_in_a_real_process_has_no_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "GRAPHC_DATA"}
    env.update(PYTHONPATH=str(REPO), XDG_CACHE_HOME=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-m", "graphc", "gradcheck", write(tmp_path, NAN_BOTH_SIDES),
                           "--eps", "0"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "error: --eps must be a positive step" in done.stderr


# ---- inspect: training mode by default ----------------------------------------------------------

def test_inspect_gradients_are_training_mode_unless_asked(tmp_path, capsys):
    program = Program(check_source(DROPOUT_AND_BATCHNORM.replace("-> dropout(0.5)", ""), "m.nn"),
                      dtype="float64", seed=0)
    feeds = random_feeds(program.graph, 8, 0)
    state = {k: v.copy() for k, v in program.state.items()}
    trained = gradient_stats(program, feeds)
    evaluated = gradient_stats(program, feeds, train=False)
    for k, v in state.items():                # running statistics left as they were
        np.testing.assert_array_equal(program.state[k], v)
    expected = program.gradients(feeds)       # Program.gradients: training mode by default
    name = next(iter(trained))
    assert trained[name] == pytest.approx(float(np.mean(np.abs(expected[name]))))
    assert trained[name] != pytest.approx(evaluated[name])
    path = write(tmp_path, DROPOUT_AND_BATCHNORM)
    assert main(["inspect", path, "--gradients", "--data", "random", "--batch", "8",
                 "-o", str(tmp_path / "a.png")]) == 0
    assert ", training mode" in capsys.readouterr().out
    assert main(["inspect", path, "--gradients", "--eval-mode", "--data", "random", "--batch", "8",
                 "-o", str(tmp_path / "b.png")]) == 0
    assert ", eval mode" in capsys.readouterr().out
