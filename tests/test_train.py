"""Training through `graphc run`: determinism, resume after a kill, damaged files, data/model
mismatches, the NaN guard, regularisation and settings, XOR, and the files a run writes.

Everything runs in-process through `graphc.cli.main` on small offline data (digits, xor,
generated .npz files); only the kill test needs a subprocess.
"""
from __future__ import annotations

import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from paths import MODELS, REPO

from graphc.training.checkpoint import load_arrays
from graphc.training.data import load_dataset, split_validation
from graphc.training.trainer import format_metrics

TIMING = re.compile(r'\n\s*"(seconds|samples_per_s)": [^\n]*')

# A small MLP on the 8x8 digits: a run of a few hundred samples takes a fraction of a second.
TINY = """
model tiny {
  input x: [64]
  label y: class[10]
  h = linear(x, 32) -> relu
  logits = linear(h, 10)
  loss = cross_entropy(logits, y)
}
train { data = digits; batch = 64; epochs = 2; optimizer = sgd(lr=0.1, momentum=0.9); seed = 3 }
"""

# Dropout and batchnorm draw noise and keep running statistics: both must replay exactly.
NOISY = """
model noisy {
  input x: [64]
  label y: class[10]
  h = linear(x, 48) -> batchnorm -> relu -> dropout(0.3)
  logits = linear(h, 10)
  loss = cross_entropy(logits, y)
}
train { data = digits; batch = 50; epochs = 2; optimizer = adam(lr=0.01); validation = 0.1; seed = 5 }
"""


def write(tmp_path: Path, text: str, name: str = "model.nn") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def weights(path: Path) -> dict:
    arrays, _ = load_arrays(path)
    return arrays


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert sorted(wa) == sorted(wb)
    for name in wa:
        assert wa[name].dtype == wb[name].dtype, name
        assert np.array_equal(wa[name], wb[name]), f"{name} differs"


def untimed(out: Path) -> str:
    """Return metrics.json's text with the timing lines (seconds, samples_per_s) removed."""
    return TIMING.sub("", (out / "metrics.json").read_text())


# ---------------------------------------------------------------------------------------------
# 1. Determinism

@pytest.mark.parametrize("model, extra", [
    ("digits_cnn", ["--set", "epochs=2", "--limit", "500"]),
    ("noisy", []),
])
def test_same_seed_gives_identical_metrics_and_weights(graphc_run, tmp_path, model, extra):
    path = MODELS / "digits_cnn.nn" if model == "digits_cnn" else write(tmp_path, NOISY)
    for run in ("a", "b"):
        status, _, err = graphc_run("run", path, "--out", tmp_path / run, "--quiet", *extra)
        assert status == 0, err
    text = untimed(tmp_path / "a")
    assert '"seconds"' not in text and '"val_loss"' in text
    assert text == untimed(tmp_path / "b")
    assert_same_weights(tmp_path / "a" / "weights.npz", tmp_path / "b" / "weights.npz")
    assert_same_weights(tmp_path / "a" / "checkpoint.npz", tmp_path / "b" / "checkpoint.npz")


def test_another_seed_gives_other_weights(graphc_run, tmp_path):
    path = write(tmp_path, TINY)
    for run, seed in (("a", "3"), ("b", "4")):
        assert graphc_run("run", path, "--out", tmp_path / run, "--quiet", "--seed", seed, "--limit", "300")[0] == 0
    wa, wb = weights(tmp_path / "a" / "weights.npz"), weights(tmp_path / "b" / "weights.npz")
    assert not np.array_equal(wa["h.weight"], wb["h.weight"])
    assert metrics(tmp_path / "b")["settings"]["seed"] == 4


# ---------------------------------------------------------------------------------------------
# 2. Resume

def _checkpoint_epoch(path: Path) -> int | None:
    try:
        return int(load_arrays(path)[1]["epoch"])
    except Exception:          # not written yet (the file only ever appears complete)
        return None


