"""graphc inspect: the initialisation experiment's numbers, filters, gradient magnitudes, and the command."""
from __future__ import annotations

import numpy as np
import pytest
from paths import MODELS

from graphc.cli import main
from graphc.program import Program, check_file
from graphc.runtime.feeds import random_feeds
from graphc.tools.inspection import activation_stats, first_conv_filters, gradient_stats


def stats(model: str, init: tuple[str, dict], batch: int = 1000) -> dict[str, np.ndarray]:
    program = Program(check_file(MODELS / model), seed=0, init=init)
    return activation_stats(program, random_feeds(program.graph, batch, seed=0))


def near(values: np.ndarray, *targets: float, tol: float = 0.05) -> float:
    """The share of values within `tol` of any target."""
    return float(np.mean(np.any([np.abs(values - t) <= tol for t in targets], axis=0)))


def test_sigmoid_std_one_saturates_at_zero_and_one():
    s = stats("sigmoid5.nn", ("normal", {"std": 1.0}))
    assert list(s) == ["h1", "h2", "h3", "h4", "h5"]
    for layer in ("h2", "h3", "h4", "h5"):
        assert near(s[layer], 0.0, 1.0) > 0.5, layer


def test_sigmoid_std_001_collapses_to_one_half():
    s = stats("sigmoid5.nn", ("normal", {"std": 0.01}))
    for layer in ("h2", "h3", "h4", "h5"):
        assert near(s[layer], 0.5) > 0.9, layer


def test_sigmoid_xavier_stays_spread():
    s = stats("sigmoid5.nn", ("xavier", {}))
    for layer in ("h2", "h3", "h4", "h5"):
        assert near(s[layer], 0.0, 1.0) < 0.1, layer       # not saturated
        assert near(s[layer], 0.5) < 0.6, layer            # not collapsed
        assert s[layer].std() > 0.08, layer


def test_relu_he_keeps_the_scale_and_small_normal_vanishes():
    he = stats("relu5.nn", ("he", {}))
    assert 0.5 < he["h5"].std() / he["h1"].std() < 2.0
    small = stats("relu5.nn", ("normal", {"std": 0.01}))
    assert small["h5"].std() < 1e-3 * small["h1"].std()


def test_gradients_vanish_towards_the_input_with_small_weights():
    program = Program(check_file(MODELS / "sigmoid5.nn"), seed=0, init=("normal", {"std": 0.01}))
    grads = gradient_stats(program, random_feeds(program.graph, 200, seed=0))
    assert list(grads) == ["h1.weight", "h2.weight", "h3.weight", "h4.weight", "h5.weight", "logits.weight"]
    values = list(grads.values())
    assert all(a < b for a, b in zip(values, values[1:]))
    assert values[0] < 1e-6 * values[-1]
    before = {k: v.copy() for k, v in program.params.items()}
    gradient_stats(program, random_feeds(program.graph, 20, seed=1))
    assert all(np.array_equal(before[k], v) for k, v in program.params.items())    # nothing trained


def test_first_conv_filters():
    program = Program(check_file(MODELS / "lenet5.nn"), seed=0)
    name, w = first_conv_filters(program)
    assert name == "c1.weight" and w.shape == (6, 1, 5, 5)
    assert first_conv_filters(Program(check_file(MODELS / "sigmoid5.nn"))) is None


def test_cli_inspect_draws_every_panel(tmp_path, capsys):
    out = tmp_path / "lenet.png"
    assert main(["inspect", str(MODELS / "lenet5.nn"), "--activations", "--filters", "--gradients",
                 "--data", "random", "--batch", "16", "-o", str(out)]) == 0
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 20_000
    printed = capsys.readouterr().out
    assert "c1" in printed and "mean |grad| c1.weight" in printed and "16 seeded standard-normal" in printed


def test_cli_inspect_the_experiment(tmp_path, capsys):
    out = tmp_path / "sigmoid.png"
    assert main(["inspect", str(MODELS / "sigmoid5.nn"), "--activations", "--init", "normal(std=0.01)",
                 "--batch", "200", "-o", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
    assert "init normal(std=0.01)" in capsys.readouterr().out


def test_cli_inspect_uses_the_models_data(tmp_path, capsys):
    out = tmp_path / "xor.png"
    assert main(["inspect", str(MODELS / "xor.nn"), "--activations", "-o", str(out)]) == 0
    assert "samples of xor" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--filters"], "no conv layer"),
    (["--init", "gaussian"], "gaussian"),
])
def test_cli_inspect_errors(tmp_path, capsys, args, message):
    assert main(["inspect", str(MODELS / "sigmoid5.nn"), *args, "-o", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert message in err
