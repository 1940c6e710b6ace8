"""`graphc run --trace`: parameter values before the first step and after every step, in metrics.json.

Also the textbook's optimizer comparison (Deep Learning from Scratch ch. 6, `optimizer_compare_naive.py`):
f(x, y) = x^2/20 + y^2 from (-7, 2), 30 updates, trained with `data = none`. graphc's optimizers, in the
forms their docstrings name (adagrad eps=1e-7, adam eps_hat=true), land where the book's update formulas do,
which this file computes itself, and where research.md C1 records them.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from paths import MODELS
from tiny_models import BOWL

from graphc.cli import main
from graphc.training.optim import make_optimizer


def _book_path(name: str, steps: int = 30) -> np.ndarray:
    """Return the book's positions [start, after step 1, ...] of its optimizer `name` on the bowl (float64)."""
    p = np.array([-7.0, 2.0])
    v, h, m = np.zeros(2), np.zeros(2), np.zeros(2)
    path = [p.copy()]
    for t in range(1, steps + 1):
        g = np.array([p[0] / 10, 2 * p[1]])
        if name == "sgd":
            p -= 0.95 * g
        elif name == "momentum":
            v = 0.9 * v - 0.1 * g
            p += v
        elif name == "adagrad":
            h += g * g
            p -= 1.5 * g / (np.sqrt(h) + 1e-7)
        else:   # adam, the book's lr_t form
            lr_t = 0.3 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
            m += (1 - 0.9) * (g - m)
            h += (1 - 0.999) * (g * g - h)
            p -= lr_t * m / (np.sqrt(h) + 1e-7)
        path.append(p.copy())
    return np.array(path)


OPTIMIZERS = {"sgd": "sgd(lr=0.95)", "momentum": "momentum(lr=0.1)", "adagrad": "adagrad(lr=1.5, eps=1e-7)",
              "adam": "adam(lr=0.3, eps=1e-7, eps_hat=true)"}
# research.md C1: the positions after 30 updates, to 4 decimals.
RECORDED = {"sgd": (-0.3504, 0.0848), "momentum": (0.8964, 0.0881), "adagrad": (-0.1202, 0.0000),
            "adam": (0.1360, 0.3182)}


def _run(tmp_path, *options) -> dict:
    tmp_path.mkdir(parents=True, exist_ok=True)
    model = tmp_path / "bowl.nn"
    model.write_text(BOWL)
    out = tmp_path / "out"
    assert main(["run", str(model), "--out", str(out), "--quiet", *options]) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_paths_match_the_books_update_formulas(tmp_path, name):
    metrics = _run(tmp_path, "--set", f"optimizer={OPTIMIZERS[name]}", "--dtype", "float64", "--trace", "x,y")
    path = np.array([metrics["trace"]["x"], metrics["trace"]["y"]]).T
    assert path.shape == (31, 2)   # the start and the point after each of the 30 steps (one per epoch)
    np.testing.assert_allclose(path, _book_path(name), rtol=1e-9, atol=1e-12)
    assert path[-1] == pytest.approx(RECORDED[name], abs=5e-5)


def test_eps_hat_is_the_books_adam_and_differs_from_torchs_near_eps():
    def end(**keywords):
        p = {"w": np.array([1.0])}
        opt = make_optimizer("adam", p, lr=0.1, eps=1e-3, **keywords)
        for _ in range(3):
            opt.step({"w": np.array([1e-3])})
        return p["w"][0]

    # With sqrt(v) near eps the two placements of eps visibly differ; at eps -> 0 they agree.
    assert abs(end(eps_hat=True) - end()) > 1e-3
    p_hat, p_torch = {"w": np.array([1.0])}, {"w": np.array([1.0])}
    a, b = (make_optimizer("adam", p, lr=0.1, eps=0.0, eps_hat=hat) for p, hat in ((p_hat, True), (p_torch, False)))
    for _ in range(3):
        a.step({"w": np.array([0.5])})
        b.step({"w": np.array([0.5])})
    assert p_hat["w"][0] == pytest.approx(p_torch["w"][0], rel=1e-12)


def test_trace_and_source_in_metrics_json(tmp_path):
    metrics = _run(tmp_path, "--epochs", "3", "--trace", "y")
    assert metrics["source"] == str((tmp_path / "bowl.nn").resolve())
    assert list(metrics["trace"]) == ["y"] and metrics["trace"]["y"][0] == 2.0
    # sgd lr 0.95 on y^2: y <- y - 0.95 * 2y = -0.9 y
    assert metrics["trace"]["y"] == pytest.approx([2.0 * (-0.9) ** k for k in range(4)], rel=1e-5)
    assert _run(tmp_path / "plain", "--epochs", "2")["trace"] == {}


def test_a_vector_parameter_is_traced_as_flat_lists_after_every_step(tmp_path):
    model = tmp_path / "line.nn"
    model.write_text("""
model line {
  input x: [2]
  label t: [1]
  w = linear(x, 1)
  loss = mse(w, t)
}
train { data = "pts.npz"; batch = 4; epochs = 2; optimizer = sgd(lr=0.1) }
""")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 2))
    np.savez(tmp_path / "pts.npz", x_train=x, t_train=x[:, :1] - x[:, 1:])
    assert main(["run", str(model), "--out", str(tmp_path / "out"), "--quiet", "--trace", "w.weight,w.bias"]) == 0
    trace = json.loads((tmp_path / "out" / "metrics.json").read_text())["trace"]
    assert len(trace["w.weight"]) == 1 + 2 * 3   # before, then 3 steps of 4 samples in each of 2 epochs
    assert all(isinstance(v, list) and len(v) == 2 for v in trace["w.weight"])
    assert all(isinstance(v, list) and len(v) == 1 for v in trace["w.bias"])
    final = np.load(tmp_path / "out" / "weights.npz")["w.weight"].reshape(-1)
    np.testing.assert_allclose(trace["w.weight"][-1], final, rtol=1e-6)


def test_a_resumed_run_keeps_the_whole_trace(tmp_path):
    whole = _run(tmp_path / "a", "--epochs", "4", "--trace", "x")["trace"]["x"]
    _run(tmp_path / "b", "--epochs", "2", "--trace", "x")
    resumed = _run(tmp_path / "b", "--epochs", "4", "--trace", "x", "--resume")["trace"]["x"]
    assert len(resumed) == 5 and resumed == pytest.approx(whole)


@pytest.mark.parametrize("names,says", [("z", "has no parameter `z`"), ("x,q", "has no parameter `q`")])
def test_an_unknown_traced_name_is_a_diagnostic(tmp_path, capsys, names, says):
    model = tmp_path / "bowl.nn"
    model.write_text(BOWL)
    assert main(["run", str(model), "--out", str(tmp_path / "out"), "--trace", names]) == 1
    err = capsys.readouterr().err
    assert says in err and "x, y" in err and "Traceback" not in err


def test_a_large_parameter_is_not_traced(tmp_path, capsys):
    model = tmp_path / "big.nn"
    model.write_text(BOWL.replace("param y: []", "param y: [65]").replace("y * y", "sum(y * y)"))
    assert main(["run", str(model), "--out", str(tmp_path / "out"), "--trace", "y"]) == 1
    err = capsys.readouterr().err
    assert "`y` has 65 elements" in err and "at most 64" in err and "Traceback" not in err


def test_trace_on_a_run_that_trains_nothing_is_a_diagnostic(capsys):
    assert main(["run", str(MODELS / "gates.nn"), "--feed", "x=1", "--trace", "x"]) == 1
    assert "--trace records parameters while training" in capsys.readouterr().err
