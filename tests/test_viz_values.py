"""`graphc viz --feed ...`: every forward arrow labelled with its value, every gradient arrow with its gradient.

E2 of the course: f = (x + y) * z at x=-2, y=5, z=-4 gives the gradients (-4, -4, 3), read here from the
DOT text on the arrows they belong to, and from the SVG and HTML pictures.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from paths import MODELS

from graphc.api import compile_file, compile_source
from graphc.cli import main
from graphc.tools.edge_values import edge_numbers
from graphc.viz.scene import format_value

GATES = str(MODELS / "gates.nn")
FEEDS = ["--feed", "x=-2", "--feed", "y=5", "--feed", "z=-4"]


def dot_edges(text: str) -> dict[str, str]:
    """Return {edge id: its label} of a DOT file written by graphc."""
    return {m.group(1): m.group(2) for m in re.finditer(r'\[id="([^"]+)".*?label="([^"]*)"', text)}


def test_gate_gradients_are_on_their_arrows_in_the_dot_text(tmp_path):
    out = tmp_path / "gates.dot"
    assert main(["viz", GATES, "--backward", *FEEDS, "-o", str(out)]) == 0
    edges = dot_edges(out.read_text())
    # forward: the values each arrow carries
    assert edges["edge:x->q"].strip() == "-2" and edges["edge:y->q"].strip() == "5"
    assert edges["edge:q->f"].strip() == "3" and edges["edge:z->f"].strip() == "-4"
    # backward: the mul gate hands each input the other input times the gradient, the add gate passes it on
    grads = {key.split(":", 2)[2]: label.split("\\n")[-1] for key, label in edges.items() if key.startswith("grad:")}
    assert grads == {"f->q": "grad -4", "f->z": "grad 3", "q->x": "grad -4", "q->y": "grad -4"}


def test_without_backward_only_values_and_the_output_in_its_box(tmp_path):
    out = tmp_path / "gates.svg"
    assert main(["viz", GATES, *FEEDS, "-o", str(out), "--layout", "graphc"]) == 0
    text = out.read_text()
    assert "grad " not in text and "= -12" in text and ">-4<" in text


@pytest.mark.parametrize("ext,layout", [(".svg", "graphc"), (".html", "auto")])
def test_the_numbers_are_in_the_pictures(tmp_path, ext, layout):
    out = tmp_path / f"gates{ext}"
    assert main(["viz", GATES, "--backward", *FEEDS, "-o", str(out), "--layout", layout]) == 0
    text = out.read_text()
    assert text.count("grad -4") == 3 and text.count("grad 3") == 1


def test_a_fan_out_value_gets_one_gradient_per_arrow_and_their_sum_in_its_box(tmp_path):
    model = tmp_path / "fan.nn"
    model.write_text("model fan {\n  input x: []\n  input y: []\n  p = x * y\n  output f = p + x\n}\n")
    out = tmp_path / "fan.dot"
    assert main(["viz", str(model), "--backward", "--feed", "x=3", "--feed", "y=2", "-o", str(out)]) == 0
    text = out.read_text()
    grads = {key.split(":", 2)[2]: label.split("\\n")[-1] for key, label in dot_edges(text).items()
             if key.startswith("grad:")}
    # df/dx = y + 1 = 3: 2 along the mul gate's arrow, 1 along the add gate's
    assert grads["p->x"] == "grad 2" and grads["f->x"] == "grad 1" and grads["p->y"] == "grad 3"
    assert "Σ of 2 gradients = 3" in text


def test_edge_totals_are_the_programs_gradients():
    program = compile_file(MODELS / "mlp_gates.nn", dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    feeds = {"x": rng.random((3, 784)), "t": np.array([1, 2, 3])}
    found = edge_numbers(program, feeds)
    expected = program.gradients(feeds, train=False)
    for name in program.params:
        np.testing.assert_allclose(found.grads[name], expected[name], rtol=1e-10, atol=1e-14)
    assert found.random == [] and found.values["x"].shape == (3, 784)
    # every parameter's gradient arrives by one arrow here: the arrow carries the whole gradient
    into_w2 = [g for (_, target), g in found.edge_grads.items() if target == "W2"]
    assert len(into_w2) == 1
    np.testing.assert_allclose(into_w2[0], expected["W2"], rtol=1e-10)


def test_inputs_not_fed_are_seeded_random_and_said(tmp_path, capsys):
    assert main(["viz", str(MODELS / "xor.nn"), "--backward", "--feed", "x=0,1", "-o", str(tmp_path / "x.dot")]) == 0
    assert "seeded random values for y" in capsys.readouterr().out


def test_a_bad_feed_is_a_diagnostic(tmp_path, capsys):
    assert main(["viz", GATES, "--feed", "w=1", "-o", str(tmp_path / "g.dot")]) == 1
    err = capsys.readouterr().err
    assert "`w`, which is not an input" in err and "Traceback" not in err


def test_format_value():
    assert format_value(np.array([-4.0])) == "-4"
    assert format_value(np.array(0.123456)) == "0.1235"
    assert format_value(np.array([1.0, 2.5, -3.0])) == "[1, 2.5, -3]"
    assert format_value(np.ones((4, 100)) * 0.5) == "[4, 100] mean 0.5"


def test_a_model_without_objective_draws_values_only(tmp_path):
    # Two outputs and no loss: no objective, so no gradients (the single output would be one).
    program = compile_source("model m {\n  input a: [2]\n  output b = a * 2\n  output c = a + 1\n}\n")
    assert program.graph.objective is None
    found = edge_numbers(program, {"a": np.array([[1.0, 2.0]])})
    assert found.grads == {} and np.array_equal(found.values["b"], [[2.0, 4.0]])
    out = tmp_path / "m.dot"
    path = tmp_path / "m.nn"
    path.write_text("model m {\n  input a: [2]\n  output b = a * 2\n  output c = a + 1\n}\n")
    assert main(["viz", str(path), "--feed", "a=1,2", "-o", str(out)]) == 0
    assert dot_edges(out.read_text())["edge:a->b"].strip() == "[1, 2]"


def test_weights_give_the_numbers_of_the_trained_model(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["run", str(MODELS / "xor.nn"), "--epochs", "5", "--out", str(run), "--quiet"]) == 0
    out = tmp_path / "xor.dot"
    assert main(["viz", str(MODELS / "xor.nn"), "--backward", "--feed", "x=0,1", "--feed", "y=1",
                 "--weights", str(run / "weights.npz"), "-o", str(out)]) == 0
    bias = np.load(run / "weights.npz")["h.bias"]
    assert dot_edges(out.read_text())["edge:h.bias->h.linear"].strip() == format_value(bias)
    assert main(["viz", str(MODELS / "xor.nn"), "--weights", str(run / "weights.npz"), "-o", str(out)]) == 1
    assert "it goes with --feed" in capsys.readouterr().err