def test_resume_after_sigkill_is_bit_exact(graphc_run, tmp_path):
    # Many short epochs of a model with dropout noise, batchnorm statistics, Adam moments and a
    # validation split: everything a resumed run must restore. Checkpoints come at most once a
    # second, so the run must last a few seconds to be killed between two of them.
    epochs = 50
    argv = ["run", str(write(tmp_path, NOISY)), "--set", f"epochs={epochs}", "--set", "batch=16"]
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "graphc", *argv, "--quiet", "--out", str(killed)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            epoch = _checkpoint_epoch(killed / "checkpoint.npz")
            if epoch is not None and 1 <= epoch < epochs:
                proc.send_signal(signal.SIGKILL)    # in the middle of the next epoch
                break
            time.sleep(0.02)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode == 0:
        pytest.skip("the run finished before a mid-run checkpoint appeared (machine too fast to interrupt)")
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    proc.stderr.close()
    saved = _checkpoint_epoch(killed / "checkpoint.npz")
    assert saved is not None and 1 <= saved < epochs
    assert not (killed / "weights.npz").exists()      # it never got to the end

    status, out, err = graphc_run(*argv, "--out", killed, "--resume")
    assert status == 0, err
    assert f"resuming noisy after epoch {saved} from" in out
    reference = tmp_path / "reference"
    status, _, err = graphc_run(*argv, "--out", reference, "--quiet")
    assert status == 0, err

    assert_same_weights(killed / "weights.npz", reference / "weights.npz")
    assert untimed(killed) == untimed(reference)
    assert [r["epoch"] for r in metrics(killed)["epochs"]] == list(range(1, epochs + 1))


def test_resume_without_checkpoint_is_an_error(graphc_run, tmp_path):
    status, out, err = graphc_run("run", write(tmp_path, TINY), "--out", tmp_path / "none", "--resume")
    assert status == 1
    assert "nothing to resume" in err and str(tmp_path / "none" / "checkpoint.npz") in err


def test_resume_with_changed_settings_is_an_error(graphc_run, tmp_path):
    path, out = write(tmp_path, TINY), tmp_path / "out"
    assert graphc_run("run", path, "--out", out, "--quiet", "--set", "epochs=1", "--limit", "200")[0] == 0
    before = (out / "checkpoint.npz").read_bytes()
    status, _, err = graphc_run("run", path, "--out", out, "--resume", "--set", "batch=128")
    assert status == 1
    assert "different train settings" in err
    assert "batch: checkpoint 64, now 128" in err
    assert (out / "checkpoint.npz").read_bytes() == before
    # more epochs is what resuming is for: allowed
    status, text, err = graphc_run("run", path, "--out", out, "--resume", "--set", "epochs=2", "--limit", "200")
    assert status == 0, err
    assert "resuming tiny after epoch 1" in text
    assert [r["epoch"] for r in metrics(out)["epochs"]] == [1, 2]


def test_resume_with_another_model_is_an_error(graphc_run, tmp_path):
    out = tmp_path / "out"
    assert graphc_run("run", write(tmp_path, TINY), "--out", out, "--quiet", "--limit", "100")[0] == 0
    status, _, err = graphc_run("run", MODELS / "xor.nn", "--out", out, "--resume")
    assert status == 1
    assert "`tiny`" in err and "`xor`" in err


def test_resume_from_a_weights_file_is_an_error(graphc_run, tmp_path):
    path, out = write(tmp_path, TINY), tmp_path / "out"
    assert graphc_run("run", path, "--out", out, "--quiet", "--limit", "100")[0] == 0
    (out / "checkpoint.npz").write_bytes((out / "weights.npz").read_bytes())
    status, _, err = graphc_run("run", path, "--out", out, "--resume")
    assert status == 1
    assert f"{out / 'checkpoint.npz'} is not a training checkpoint" in err


# ---------------------------------------------------------------------------------------------
# 3. Damaged and mismatched files

@pytest.fixture
def trained(graphc_run, tmp_path):
    """Return (model path, output directory) of a finished one-epoch run of TINY."""
    path, out = write(tmp_path, TINY), tmp_path / "out"
    status, _, err = graphc_run("run", path, "--out", out, "--quiet", "--set", "epochs=1", "--limit", "200")
    assert status == 0, err
    return path, out


