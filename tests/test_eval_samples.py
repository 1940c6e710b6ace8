"""The `eval_samples = N` train setting: after each epoch, the first N training and N test samples evaluated
in inference mode (the textbook's `evaluate_sample_num_per_epoch`), recorded as sample_* in the history."""
from __future__ import annotations

import json

import numpy as np
import pytest

from graphc.api import compile_file
from graphc.cli import main
from graphc.training.checkpoint import load_weights
from graphc.training.metrics import evaluate_feeds

CLASSIFIER = """
model blobs {
  input x: [2]
  label y: class[2]
  h = linear(x, 8) -> relu -> dropout(0.5)
  logits = linear(h, 2)
  loss = cross_entropy(logits, y)
}
train { data = "blobs.npz"; batch = 8; epochs = 3; optimizer = adam(lr=0.05); eval_samples = 5 }
"""


def _write(tmp_path, text=CLASSIFIER):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 2)).astype(np.float32)
    y = (x[:, 0] > x[:, 1]).astype(np.int64)
    np.savez(tmp_path / "blobs.npz", x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
    model = tmp_path / "blobs.nn"
    model.write_text(text)
    return model, x, y


def test_each_epoch_records_the_first_n_samples_in_inference_mode(tmp_path):
    model, x, y = _write(tmp_path)
    out = tmp_path / "out"
    assert main(["run", str(model), "--out", str(out), "--quiet"]) == 0
    history = json.loads((out / "metrics.json").read_text())["epochs"]
    assert len(history) == 3
    for record in history:
        assert {"sample_train_loss", "sample_train_acc", "sample_test_loss", "sample_test_acc"} <= set(record)
        assert record["sample_train_acc"] * 5 == pytest.approx(round(record["sample_train_acc"] * 5))
    # The last epoch's numbers are the final weights' on the first 5 samples, dropout off.
    program = compile_file(model)
    load_weights(program, out / "weights.npz")
    train = evaluate_feeds(program, {"x": x[:5], "y": y[:5]})
    test = evaluate_feeds(program, {"x": x[40:45], "y": y[40:45]})
    last = history[-1]
    assert last["sample_train_loss"] == pytest.approx(train["loss"], rel=1e-5)
    assert last["sample_test_loss"] == pytest.approx(test["loss"], rel=1e-5)
    assert last["sample_test_acc"] == test["accuracy"]


def test_off_by_default_and_from_the_command_line(tmp_path):
    model, _, _ = _write(tmp_path, CLASSIFIER.replace("; eval_samples = 5", ""))
    assert main(["run", str(model), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    record = json.loads((tmp_path / "a" / "metrics.json").read_text())["epochs"][0]
    assert not any(k.startswith("sample_") for k in record)
    assert main(["run", str(model), "--out", str(tmp_path / "b"), "--quiet", "--set", "eval_samples=1000"]) == 0
    record = json.loads((tmp_path / "b" / "metrics.json").read_text())["epochs"][0]
    assert "sample_test_acc" in record   # N beyond the split's size: the whole split


def test_a_regression_model_records_losses_only(tmp_path):
    text = CLASSIFIER.replace("label y: class[2]", "label y: [2]").replace("cross_entropy", "mse")
    model, x, _ = _write(tmp_path, text)
    np.savez(tmp_path / "blobs.npz", x_train=x[:40], y_train=x[:40], x_test=x[40:], y_test=x[40:])
    assert main(["run", str(model), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    record = json.loads((tmp_path / "out" / "metrics.json").read_text())["epochs"][-1]
    assert "sample_test_loss" in record and not any(k.endswith("_acc") for k in record)


@pytest.mark.parametrize("value", ["-1", "2.5", "xavier"])
def test_a_bad_value_is_a_diagnostic(tmp_path, capsys, value):
    model, _, _ = _write(tmp_path)
    assert main(["run", str(model), "--out", str(tmp_path / "out"), "--set", f"eval_samples={value}"]) == 1
    err = capsys.readouterr().err
    assert "bad value for `eval_samples`" in err and "whole number >= 0" in err and "Traceback" not in err
