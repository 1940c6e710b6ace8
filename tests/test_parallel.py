"""Data-parallel steps (runtime/parallel.py): the batch split across threads gives the serial step's
loss and gradients within float32 rounding, refuses models it cannot split exactly, keeps dropout
reproducible for a seed, and trains (and resumes bit-identically) through the trainer."""
from __future__ import annotations

import numpy as np
import pytest
from paths import MODELS

from graphc import compile_file
from graphc.diagnostics import GraphcError
from graphc.program import Program, check_source
from graphc.runtime.parallel import ParallelStep, choose_parts, split_blocker, training_step
from graphc.tools.bench import random_feeds
from graphc.training.batching import TrainData
from graphc.training.checkpoint import load_arrays
from graphc.training.config import train_config
from graphc.training.trainer import train

DIGITS_CNN = """
model cnn {
  input x: [64]
  label y: class[10]
  image = reshape(x, [1, 8, 8])
  h = conv(image, 4, kernel=3, pad=1) -> relu -> maxpool(2) -> flatten -> DROPOUT
  logits = linear(h, 10)
  loss = cross_entropy(logits, y)
}
train { data = digits; batch = 50; epochs = 2; optimizer = momentum(lr=0.05); seed = 4 }
"""


def _serial(program: Program, feeds: dict):
    values, grads = program.forward_backward(feeds, train=True, checked=False, input_grads=False)
    return program.loss_value(values), {k: np.array(grads[k]) for k in program.params}


@pytest.mark.parametrize("name,parts,batch", [("lenet5", 2, 16), ("simple_convnet", 2, 9), ("mlp", 3, 10)])
def test_split_gradients_equal_the_serial_step(name, parts, batch):
    program = compile_file(MODELS / f"{name}.nn")
    feeds = random_feeds(program, batch, seed=3)
    loss, grads = _serial(program, feeds)
    with ParallelStep(program, parts, gather=("logits",)) as step:
        values, split = step.forward_backward(feeds)
    assert values["logits"].shape == (batch, 10)
    assert abs(program.loss_value(values) - loss) <= 1e-6 * abs(loss)
    for p in program.params:
        scale = max(float(np.abs(grads[p]).max()), 1e-12)
        assert float(np.abs(split[p] - grads[p]).max()) <= 1e-5 * scale, p
        assert not np.array_equal(split[p], np.zeros_like(split[p])), p


def test_split_inference_equals_the_serial_one():
    program = compile_file(MODELS / "lenet5.nn")
    feeds = {"image": random_feeds(program, 7)["image"]}
    with ParallelStep(program, 2) as step:
        probs = step.forward(feeds, ("probs",))["probs"]
    np.testing.assert_allclose(probs, program.run(feeds)["probs"], rtol=1e-5, atol=1e-7)