@pytest.mark.parametrize("damage", ["truncated", "garbage", "zip-garbage", "empty"])
def test_damaged_checkpoint_on_resume(graphc_run, trained, damage):
    path, out = trained
    ckpt = out / "checkpoint.npz"
    data = ckpt.read_bytes()
    ckpt.write_bytes({"truncated": data[:len(data) // 2], "garbage": os.urandom(4096),
                      "zip-garbage": b"PK\x03\x04" + os.urandom(4096), "empty": b""}[damage])
    status, _, err = graphc_run("run", path, "--out", out, "--resume", "--set", "epochs=2")
    assert status == 1
    assert str(ckpt) in err.splitlines()[0]


@pytest.mark.parametrize("content", [b"not a weights file\n", b"", b"PK\x05\x06" + b"\0" * 18])
def test_garbage_weights_file(graphc_run, trained, content):
    path, out = trained
    bad = out.parent / "bad.npz"
    bad.write_bytes(content)
    status, text, err = graphc_run("run", path, "--eval", "--weights", bad)
    assert status == 1
    assert str(bad) in err.splitlines()[0]
    assert text == ""


def test_weights_of_another_model_list_the_differences(graphc_run, trained, tmp_path):
    path, out = trained
    assert graphc_run("run", MODELS / "xor.nn", "--out", tmp_path / "xor", "--quiet", "--set", "epochs=1")[0] == 0
    xor_weights = tmp_path / "xor" / "weights.npz"
    status, _, err = graphc_run("run", path, "--eval", "--weights", xor_weights)
    assert status == 1
    assert f"{xor_weights} does not match the model" in err
    assert "h.weight: file [2, 4], model [64, 32]" in err
    assert "logits.weight: file [4, 2], model [32, 10]" in err


def test_weights_missing_and_extra_names(graphc_run, trained, tmp_path):
    path, out = trained
    arrays = weights(out / "weights.npz")
    arrays["extra.weight"] = np.zeros((3, 3), np.float32)
    del arrays["logits.bias"]
    np.savez(tmp_path / "edited.npz", **arrays)
    status, _, err = graphc_run("run", path, "--eval", "--weights", tmp_path / "edited.npz")
    assert status == 1
    assert "logits.bias: missing from the file (model [10])" in err
    assert "extra.weight: in the file [3, 3], but the model has no such parameter" in err


def test_checkpoint_loads_as_weights(graphc_run, trained):
    path, out = trained
    status_w, from_weights, _ = graphc_run("run", path, "--eval", "--weights", out / "weights.npz")
    status_c, from_checkpoint, _ = graphc_run("run", path, "--eval", "--weights", out / "checkpoint.npz")
    assert status_w == status_c == 0
    assert from_weights == from_checkpoint and from_weights.startswith("test: ")


# ---------------------------------------------------------------------------------------------
# 4. Dataset / model mismatches and bad settings

def test_input_shape_mismatch_names_both_shapes(graphc_run):
    status, _, err = graphc_run("run", MODELS / "lenet5.nn", "--data", "digits")
    assert status == 1
    assert "[64]" in err and "[1, 28, 28]" in err and "`image`" in err


def test_too_few_classes(graphc_run, tmp_path):
    path = write(tmp_path, TINY.replace("class[10]", "class[5]").replace("linear(h, 10)", "linear(h, 5)"))
    status, _, err = graphc_run("run", path, "--out", tmp_path / "out")
    assert status == 1
    assert "5 classes" in err and "0..9" in err and "`y`" in err


@pytest.mark.parametrize("argv, expected", [
    (["--data", "mnsit"], "did you mean `mnist`?"),
    (["--set", "data=digts"], "did you mean `digits`?"),
    (["--set", "batch=0"], "bad value for `batch`: 0"),
    (["--set", "optimiser=adam"], "did you mean `optimizer`?"),
    (["--set", "optimizer=adamm(lr=0.1)"], "did you mean `adam`?"),
    (["--set", "validation=1.5"], "bad value for `validation`"),
    (["--set", "schedule=step(gamma=0.5)"], "needs step_size"),
    (["--set", "optimizer=sgd(lr=-1)"], "lr"),
    (["--set", "batch"], "is not KEY=VALUE"),
    (["--limit", "0"], "--limit must be at least 1"),
    (["--limit", "-5"], "--limit must be at least 1"),
    (["--epochs", "0"], "--epochs must be at least 1"),
])
def test_bad_settings_are_diagnostics(graphc_run, tmp_path, argv, expected):
    status, _, err = graphc_run("run", write(tmp_path, TINY), "--out", tmp_path / "out", *argv)
    assert status == 1, err
    assert expected in err
    assert not (tmp_path / "out" / "weights.npz").exists()


# ---------------------------------------------------------------------------------------------
# 5. The NaN guard

def test_log_of_negative_names_the_node(graphc_run, tmp_path):
    # h's buffer is reused for z: the guard must blame z (the log), not h.
    path = write(tmp_path, """
model neglog {
  input x: [64]
  label y: class[10]
  h = linear(x, 10)
  z = log(h - 100)
  loss = cross_entropy(z, y)
}
train { data = digits; batch = 32; epochs = 1 }
""")
    status, _, err = graphc_run("run", path, "--out", tmp_path / "out", "--quiet")
    assert status == 1
    first = err.splitlines()[0]
    assert f"{path}:6:7: error: `z` (log) produced NaN or Inf in epoch 1, step 1" == first
    assert "RuntimeWarning" not in err


def test_nonfinite_gradient_names_the_node(graphc_run, tmp_path):
    # sqrt's gradient is infinite at the zeros relu makes: the loss is finite, the weights would turn NaN.
    path = write(tmp_path, """
model sqrt {
  input x: [64]
  label y: class[10]
  h = linear(x, 10) -> relu
  z = pow(h, 0.5)
  loss = cross_entropy(z, y)
}
train { data = digits; batch = 32; epochs = 1 }
""")
    status, _, err = graphc_run("run", path, "--out", tmp_path / "out", "--quiet")
    assert status == 1
    assert err.splitlines()[0] == (f"{path}:6:7: error: the gradient flowing back through `z` (pow) "
                                   "became NaN or Inf in epoch 1, step 1")


def test_divergence_names_node_epoch_and_step(graphc_run, tmp_path):
    # Regression with sgd(lr=1e6): the outputs grow ~1e6-fold a step until the squared error overflows.
    path = write(tmp_path, """
model blowup {
  input x: [64]
  label y: [10]
  h = linear(x, 32) -> relu
  out = linear(h, 10)
  loss = mse(out, y)
}
train { data = digits; batch = 32; epochs = 3; optimizer = sgd(lr=1e6) }
""")
    status, _, err = graphc_run("run", path, "--out", tmp_path / "out", "--quiet")
    assert status == 1
    match = re.search(r"error: `(\w+)` \((\w+)\) produced NaN or Inf in epoch (\d+), step (\d+)", err)
    assert match, err
    node, op, epoch, step = match.groups()
    assert (node, op) in {("loss", "mse"), ("out", "linear"), ("h", "linear")}
    assert epoch == "1" and int(step) > 1
    assert not (tmp_path / "out" / "weights.npz").exists()


# ---------------------------------------------------------------------------------------------
# 6. Regularisation and settings

REG = """
model reg {
  input x: [64]
  label y: class[10]
  h = linear(x, 16) -> tanh
  param W: [16, 10] init=xavier
  param b: [10] init=normal(std=0.1) decay=false
  logits = h @ W + b
  loss = cross_entropy(logits, y)
}
train { data = digits; batch = 256; epochs = 1; optimizer = sgd(lr=0.5); seed = 2 }
"""


def test_weight_decay_and_l1_one_step_follow_the_rule(graphc_run, tmp_path):
    """One full-batch SGD step: p1 = p0 - lr * (g + wd * p0 + l1 * sign(p0)) on weights; biases untouched."""
    path, lr, wd, l1 = write(tmp_path, REG), 0.5, 0.1, 0.01
    runs = {"init": ["optimizer=sgd(lr=0)"], "plain": [], "wd": [f"weight_decay={wd}"], "l1": [f"l1={l1}"]}
    w = {}
    for name, sets in runs.items():
        argv = ["run", path, "--out", tmp_path / name, "--quiet", "--limit", "256"]
        for s in sets:
            argv += ["--set", s]
        status, _, err = graphc_run(*argv)
        assert status == 0, err
        assert len(metrics(tmp_path / name)["epochs"]) == 1
        w[name] = weights(tmp_path / name / "weights.npz")
    p0, plain = w["init"], w["plain"]
    for name in ("h.weight", "W"):
        assert np.allclose(w["wd"][name], plain[name] - lr * wd * p0[name], rtol=0, atol=2e-6), name
        assert np.allclose(w["l1"][name], plain[name] - lr * l1 * np.sign(p0[name]), rtol=0, atol=2e-6), name
        assert not np.array_equal(w["wd"][name], plain[name])
    for name in ("h.bias", "b"):             # a layer's bias, and a param with decay=false
        assert np.array_equal(w["wd"][name], plain[name]), name
        assert np.array_equal(w["l1"][name], plain[name]), name


@pytest.mark.parametrize("key, norm", [("weight_decay=0.05", 2), ("l1=0.002", 1)])
def test_regularisation_shrinks_weights(graphc_run, tmp_path, key, norm):
    path = write(tmp_path, TINY)
    for name, sets in (("off", []), ("on", ["--set", key])):
        status, _, err = graphc_run("run", path, "--out", tmp_path / name, "--quiet", "--limit", "640", *sets)
        assert status == 0, err
    off, on = weights(tmp_path / "off" / "weights.npz"), weights(tmp_path / "on" / "weights.npz")
    for name in ("h.weight", "logits.weight"):
        assert np.linalg.norm(on[name].ravel(), norm) < 0.97 * np.linalg.norm(off[name].ravel(), norm), name


def test_step_schedule_halves_lr_each_epoch(graphc_run, tmp_path):
    out = tmp_path / "out"
    status, _, err = graphc_run("run", write(tmp_path, TINY), "--out", out, "--quiet", "--limit", "128",
                                "--set", "epochs=4", "--set", "schedule=step(step_size=1, gamma=0.5)")
    assert status == 0, err
    assert [r["lr"] for r in metrics(out)["epochs"]] == pytest.approx([0.1, 0.05, 0.025, 0.0125], rel=1e-12)


def test_validation_split_reports_val_metrics(graphc_run, tmp_path):
    n = len(load_dataset("digits", seed=3).x_train)
    n_val = round(n * 0.2)
    out = tmp_path / "out"
    status, text, err = graphc_run("run", write(tmp_path, TINY), "--out", out, "--set", "validation=0.2")
    assert status == 0, err
    assert f"train {n - n_val:,} / val {n_val:,} / test 359 samples" in text
    history = metrics(out)["epochs"]
    assert len(history) == 2
    for r in history:
        assert r["val_loss"] > 0 and 0 <= r["val_accuracy"] <= 1
        assert round(r["val_accuracy"] * n_val) == pytest.approx(r["val_accuracy"] * n_val)
    assert (out / "best.npz").exists()


EARLY = """
model early {
  input x: [2]
  label y: class[2]
  logits = linear(x, 2)
  loss = cross_entropy(logits, y)
}
train { data = "DATA"; batch = 20; epochs = 10; optimizer = sgd(lr=0.5); validation = 0.2; seed = 1 }
"""


def _early_stop_model(tmp_path: Path) -> Path:
    """Return a model whose validation loss rises every epoch: validation labels are the training rule negated."""
    n = 200
    x = np.random.default_rng(0).standard_normal((n, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    val = split_validation(np.arange(n), np.arange(n), 0.2, 1)[2]      # the samples the run will hold out
    y[val] = 1 - y[val]
    np.savez(tmp_path / "flipped.npz", x_train=x, y_train=y, x_test=x[:20], y_test=y[:20])
    return write(tmp_path, EARLY.replace("DATA", str(tmp_path / "flipped.npz")))


def test_early_stop_on_rising_validation_loss(graphc_run, tmp_path):
    path = _early_stop_model(tmp_path)
    status, _, err = graphc_run("run", path, "--out", tmp_path / "full", "--quiet")
    assert status == 0, err
    val = [r["val_loss"] for r in metrics(tmp_path / "full")["epochs"]]
    assert len(val) == 10 and all(a < b for a, b in zip(val, val[1:]))      # the construction works

    out = tmp_path / "stopped"
    status, text, err = graphc_run("run", path, "--out", out, "--set", "early_stop=1")
    assert status == 0, err
    assert "early stop" in text
    assert [r["epoch"] for r in metrics(out)["epochs"]] == [1, 2]
    assert weights(out / "best.npz")["logits.weight"].shape == (2, 2)
    # Resuming a run that stopped early trains no further: the weights an uninterrupted run has.
    before = weights(out / "weights.npz")
    status, text, err = graphc_run("run", path, "--out", out, "--set", "early_stop=1", "--resume")
    assert status == 0, err
    assert [r["epoch"] for r in metrics(out)["epochs"]] == [1, 2]
    after = weights(out / "weights.npz")
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_init_zeros_warns(graphc_run, tmp_path):
    status, _, err = graphc_run("run", write(tmp_path, TINY), "--out", tmp_path / "out", "--quiet",
                                "--limit", "64", "--set", "init=zeros")
    assert status == 0, err
    assert "warning: weights `h.weight` start at zero" in err
    assert "warning: weights `logits.weight` start at zero" in err
    assert "bias" not in err
    status, _, err = graphc_run("run", write(tmp_path, TINY), "--out", tmp_path / "out", "--quiet", "--limit", "64")
    assert "warning" not in err


def test_eval_with_weights_reproduces_test_metrics(graphc_run, tmp_path):
    path, out = write(tmp_path, NOISY), tmp_path / "out"
    status, _, err = graphc_run("run", path, "--out", out, "--quiet")
    assert status == 0, err
    test = metrics(out)["test"]
    assert 0 < test["accuracy"] <= 1 and test["samples"] == 359
    status, text, err = graphc_run("run", path, "--eval", "--weights", out / "weights.npz", "--quiet")
    assert status == 0, err
    assert text == f"test: {format_metrics(test)}\n"
    # without --weights, --eval evaluates the run's own <out>/weights.npz, and says so
    status, text, err = graphc_run("run", path, "--eval", "--out", out, "--quiet")
    assert status == 0, err
    assert text == f"test: {format_metrics(test)}\n" and f"evaluating {out / 'weights.npz'}" in err
    # a folder without weights is an error: fresh weights would give meaningless numbers
    status, text, err = graphc_run("run", path, "--eval", "--out", tmp_path / "none")
    assert status == 1 and text == "" and "nothing to evaluate" in err


def test_eval_without_a_test_split(graphc_run, tmp_path):
    x = np.random.default_rng(0).standard_normal((40, 2)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=(x[:, 1] > 0).astype(np.int64))
    path = write(tmp_path, EARLY.replace("DATA", str(tmp_path / "d.npz")).replace("validation = 0.2;", ""))
    status, _, err = graphc_run("run", path, "--out", tmp_path / "out", "--quiet", "--set", "epochs=1")
    assert status == 0, err
    assert metrics(tmp_path / "out")["test"] == {}
    status, text, err = graphc_run("run", path, "--eval", "--weights", tmp_path / "out" / "weights.npz")
    assert status == 0, err
    assert text.startswith("train (no test split") and "acc" in text


# ---------------------------------------------------------------------------------------------
# 7. XOR

def test_xor_reaches_full_accuracy(graphc_run, tmp_path):
    status, _, err = graphc_run("run", MODELS / "xor.nn", "--out", tmp_path / "out", "--quiet")
    assert status == 0, err
    result = metrics(tmp_path / "out")
    assert result["test"]["accuracy"] == 1.0
    assert len(result["epochs"]) == 2000
    assert result["epochs"][-1]["train_loss"] < 0.05


# ---------------------------------------------------------------------------------------------
# 9. The files a run writes

def test_outputs_curves_and_metrics(graphc_run, tmp_path):
    out = tmp_path / "out"
    status, text, err = graphc_run("run", MODELS / "digits_cnn.nn", "--out", out, "--set", "epochs=2",
                                   "--limit", "400")
    assert status == 0, err
    assert f"wrote {out}/weights.npz, metrics.json, curves.png" in text
    for name in ("weights.npz", "metrics.json", "curves.png", "checkpoint.npz"):
        assert (out / name).stat().st_size > 0, name
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR" and png.endswith(b"IEND\xaeB`\x82")
    width, height = struct.unpack(">II", png[16:24])
    assert width >= 200 and height >= 100
    import matplotlib.image
    assert matplotlib.image.imread(out / "curves.png").shape[:2] == (height, width)
    assert not list(out.glob("*.tmp*"))

    result = metrics(out)
    assert result["model"] == "digits_cnn" and result["data"] == "digits"
    assert result["parameters"] == sum(a.size for a in weights(out / "weights.npz").values())
    history = result["epochs"]
    assert [r["epoch"] for r in history] == [1, 2]
    for r in history:
        for key in ("train_loss", "val_loss"):
            assert np.isfinite(r[key]) and r[key] > 0, key
        for key in ("train_accuracy", "val_accuracy"):
            assert 0 <= r[key] <= 1, key
        assert r["lr"] == 0.003
    assert history[1]["train_loss"] < history[0]["train_loss"]
    test = result["test"]
    assert set(test) == {"loss", "accuracy", "samples"} and test["samples"] == 359
    assert test["accuracy"] > 0.5
    meta = load_arrays(out / "checkpoint.npz")[1]
    assert meta["epoch"] == 2 and meta["model"] == "digits_cnn"
