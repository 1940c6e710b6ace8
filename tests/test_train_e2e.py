"""End-to-end: the example models train on real MNIST / Fashion-MNIST and clear a loose accuracy floor.

Short form for CI: the first few thousand training samples, one epoch, the full 10,000-image
test set. The floors sit about ten points below what these exact runs reach (they are
deterministic: fixed seeds, fixed data), so they catch a model that stopped learning, not noise.
Each run takes a few seconds (simple_convnet ~10 s) on a 2-core CPU.
"""
from __future__ import annotations

import json

import pytest
from paths import MODELS

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("model, data, limit, floor", [
    # reached: 80.0%
    ("lenet5", "mnist", 5000, 0.70),
    # reached: 84.3%
    ("mlp_gates", "mnist", 5000, 0.74),
    # reached: 91.2%
    ("simple_convnet", "mnist", 5000, 0.81),
    # reached: 63.7%
    ("mlp_gates", "fashion-mnist", 3000, 0.53),
])
def test_short_training_clears_accuracy_floor(real_datasets, graphc_run, tmp_path, model, data, limit, floor):
    out = tmp_path / "out"
    status, text, err = graphc_run("run", MODELS / f"{model}.nn", "--data", data, "--limit", limit,
                                   "--limit-test", 10_000, "--epochs", 1, "--out", out, "--quiet")
    assert status == 0, err
    result = json.loads((out / "metrics.json").read_text())
    assert result["data"] == data
    assert len(result["epochs"]) == 1
    test = result["test"]
    assert test["samples"] == 10_000
    assert test["accuracy"] >= floor, f"{model} on {data}: test accuracy {test['accuracy']:.4f} < floor {floor}"
    # the model learnt from the data, not just its class prior
    assert result["epochs"][0]["train_accuracy"] > 0.3
    assert (out / "curves.png").stat().st_size > 0