def test_a_mean_loss_plus_a_weight_penalty_splits_exactly():
    graph = check_source("""
model m {
  input x: [3]
  label y: class[2]
  param W: [3, 2]
  h = matmul(x, W)
  loss = cross_entropy(h, y) + 0.1 * sum(W * W)
}""")
    assert split_blocker(graph) is None
    program = Program(graph, seed=0)
    feeds = random_feeds(program, 5)
    loss, grads = _serial(program, feeds)
    with ParallelStep(program, 2) as step:
        values, split = step.forward_backward(feeds)
    assert abs(program.loss_value(values) - loss) <= 1e-6 * abs(loss)
    for p in program.params:
        np.testing.assert_allclose(split[p], grads[p], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("body,reason", [
    ("h = linear(x, 4) -> batchnorm -> relu\n  logits = linear(h, 2)\n  loss = cross_entropy(logits, y)",
     "running statistics"),
    ("h = linear(x, 2)\n  loss = kl_div(log_softmax(h), softmax(h), reduction=\"sum\")", "other than by a mean"),
    ("h = linear(x, 2)\n  loss = cross_entropy(h, y) * cross_entropy(h, y)", "other than by a mean"),
])
def test_models_that_mix_samples_keep_the_serial_step(body, reason):
    graph = check_source(f"model m {{\n  input x: [3]\n  label y: class[2]\n  {body}\n}}")
    assert reason in split_blocker(graph)
    assert choose_parts(graph, 2, "batch") == 1
    program = Program(graph, seed=0)
    with pytest.raises(GraphcError, match="cannot split the batch"):
        ParallelStep(program, 2)
    parts, step = training_step(program, 2, "batch")
    assert parts == 1
    values, grads = step(random_feeds(program, 4))
    assert set(program.params) <= set(grads)


def test_the_rule_splits_what_it_can_unless_told_to_use_blas_threads():
    conv, mlp = compile_file(MODELS / "lenet5.nn").graph, compile_file(MODELS / "mlp.nn").graph
    assert choose_parts(conv, 2) == 2 and choose_parts(mlp, 3) == 3
    assert choose_parts(mlp, 2, "blas") == 1 and choose_parts(conv, 2, "blas") == 1
    assert choose_parts(conv, 1) == 1 and choose_parts(mlp, 1, "batch") == 1


def test_dropout_masks_are_reproducible_for_a_seed():
    source = DIGITS_CNN.replace("DROPOUT", "dropout(0.5)")
    results = []
    for _ in range(2):
        program = Program(check_source(source), seed=7)
        feeds = random_feeds(program, 12, seed=1)
        with ParallelStep(program, 2) as step:
            results.append(step.forward_backward(feeds)[1])
    for p in results[0]:
        np.testing.assert_array_equal(results[0][p], results[1][p])


def _setup(source: str):
    graph = check_source(source)
    cfg = train_config(graph)
    program = Program(graph, seed=cfg.seed, init=cfg.init)
    return program, cfg, TrainData.load(program, cfg, limit=300)


def test_training_split_across_threads_follows_the_serial_run(tmp_path):
    source = DIGITS_CNN.replace("-> DROPOUT", "")
    weights = {}
    for threads in (1, 2):
        program, cfg, data = _setup(source)
        result = train(program, cfg, data, tmp_path / str(threads), threads=threads)
        assert ("threads" in result.settings) == (threads == 2)
        weights[threads] = load_arrays(tmp_path / str(threads) / "weights.npz")[0]
    for name in weights[1]:
        np.testing.assert_allclose(weights[2][name], weights[1][name], rtol=1e-3, atol=1e-4, err_msg=name)


def test_a_split_run_resumes_bit_identically_and_only_with_the_same_split(tmp_path):
    source = DIGITS_CNN.replace("DROPOUT", "dropout(0.2)")
    program, cfg, data = _setup(source)
    train(program, cfg, data, tmp_path / "straight", threads=2)
    one = train_config(program.graph, ["epochs=1"])
    program, _, data = _setup(source)
    train(program, one, data, tmp_path / "resumed", threads=2)
    program, _, data = _setup(source)
    with pytest.raises(GraphcError, match="different train settings"):
        train(program, cfg, data, tmp_path / "resumed", resume=True, threads=1)
    program, _, data = _setup(source)
    train(program, cfg, data, tmp_path / "resumed", resume=True, threads=2)
    straight = load_arrays(tmp_path / "straight" / "weights.npz")[0]
    resumed = load_arrays(tmp_path / "resumed" / "weights.npz")[0]
    assert sorted(straight) == sorted(resumed)
    for name in straight:
        np.testing.assert_array_equal(straight[name], resumed[name], err_msg=name)


def test_run_rejects_a_thread_count_below_one_before_loading_data(capsys):
    from graphc.cli import main
    assert main(["run", str(MODELS / "lenet5.nn"), "--threads", "0", "--data", "/nonexistent"]) == 1
    err = capsys.readouterr().err
    assert "--threads must be at least 1, got 0" in err and "Traceback" not in err
