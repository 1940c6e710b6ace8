"""Settings: a `train` section (and `--set KEY=VALUE`) -> checked values.

Input: syntax.Train, or override strings from the command line. Output: a
dict key -> graph.Setting whose values are plain Python (numbers, strings,
and `(name, kwargs)` pairs for optimizer, init and schedule), with every
unknown key and bad value reported at its line.
"""
from __future__ import annotations

import difflib

from graphc.compiler.graph import Setting
from graphc.diagnostics import Diagnostics
from graphc.language import syntax as S

# key -> (what it holds, for messages)
TRAIN_KEYS = {
    "data": "a dataset name (xor, spiral, digits, mnist, fashion-mnist) or a .npz/.csv path",
    "batch": "the mini-batch size, a whole number >= 1",
    "epochs": "the number of passes over the training data, a whole number >= 1",
    "optimizer": "sgd, momentum, nesterov, adagrad, rmsprop or adam, e.g. sgd(lr=0.1, momentum=0.9)",
    "init": "the default initialiser of weights: zeros, normal(std=0.01), xavier, he, ...",
    "weight_decay": "the L2 penalty on weights, a number >= 0",
    "l1": "the L1 penalty on weights, a number >= 0",
    "schedule": "a learning-rate schedule: constant, step(step_size=2, gamma=0.5), exponential(gamma=0.9), cosine",
    "validation": "the fraction of training data held out for validation, in [0, 1)",
    "seed": "the random seed, a whole number",
    "early_stop": "stop after this many epochs without a better validation loss (0 = never)",
    "scale": "input scaling: unit (to [0, 1]) or standard (zero mean, unit variance)",
}
DEFAULTS = {"batch": 32, "epochs": 1, "optimizer": ("sgd", {"lr": 0.01}), "init": ("he", {}),
            "weight_decay": 0.0, "l1": 0.0, "schedule": ("constant", {}), "validation": 0.0,
            "seed": 0, "early_stop": 0, "scale": "unit"}


class _Bad(Exception):
    pass


def constant(expr):
    """Return the plain value of a constant expression; a call becomes (name, args, kwargs).

    Raises _Bad for anything that is not constant.
    """
    if isinstance(expr, S.Number):
        return expr.value
    if isinstance(expr, S.String):
        return expr.value
    if isinstance(expr, S.Name):
        return {"true": True, "false": False}.get(expr.id, expr.id)
    if isinstance(expr, S.Negate):
        v = constant(expr.operand)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return -v
    if isinstance(expr, S.ListExpr):
        return [constant(i) for i in expr.items]
    if isinstance(expr, S.Call):
        return (expr.func, [constant(a) for a in expr.args],
                {k.name: constant(k.value) for k in expr.keywords})
    raise _Bad()


def resolve_init(expr, diagnostics: Diagnostics, evaluate=None):
    """Return (scheme, kwargs) for an `init=` value, or None after recording an error."""
    from graphc.ops.init import INITIALISERS
    return _named_call(expr, diagnostics, INITIALISERS, "an initialiser")


def _named_call(expr, diagnostics, table, what):
    try:
        value = constant(expr)
    except _Bad:
        diagnostics.error(f"expected {what} name, e.g. `{next(iter(table))}`", expr.span)
        return None
    if isinstance(value, str):
        name, args, kwargs = value, [], {}
    elif isinstance(value, tuple):
        name, args, kwargs = value
    else:
        diagnostics.error(f"expected {what} name, got {value!r}", expr.span,
                          help="choose one of: " + ", ".join(table))
        return None
    if name not in table:
        close = difflib.get_close_matches(name, list(table), n=1)
        diagnostics.error(f"unknown {what.split(' ', 1)[-1]} `{name}`", expr.span,
                          help=(f"did you mean `{close[0]}`? " if close else "") + "choose one of: " + ", ".join(table))
        return None
    allowed = table[name][1] if isinstance(table[name], tuple) else table[name]
    order = list(allowed)
    if len(args) > len(order):
        diagnostics.error(f"`{name}` takes at most {len(order)} arguments, got {len(args)}", expr.span,
                          help=f"its arguments: {', '.join(order) or 'none'}")
        return None
    merged = dict(zip(order, args))
    for k, v in kwargs.items():
        if k not in allowed:
            close = difflib.get_close_matches(k, order, n=1)
            diagnostics.error(f"`{name}` has no argument `{k}`", expr.span,
                              help=(f"did you mean `{close[0]}`? " if close else "")
                              + f"its arguments: {', '.join(order) or 'none'}")
            return None
        merged[k] = v
    return name, merged


def resolve_train(train: S.Train, diagnostics: Diagnostics) -> dict[str, Setting]:
    """Return the checked settings of a train section (defaults filled in for absent keys)."""
    settings: dict[str, Setting] = {}
    for setting in train.settings:
        if setting.key in settings:
            diagnostics.error(f"`{setting.key}` is set twice", setting.key_span,
                              help="remove one of the two lines")
            continue
        value = check_setting(setting.key, setting.value, diagnostics, setting.key_span)
        if value is not None:
            settings[setting.key] = Setting(setting.key, value, setting.span)
    for key, value in DEFAULTS.items():
        settings.setdefault(key, Setting(key, value, None))
    return settings


def check_setting(key: str, expr, diagnostics: Diagnostics, key_span):
    """Return the checked value of one setting, or None after recording an error."""
    if key not in TRAIN_KEYS:
        close = difflib.get_close_matches(key, list(TRAIN_KEYS), n=1)
        diagnostics.error(f"unknown train setting `{key}`", key_span,
                          help=(f"did you mean `{close[0]}`? " if close else "")
                          + "settings: " + ", ".join(TRAIN_KEYS))
        return None
    if key in ("optimizer", "schedule", "init"):
        from graphc.ops.init import INITIALISERS
        from graphc.training.optim import OPTIMIZERS, SCHEDULES
        table = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "init": INITIALISERS}[key]
        return _named_call(expr, diagnostics, table, {"optimizer": "an optimizer", "schedule": "a schedule",
                                                      "init": "an initialiser"}[key])
    try:
        value = constant(expr)
    except _Bad:
        diagnostics.error(f"`{key}` must be a constant: {TRAIN_KEYS[key]}", expr.span)
        return None
    ok = {
        "data": lambda v: isinstance(v, str),
        "batch": lambda v: _int(v) and v >= 1,
        "epochs": lambda v: _int(v) and v >= 1,
        "seed": lambda v: _int(v) and v >= 0,
        "early_stop": lambda v: _int(v) and v >= 0,
        "weight_decay": lambda v: _num(v) and v >= 0,
        "l1": lambda v: _num(v) and v >= 0,
        "validation": lambda v: _num(v) and 0 <= v < 1,
        "scale": lambda v: v in ("unit", "standard"),
    }[key]
    if not ok(value):
        diagnostics.error(f"bad value for `{key}`: {_show(value)}", expr.span, help=f"`{key}` is {TRAIN_KEYS[key]}")
        return None
    return float(value) if key in ("weight_decay", "l1", "validation") else value


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _show(v) -> str:
    if isinstance(v, tuple):
        return f"{v[0]}(...)"
    return repr(v) if not isinstance(v, str) else f"`{v}`"
