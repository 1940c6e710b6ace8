"""Hostile input (issue 11): valid-looking programs that crashed, checks that hung, runs that asked for
terabytes, and NumPy warnings ahead of our own diagnostics.

Command-line behaviour is tested in a real process (an in-process `main()` would let a traceback escape
into pytest instead of stderr): exit 1 with a diagnostic naming the limit, no traceback, within seconds.
Valid programs must run (exit 0). The op-level sweep runs every registry op on unbatched scalars, the
shape class that broke `x * elu(2)` and `sigmoid` of a `param s: []`.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from op_harness import Case
from paths import REPO

from graphc import cli
from graphc.ops import all_ops
from graphc.runtime.memory import format_bytes, memory_limit

SECONDS = 10   # "a few seconds" with room for a loaded machine: every case here takes about 1 s alone


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One grammar cache for every process of this module (each would rebuild it otherwise)."""
    return tmp_path_factory.mktemp("cache")


def graphc(tmp_path, cache, source: str, *argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Write `source` to m.nn, run `python -m graphc ARGV m.nn` there; return the finished process."""
    (tmp_path / "m.nn").write_text(source)
    environment = {k: v for k, v in os.environ.items() if k not in ("GRAPHC_DATA", "GRAPHC_MEMORY_LIMIT")}
    environment.update(PYTHONPATH=str(REPO), XDG_CACHE_HOME=str(cache), MPLBACKEND="Agg", **(env or {}))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "graphc", *argv, "m.nn"], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - started
    assert "Traceback" not in done.stderr, done.stderr
    assert "RuntimeWarning" not in done.stderr, done.stderr
    assert elapsed < SECONDS, f"took {elapsed:.1f} s"
    return done


def model(*lines: str) -> str:
    """Return `model m { ... }` with one statement a line."""
    return "model m {\n" + "".join(f"  {line}\n" for line in lines) + "}\n"


# ---- 1. valid-looking programs that raised ----------------------------------------------------

RUNS = {
    "activation of a literal": model("input x: [3]", "output o = x * elu(2)"),
    "sigmoid of a scalar param": model("input x: [3]", "param s: []", "output o = x * sigmoid(s)",
                                       "loss = mean(o)"),
    "tanh and prelu of a scalar param": model("input x: [3]", "param s: []",
                                              "output o = x * tanh(s) + prelu(s)", "loss = mean(o)"),
    "backward of mean of a param": model("input x: [3]", "param w: [3]", "loss = mean(w) + mean(x)"),
    "bce with logits over params": model("input x: [3]", "param w: [3]", "param t: [3]",
                                         "loss = binary_cross_entropy_with_logits(w, t) + mean(x)"),
}


@pytest.mark.parametrize("name", RUNS)
def test_valid_looking_programs_run(name, tmp_path, cache):
    done = graphc(tmp_path, cache, RUNS[name], "run")
    assert done.returncode == 0, done.stderr


def test_every_op_runs_forward_and_backward_on_unbatched_scalars():
    # NumPy ufuncs return scalars, not arrays, for 0-d operands: a kernel writing `out=` into such a
    # temporary, or np.ascontiguousarray (which makes 0-d into (1,)), broke here.
    failures = []
    for op in all_ops():
        for sample in op.samples:
            n = len(sample.shapes)
            for variant in (dataclasses.replace(sample, batched=(False,) * n),
                            dataclasses.replace(sample, shapes=((),) * n, batched=(False,) * n)):
                try:
                    case = Case(op, variant, batch=1)
                except Exception:   # the shape rule refuses this variant: nothing to run
                    continue
                try:
                    out, _ = case.forward()
                    grads = case.backward(np.ones(np.shape(out)))
                    assert isinstance(out, np.ndarray), type(out)
                    for g, a in zip(grads, case.args):
                        assert g is None or np.shape(g) == np.shape(a), (np.shape(g), np.shape(a))
                except Exception as error:
                    failures.append(f"{op.name} {variant.shapes} unbatched: {type(error).__name__}: {error}")
    assert not failures, "\n".join(failures[:20])


def test_an_integer_literal_past_pythons_digit_limit_is_a_diagnostic(tmp_path, cache):
    done = graphc(tmp_path, cache, model("input x: [3]", "output o = x * " + "1" * 4301), "check")
    assert done.returncode == 1
    assert "m.nn:3:18: error: a number literal of 4,301 characters is too long (the limit is 100)" in done.stderr
    assert len(done.stderr) < 2000   # the line is clipped, not echoed whole


def test_a_megabyte_number_literal_is_a_diagnostic(tmp_path, cache):
    done = graphc(tmp_path, cache, model("input x: [3]", "output o = x * 1." + "1" * 3_000_000), "check")
    assert done.returncode == 1 and "too long" in done.stderr and len(done.stderr) < 2000


def test_reshape_to_rank_67_is_a_diagnostic(tmp_path, cache):
    dims = ", ".join(["1"] * 67)
    done = graphc(tmp_path, cache, model("input x: [1]", f"output o = reshape(x, [{dims}])"), "run")
    assert done.returncode == 1
    assert "reshape: the result would have 67 axes per sample; the limit is 32" in done.stderr


def test_a_declared_shape_of_40_axes_is_a_diagnostic(tmp_path, cache):
    done = graphc(tmp_path, cache, model(f"input x: [{', '.join(['1'] * 40)}]", "output o = x"), "check")
    assert done.returncode == 1 and "a shape with 40 axes has too many (the limit is 32)" in done.stderr


# ---- 2. hangs and blow-ups at check time ------------------------------------------------------

def test_groupnorm_on_a_prime_channel_count_answers_at_once(tmp_path, cache):
    done = graphc(tmp_path, cache, model("input x: [1000000007]", "output o = groupnorm(x, 2)"), "check")
    assert done.returncode == 1
    assert "1000000007 channels do not split into 2 groups" in done.stderr
    assert "choose one of 1, 1000000007" in done.stderr


def doubling_blocks(levels: int) -> str:
    """Return blocks b1..bN where each uses the one below twice: 2^N additions in the model."""
    blocks = ["block b0(x) {\n  return x + 1\n}\n"]
    blocks += [f"block b{i}(x) {{\n  return b{i - 1}(b{i - 1}(x))\n}}\n" for i in range(1, levels + 1)]
    return "".join(blocks) + model("input x: [2]", f"output o = b{levels}(x)")


def test_blocks_that_double_per_level_hit_the_node_budget(tmp_path, cache):
    done = graphc(tmp_path, cache, doubling_blocks(20), "check")
    assert done.returncode == 1
    assert "error: the model would grow past 50,000 nodes, graphc's limit" in done.stderr


def test_doubling_blocks_within_the_budget_still_build(tmp_path, cache):
    done = graphc(tmp_path, cache, doubling_blocks(6), "check")
    assert done.returncode == 0, done.stderr


def test_nested_repeats_hit_the_node_budget(tmp_path, cache):
    source = ("block lin(x) {\n  return x + 1\n}\n"
              "block inner(x) {\n  return x -> repeat 1000 lin()\n}\n"
              "block outer(x) {\n  return x -> repeat 1000 inner()\n}\n"
              + model("input x: [2]", "output o = x -> outer()"))
    done = graphc(tmp_path, cache, source, "check")
    assert done.returncode == 1 and "would grow past 50,000 nodes" in done.stderr


# ---- 3. allocations no machine has ------------------------------------------------------------

def test_run_refuses_75_gib_with_the_bytes_and_the_limit(tmp_path, cache):
    done = graphc(tmp_path, cache, model("input x: [100000, 100000]", "output o = relu(x)"), "run")
    assert done.returncode == 1
    assert "would need 74.5 GiB (80,000,000,000 bytes)" in done.stderr
    assert f"more than the limit of {format_bytes(memory_limit())}" in done.stderr


def test_run_refuses_terabytes_of_parameters(tmp_path, cache):
    done = graphc(tmp_path, cache, model("input x: [3000]", "output o = linear(x, 250000000)"), "run")
    assert done.returncode == 1
    assert "the parameters of `m` would need 2.73 TiB" in done.stderr


def test_the_memory_limit_can_be_set(tmp_path, cache):
    source = model("input x: [1000, 1000]", "output o = relu(x)")
    done = graphc(tmp_path, cache, source, "run", env={"GRAPHC_MEMORY_LIMIT": "1M"})
    assert done.returncode == 1
    assert "would need 7.63 MiB (8,000,000 bytes), more than the limit of 1 MiB (1,048,576 bytes)" in done.stderr
    assert graphc(tmp_path, cache, source, "run", env={"GRAPHC_MEMORY_LIMIT": "100M"}).returncode == 0
    done = graphc(tmp_path, cache, source, "run", env={"GRAPHC_MEMORY_LIMIT": "lots"})
    assert done.returncode == 1 and "GRAPHC_MEMORY_LIMIT='lots' is not a size in bytes" in done.stderr


# ---- 6. NumPy warnings ahead of our own words ---------------------------------------------------

def test_run_names_the_node_that_overflowed_instead_of_numpys_warning(tmp_path, cache):
    done = graphc(tmp_path, cache, model("input x: [3]", "label y: class[2]",
                                         "h = linear(exp(x * 1000), 2)", "loss = cross_entropy(h, y)"), "run")
    assert done.returncode == 0
    assert "m.nn:4:14: warning: `h.exp` (exp) produced NaN or Inf on these inputs" in done.stderr


def test_inspect_of_a_model_that_overflows_is_a_diagnostic(tmp_path, cache):
    source = model("input x: [3]", "label y: class[2]", "h = linear(x, 4) -> sigmoid",
                   "g = exp(h * 1000) -> relu", "loss = cross_entropy(linear(g, 2), y)")
    done = graphc(tmp_path, cache, source, "inspect", "--batch", "10", "-o", "i.png")
    assert done.returncode == 1
    assert "error: `g.exp` (exp) produced NaN or Inf on this batch" in done.stderr
    done = graphc(tmp_path, cache, source, "inspect", "--gradients", "--batch", "10", "-o", "i.png")
    assert done.returncode == 1 and "NaN or Inf on this batch" in done.stderr


def test_an_unplanned_memory_error_is_a_diagnostic(monkeypatch, capsys):
    # Allocations outside the plan (backward temporaries, a data set) can still run out.
    def out_of_memory(args):
        raise MemoryError("Unable to allocate 74.5 GiB for an array with shape (100000, 100000)")

    monkeypatch.setattr("graphc.cli.check.check_command", out_of_memory)
    assert cli.main(["check", "any.nn"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("graphc: error: out of memory: Unable to allocate 74.5 GiB") and "Traceback" not in err
