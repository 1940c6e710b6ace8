"""`graphc inspect FILE --regions`: the class a 2-D classifier predicts over the plane, training points on top."""
from __future__ import annotations

import numpy as np
import pytest
from paths import MODELS

from graphc.api import compile_file, compile_source
from graphc.cli import main
from graphc.tools.regions import decision_regions, predict_classes
from graphc.training.checkpoint import load_weights

XOR_CORNERS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
XOR_CLASSES = np.array([0, 1, 1, 0])

PERCEPTRON = """
model perceptron {
  input x: [2]
  label y: class[2]
  logits = linear(x, 2)
  loss = cross_entropy(logits, y)
}
train { data = xor; batch = 4; epochs = 200; optimizer = sgd(lr=0.5) }
"""


def test_one_hidden_layer_separates_xor_and_the_picture_is_written(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["run", str(MODELS / "xor.nn"), "--out", str(run), "--quiet"]) == 0
    picture = tmp_path / "regions.png"
    assert main(["inspect", str(MODELS / "xor.nn"), "--regions", "--weights", str(run / "weights.npz"),
                 "-o", str(picture)]) == 0
    assert "training points on the side of their class: 4/4" in capsys.readouterr().out
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    program = compile_file(MODELS / "xor.nn")
    load_weights(program, run / "weights.npz")
    regions = decision_regions(program, XOR_CORNERS)
    # The unit square with a 10% margin, and each corner's cell holds its XOR class.
    assert regions.xs[0] == pytest.approx(-0.1) and regions.ys[-1] == pytest.approx(1.1)
    for (x, y), want in zip(XOR_CORNERS, XOR_CLASSES):
        i, j = np.abs(regions.ys - y).argmin(), np.abs(regions.xs - x).argmin()
        assert regions.classes[i, j] == want
    assert set(np.unique(regions.classes)) == {0, 1} and regions.n_classes == 2


def test_a_single_perceptron_never_gets_all_four_xor_points(tmp_path, capsys):
    model = tmp_path / "perceptron.nn"
    model.write_text(PERCEPTRON)
    assert main(["run", str(model), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert main(["inspect", str(model), "--regions", "--weights", str(tmp_path / "run" / "weights.npz"),
                 "-o", str(tmp_path / "r.png")]) == 0
    said = capsys.readouterr().out
    right = int(said.split("training points on the side of their class: ")[1].split("/")[0])
    assert right < 4   # no line separates XOR


def test_a_binary_classifier_is_cut_at_one_half():
    source = PERCEPTRON.replace("label y: class[2]", "label y: [1]").replace(
        "logits = linear(x, 2)\n  loss = cross_entropy(logits, y)",
        "p = linear(x, 1) -> sigmoid\n  loss = binary_cross_entropy(p, y)")
    program = compile_source(source, "bce.nn")
    program.params["p.weight"][:] = [[1.0], [0.0]]   # p = sigmoid(x0 + b): class 1 where x0 > -b
    program.params["p.bias"][:] = [-0.5]
    classes, score, n = predict_classes(program, np.array([[0.2, 0.9], [0.8, 0.1]], dtype=np.float32))
    assert list(classes) == [0, 1] and n == 2 and score[1] == pytest.approx(1 / (1 + np.exp(-0.3)), rel=1e-5)


@pytest.mark.parametrize("model,says", [
    ("mlp.nn", "one 2-D input; `mlp` has `image: [784]`"),
    ("gates.nn", "`x: []`, `y: []`, `z: []`"),
])
def test_a_model_whose_input_is_not_two_d_is_a_diagnostic(tmp_path, capsys, model, says):
    assert main(["inspect", str(MODELS / model), "--regions", "-o", str(tmp_path / "r.png")]) == 1
    err = capsys.readouterr().err
    assert says in err and "declare `input x: [2]`" in err and "Traceback" not in err
    assert not (tmp_path / "r.png").exists()


def test_a_regression_model_and_mixed_flags_are_diagnostics(tmp_path, capsys):
    model = tmp_path / "reg.nn"
    model.write_text(PERCEPTRON.replace("label y: class[2]", "label y: [2]").replace("cross_entropy", "mse"))
    assert main(["inspect", str(model), "--regions", "-o", str(tmp_path / "r.png")]) == 1
    assert "not a classification loss" in capsys.readouterr().err
    assert main(["inspect", str(MODELS / "xor.nn"), "--regions", "--gradients", "-o", str(tmp_path / "r.png")]) == 1
    assert "does not go with --gradients" in capsys.readouterr().err
