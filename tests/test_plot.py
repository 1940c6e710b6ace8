"""`graphc plot`: run folders -> curves (overlaid, small multiples), traced paths over a contour, clear errors.

The runs are trained here, on XOR (a few epochs) and on the textbook's bowl f = x^2/20 + y^2 (`data = none`).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_models import BOWL

from graphc.diagnostics import GraphcError
from graphc.tools.plot import legend_labels, load_runs, plot_runs, series, smooth_curve

XOR = """
model {name} {{
  input x: [2]
  label y: class[2]
  h = linear(x, {hidden}) -> tanh
  logits = linear(h, 2)
  loss = cross_entropy(logits, y)
}}
train {{ data = xor; batch = 2; epochs = 4; optimizer = sgd(lr=0.5); seed = 0; eval_samples = 4 }}
"""



@pytest.fixture(scope="module")
def xor_runs(tmp_path_factory):
    """Return three XOR run folders: lr 0.5 and lr 0.1 of one model, and a wider model at lr 0.5."""
    from graphc.cli import main
    root = tmp_path_factory.mktemp("plot_runs")
    folders = {}
    for name, hidden, lr in (("narrow", 4, 0.5), ("narrow", 4, 0.1), ("wide", 8, 0.5)):
        model = root / f"{name}.nn"
        model.write_text(XOR.format(name=name, hidden=hidden))
        out = root / f"{name}-{lr}"
        assert main(["run", str(model), "--out", str(out), "--quiet", "--set", f"lr={lr}"]) == 0
        folders[(name, lr)] = out
    return folders


def test_overlay_writes_a_small_png_with_one_curve_per_run(xor_runs, tmp_path):
    figure = plot_runs([xor_runs[("narrow", 0.5)], xor_runs[("narrow", 0.1)]], tmp_path / "loss.png")
    data = figure.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) < 100_000


def test_legend_names_only_what_differs(xor_runs):
    runs = load_runs([xor_runs[("narrow", 0.5)], xor_runs[("narrow", 0.1)]])
    assert legend_labels(runs) == ["optimizer=sgd(lr=0.5)", "optimizer=sgd(lr=0.1)"]
    both = load_runs([xor_runs[("narrow", 0.5)], xor_runs[("wide", 0.5)]])
    assert legend_labels(both) == ["model=narrow", "model=wide"]
    same = load_runs([xor_runs[("narrow", 0.5)]] * 2)
    assert legend_labels(same) == [xor_runs[("narrow", 0.5)].name] * 2


def test_series_per_epoch_per_step_and_sample_splits(xor_runs):
    run = load_runs([xor_runs[("narrow", 0.5)]])[0]
    epochs = json.loads((run.folder / "metrics.json").read_text())["epochs"]
    xs, ys = series(run, "loss", "train", "epoch")
    assert xs == [1.0, 2.0, 3.0, 4.0] and ys == [r["train_loss"] for r in epochs]
    xs, ys = series(run, "acc", "train", "epoch")
    assert ys == [r["train_accuracy"] for r in epochs]
    xs, ys = series(run, "loss", "train", "step")
    assert xs == list(range(1, 9)) and ys == [v for r in epochs for v in r["step_loss"]]   # 4 points, batch 2
    _, ys = series(run, "acc", "sample_test", "epoch")
    assert ys == [r["sample_test_acc"] for r in epochs]


def test_smooth_curve_is_the_textbooks_for_window_11():
    values = np.random.default_rng(0).standard_normal(60)
    # ch06/weight_init_compare.py's common/util.py smooth_curve, verbatim in effect.
    window = 11
    padded = np.r_[values[window - 1:0:-1], values, values[-1:-window:-1]]
    kaiser = np.kaiser(window, 2)
    book = np.convolve(kaiser / kaiser.sum(), padded, mode="valid")[5:-5]
    np.testing.assert_allclose(smooth_curve(values, 11), book, rtol=1e-12)
    assert len(smooth_curve(values, 4)) == len(values)
    np.testing.assert_allclose(smooth_curve(np.full(7, 2.5), 11), 2.5)


def test_grid_puts_runs_differing_only_in_model_into_one_panel(xor_runs, tmp_path):
    from graphc.tools.plot import _panels
    runs = load_runs([xor_runs[("narrow", 0.5)], xor_runs[("wide", 0.5)], xor_runs[("narrow", 0.1)]])
    panels = _panels(runs)
    assert [members for _, members in panels] == [[(0, "narrow"), (1, "wide")], [(2, "narrow")]]
    assert [title for title, _ in panels] == ["optimizer=sgd(lr=0.5)", "optimizer=sgd(lr=0.1)"]
    assert plot_runs([r.folder for r in runs], tmp_path / "grid.png", grid=True, metric="acc").is_file()


def test_a_sweep_folder_stands_for_its_runs(xor_runs, tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    sweep.joinpath("sweep.json").write_text(json.dumps(
        {"key": "lr", "runs": [{"value": "0.5", "dir": str(xor_runs[("narrow", 0.5)])},
                               {"value": "0.1", "dir": str(xor_runs[("narrow", 0.1)])}]}))
    assert [r.folder for r in load_runs([sweep])] == [xor_runs[("narrow", 0.5)], xor_runs[("narrow", 0.1)]]


def test_trace_draws_the_path_over_the_losss_contour(tmp_path, graphc_run):
    from graphc.tools.plot import _loss_surface
    model = tmp_path / "bowl.nn"
    model.write_text(BOWL.replace("epochs = 30", "epochs = 5"))
    status, _, err = graphc_run("run", model, "--trace", "x,y", "--dtype", "float64", "--out", tmp_path / "r", "--quiet")
    assert status == 0, err
    status, out, err = graphc_run("plot", tmp_path / "r", "--trace", "x,y", "-o", tmp_path / "path.png")
    assert status == 0, err
    assert "wrote" in out and (tmp_path / "path.png").stat().st_size > 0
    # The contour is the loss itself: recompiled from the run's source, evaluated on the grid.
    surface = _loss_surface(load_runs([tmp_path / "r"])[0], ("x", "y"), (-2.0, 2.0), (-1.0, 1.0), 5)
    gx, gy = np.meshgrid(np.linspace(-2, 2, 5), np.linspace(-1, 1, 5))
    np.testing.assert_allclose(surface, gx ** 2 / 20 + gy ** 2, rtol=1e-12)


def test_errors_are_diagnostics(xor_runs, tmp_path, graphc_run):
    status, _, err = graphc_run("plot", tmp_path / "nothing", "-o", tmp_path / "x.png")
    assert status == 1 and "no such run folder" in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    status, _, err = graphc_run("plot", tmp_path / "empty", "-o", tmp_path / "x.png")
    assert status == 1 and "no metrics.json in" in err
    status, _, err = graphc_run("plot", xor_runs[("narrow", 0.5)], "--split", "val", "-o", tmp_path / "x.png")
    assert status == 1 and "no val loss per epoch" in err and "validation = 0.1" in err
    status, _, err = graphc_run("plot", xor_runs[("narrow", 0.5)], "--per", "step", "--metric", "acc",
                                "-o", tmp_path / "x.png")
    assert status == 1 and "training loss only" in err
    status, _, err = graphc_run("plot", xor_runs[("narrow", 0.5)], "--trace", "x,y", "-o", tmp_path / "x.png")
    assert status == 1 and "holds no trace" in err
    with pytest.raises(GraphcError, match="unknown picture format"):
        plot_runs([xor_runs[("narrow", 0.5)]], tmp_path / "x.gif")
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob(".*tmp"))
