"""Training as a library: `train(program, config, data, out_dir)` takes values, prints nothing unless asked,
and gives the same weights as `graphc run`; the NaN guard, L1/L2 and early stopping as plain functions."""
from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_models import TINY

from graphc.diagnostics import GraphcError
from graphc.program import Program, check_source
from graphc.runtime.nan_guard import check_step
from graphc.training.batching import TrainData
from graphc.training.checkpoint import load_arrays
from graphc.training.config import train_config
from graphc.training.regularize import EarlyStopping, add_weight_penalties
from graphc.training.trainer import TrainResult, train


def _setup(limit: int = 256):
    graph = check_source(TINY)
    cfg = train_config(graph)
    program = Program(graph, seed=cfg.seed, init=cfg.init)
    return program, cfg, TrainData.load(program, cfg, limit=limit)


def test_train_returns_a_result_and_writes_the_run_files(tmp_path, capsys):
    program, cfg, data = _setup()
    result = train(program, cfg, data, tmp_path / "out")
    assert isinstance(result, TrainResult)
    assert [r["epoch"] for r in result.history] == [1, 2] and result.test["samples"] == len(data.x_test)
    assert capsys.readouterr() == ("", "")      # no `say`: silent
    for name in ("weights.npz", "checkpoint.npz", "metrics.json", "best.npz"):
        assert (tmp_path / "out" / name).exists(), name
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == json.loads(json.dumps(result.to_json()))


def test_train_matches_the_command_line(tmp_path, graphc_run):
    model = tmp_path / "tiny.nn"
    model.write_text(TINY)
    status, _, err = graphc_run("run", model, "--out", tmp_path / "cli", "--quiet", "--limit", "256")
    assert status == 0, err
    program, cfg, data = _setup()
    lines = []
    train(program, cfg, data, tmp_path / "api", say=lines.append)
    assert lines[0].startswith("training tiny") and lines[-1].startswith("wrote ")
    cli, _ = load_arrays(tmp_path / "cli" / "weights.npz")
    api, _ = load_arrays(tmp_path / "api" / "weights.npz")
    assert sorted(cli) == sorted(api) and all(np.array_equal(cli[k], api[k]) for k in cli)


def test_resume_through_the_library_refuses_other_settings(tmp_path):
    program, cfg, data = _setup()
    train(program, cfg, data, tmp_path)
    program, _, data = _setup()
    other = train_config(program.graph, ["optimizer=sgd(lr=0.2)"])
    with pytest.raises(GraphcError) as caught:
        train(program, other, data, tmp_path, resume=True)
    assert "different train settings" in str(caught.value.diagnostics[0].message)


def test_weight_penalties_add_l2_and_l1_to_decayed_weights_only():
    w, b = np.array([1.0, -2.0]), np.array([3.0])
    grads = {"w": np.zeros(2), "b": np.zeros(1)}
    add_weight_penalties(grads, {"w": w, "b": b}, ["w"], weight_decay=0.5, l1=0.1)
    assert np.allclose(grads["w"], [0.5 + 0.1, -1.0 - 0.1]) and np.array_equal(grads["b"], [0.0])


def test_early_stopping_counts_epochs_without_a_better_validation_loss():
    early = EarlyStopping(patience=2)
    assert early.update(1.0) and not early.stopped
    assert not early.update(None) and early.stale_epochs == 0      # no validation data: nothing changes
    assert not early.update(1.5) and not early.stopped
    assert not early.update(1.2) and early.stopped
    assert not EarlyStopping(patience=0, stale_epochs=9).stopped     # 0: never stop


def test_nan_guard_names_the_node_that_produced_nan():
    graph = check_source("""
model m {
  input x: [2]
  label y: class[2]
  z = log(x)
  logits = linear(z, 2)
  loss = cross_entropy(logits, y)
}
""")
    program = Program(graph, seed=0)
    feeds = {"x": np.array([[-1.0, 1.0]], np.float32), "y": np.array([0])}
    with np.errstate(invalid="ignore", divide="ignore"):
        values, grads = program.forward_backward(feeds, train=True, checked=False, input_grads=False)
    plan = program.executor_for_backward(input_grads=False).plan
    with pytest.raises(GraphcError, match=r"`z` \(log\) produced NaN or Inf in step 1"):
        check_step(graph, plan, program.dtype, feeds=feeds, params=program.params, state=program.state,
                   rng_state=program.rng.bit_generator.state, loss=program.loss_value(values), grads=grads,
                   where="in step 1")


# ---- the public API: graphc.compile_*, prog.fit / save / load, gradients in training mode -----------

def test_prog_fit_gives_the_weights_of_graphc_run(tmp_path, graphc_run):
    import graphc
    model = tmp_path / "tiny.nn"
    model.write_text(TINY)
    status, _, err = graphc_run("run", model, "--out", tmp_path / "cli", "--quiet", "--limit", "256")
    assert status == 0, err
    prog = graphc.compile_file(model)
    result = prog.fit(limit=256, out=tmp_path / "api")
    assert isinstance(result, TrainResult) and [r["epoch"] for r in result.history] == [1, 2]
    cli, _ = load_arrays(tmp_path / "cli" / "weights.npz")
    assert all(np.array_equal(cli[k], v) for k, v in prog.params.items())
    # save/load round trip through a fresh program of the same model
    prog.save(tmp_path / "w.npz")
    other = graphc.compile_source(TINY)
    assert not np.array_equal(other.params["logits.weight"], prog.params["logits.weight"])
    assert other.load(tmp_path / "w.npz")["model"] == "tiny"
    assert all(np.array_equal(other.params[k], v) for k, v in prog.params.items())


def test_prog_fit_on_arrays_bound_by_input_and_label_names(tmp_path):
    import graphc
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 64)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    prog = graphc.compile_source(TINY)
    result = prog.fit({"x": x, "y": y}, epochs=3, settings=["validation=0"], test={"x": x[:30], "y": y[:30]},
                      out=tmp_path / "out")
    assert result.data == "<arrays>" and result.samples == {"train": 120, "val": 0, "test": 30}
    assert len(result.history) == 3 and result.test["samples"] == 30 and 0 <= result.test["accuracy"] <= 1
    assert (tmp_path / "out" / "weights.npz").exists()
    with pytest.raises(GraphcError, match="missing y; unknown label"):
        prog.fit({"x": x, "label": y}, out=tmp_path / "bad")
    with pytest.raises(GraphcError, match="one row per sample"):
        prog.fit({"x": x, "y": y[:5]}, out=tmp_path / "bad")


def test_gradients_default_to_training_mode():
    import graphc
    prog = graphc.compile_source("""
model bn {
  input x: [4]
  label y: class[2]
  h = linear(x, 3) -> batchnorm
  loss = cross_entropy(linear(h, 2), y)
}
""", seed=0)
    feeds = {"x": np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32), "y": np.arange(8) % 2}
    trained = prog.gradients(feeds)
    assert all(np.array_equal(trained[k], v) for k, v in prog.gradients(feeds, train=True).items())
    # batchnorm with the batch's statistics vs. fresh running ones: different objectives, different gradients
    inference = prog.gradients(feeds, train=False)
    assert not np.allclose(trained["h.linear.weight"], inference["h.linear.weight"])
