"""Train configuration and `init=`: one constant evaluator, one defaults table, one signature checker.

Regression tests for two bugs: an `init=` option inside a block was read by a
second evaluator (an undefined name became the string 's'; `0.1 * 2` was
rejected), and `optimizer = sgd` trained at lr 0.001 while an absent optimizer
meant sgd at lr 0.01.
"""
from __future__ import annotations

import numpy as np
import pytest

from graphc.diagnostics import GraphcError
from graphc.ops.init import initialise
from graphc.program import Program, check_source
from graphc.training.config import DEFAULTS, TRAIN_KEYS, train_config
from graphc.training.optim import make_optimizer, make_schedule

MODEL = """\
model m {
  input x: [2]
  label y: class[2]
  loss = cross_entropy(linear(x, 2), y)
}
"""


def lr_of(train_section: str) -> float:
    graph = check_source(MODEL + train_section, "t.nn")
    cfg = train_config(graph)
    return make_optimizer(cfg.optimizer[0], Program(graph).params, **cfg.optimizer[1]).lr


# ---- bug 2: one defaults table per optimizer ------------------------------------------------------

def test_sgd_default_lr_is_the_same_however_it_is_written():
    assert lr_of("train { data = xor }\n") == 0.01
    assert lr_of("train { data = xor; optimizer = sgd }\n") == 0.01
    assert lr_of("train { data = xor; optimizer = sgd() }\n") == 0.01
    assert lr_of("train { data = xor; optimizer = sgd(lr=0.01) }\n") == 0.01


def test_an_absent_setting_and_its_default_written_out_configure_the_same_run():
    absent = train_config(check_source(MODEL + "train { data = xor }\n", "t.nn"))
    written = train_config(check_source(MODEL + "train { data = xor; optimizer = sgd; init = he; "
                                        "schedule = constant }\n", "t.nn"))
    assert absent == written and absent.fingerprint() == written.fingerprint()


def test_defaults_cover_every_key_but_data():
    assert set(DEFAULTS) == set(TRAIN_KEYS) - {"data"}
    graph = check_source(MODEL, "t.nn")   # no train section: the same defaults
    cfg = train_config(graph, data="xor")
    assert (cfg.batch, cfg.epochs, cfg.optimizer, cfg.seed) == (32, 1, ("sgd", {}), 0)


# ---- bug 1: one constant evaluator, for init= and train settings ---------------------------------

BLOCK = """\
block noisy(x, s) {
  param w: [2, 2] init=normal(std=s)
  return x @ w
}
"""


def test_init_option_takes_a_block_argument():
    graph = check_source(BLOCK + "model m {\n  input x: [2]\n  output o = noisy(x, 0.5)\n}\n", "t.nn")
    assert graph.params["o.w"].init == "normal" and graph.params["o.w"].init_args == {"std": 0.5}


def test_init_option_takes_a_constant_expression():
    graph = check_source("model m {\n  input x: [3]\n  param w: [3, 3] init=normal(std=0.1 * 2, mean=-1)\n"
                         "  output o = x @ w\n}\n", "t.nn")
    assert graph.params["w"].init_args == {"std": pytest.approx(0.2), "mean": -1}


def test_init_positional_option_is_named():
    graph = check_source("model m {\n  input x: [3]\n  param w: [3, 3] init=uniform(-1, 1)\n"
                         "  output o = x @ w\n}\n", "t.nn")
    assert graph.params["w"].init_args == {"low": -1, "high": 1}


def test_init_block_argument_is_checked_at_compile_time_where_it_is_used():
    with pytest.raises(GraphcError) as info:
        check_source(BLOCK + "model m {\n  input x: [2]\n  output o = noisy(x, -1)\n}\n", "t.nn")
    d = info.value.diagnostics[0]
    assert d.message == "`std` of `normal` must be a number >= 0, got -1"
    assert any(n.span is not None and n.span.line == 7 for n in d.notes), d.render()


def test_train_settings_take_constant_expressions():
    graph = check_source(MODEL + "train { data = xor; batch = 2 * 8; optimizer = adam(lr=1 / 1000, amsgrad=true);"
                                 " schedule = step(step_size=2 + 1); validation = 1 / 4 }\n", "t.nn")
    cfg = train_config(graph)
    assert cfg.batch == 16 and cfg.validation == 0.25
    assert cfg.optimizer == ("adam", {"lr": 0.001, "amsgrad": True})
    assert cfg.schedule == ("step", {"step_size": 3})


def test_set_override_uses_the_same_evaluator_and_checker():
    graph = check_source(MODEL + "train { data = xor }\n", "t.nn")
    assert train_config(graph, ["optimizer=sgd(lr=0.05 * 2)"]).optimizer == ("sgd", {"lr": 0.1})
    with pytest.raises(GraphcError) as info:
        train_config(graph, ["optimizer=sgd(lr=-1)"])
    assert info.value.diagnostics[0].message == "`lr` of `sgd` must be a number >= 0, got -1"
    assert info.value.diagnostics[0].span.text == "-1"


# ---- one checker: run time says what check time says ---------------------------------------------

@pytest.mark.parametrize("init, kwargs", [
    ("normal(std=-1)", {"std": -1}),
    ("normal(stdev=1)", {"stdev": 1}),
    ("uniform(low=1, high=0)", {"low": 1, "high": 0}),
    ("constant", {}),
    ("xavir", {}),
])
def test_init_errors_are_the_same_at_check_and_run_time(init, kwargs):
    with pytest.raises(GraphcError) as checked:
        check_source(f"model m {{\n  input x: [3]\n  param w: [3, 3] init={init}\n  output o = x @ w\n}}\n", "t.nn")
    with pytest.raises(GraphcError) as ran:
        initialise((3, 3), init.split("(")[0], np.random.default_rng(0), fan_in=3, fan_out=3, **kwargs)
    assert checked.value.diagnostics[0].message == ran.value.diagnostics[0].message
    assert checked.value.diagnostics[0].help == ran.value.diagnostics[0].help


@pytest.mark.parametrize("setting, make", [
    ("optimizer = sgd(lr=-1)", lambda: make_optimizer("sgd", {}, lr=-1)),
    ("optimizer = adam(beta_1=0.5)", lambda: make_optimizer("adam", {}, beta_1=0.5)),
    ("optimizer = sgd(nesterov=true)", lambda: make_optimizer("sgd", {}, nesterov=True)),
    ("optimizer = adma", lambda: make_optimizer("adma", {})),
    ("schedule = step(gamma=0.5)", lambda: make_schedule("step", 0.1, 3, gamma=0.5)),
    ("schedule = step(step_size=0)", lambda: make_schedule("step", 0.1, 3, step_size=0)),
    ("schedule = cosine(t_max=0)", lambda: make_schedule("cosine", 0.1, 3, t_max=0)),
])
def test_optimizer_and_schedule_errors_are_the_same_at_check_and_run_time(setting, make):
    with pytest.raises(GraphcError) as checked:
        check_source(MODEL + f"train {{ {setting} }}\n", "t.nn")
    with pytest.raises(GraphcError) as ran:
        make()
    assert checked.value.diagnostics[0].message == ran.value.diagnostics[0].message
    assert checked.value.diagnostics[0].span is not None and ran.value.diagnostics[0].span is None
