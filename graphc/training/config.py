"""Train configuration: a model's train section, plus command-line overrides, -> plain values.

Input: the train section build chose (syntax.Train), and the `graphc run`
options (`--set KEY=VALUE`, `--epochs`, `--batch`, `--seed`, `--data`).
Output: `resolve_train` -> key -> graph.Setting (every unknown key and bad value
reported at its line; called by program.py right after build), and
`train_config` -> a `TrainConfig` the training loop reads.

One defaults table (DEFAULTS), applied in one place (`default_settings`). Values
are evaluated by the compiler's constant rules (compiler/evaluate.py), so
`lr=0.1 * 2` works here as in a model; optimizer, schedule and init calls are
checked against their signatures (training/optim.py, ops/init.py). An override
is parsed and checked exactly like a line of the train section, so a bad value
gets the same diagnostic.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from graphc.compiler.evaluate import Evaluator
from graphc.compiler.graph import Setting
from graphc.compiler.scope import POISON, Const, Scope, Symbol, span_of
from graphc.diagnostics import Diagnostics, GraphcError, did_you_mean
from graphc.language import syntax as S
from graphc.language.parse import parse
from graphc.ops.init import check_initialiser
from graphc.source import SourceFile
from graphc.training.idx_files import holds_idx
from graphc.training.optim import OPTIMIZER_SIGNATURES, check_optimizer, check_schedule

# key -> (what it holds, for messages)
TRAIN_KEYS = {
    "data": "a dataset name (xor, spiral, digits, mnist, fashion_mnist, mnist_halves), a .npz/.csv path (relative to the .nn "
            "file), or none (a loss over parameters only)",
    "batch": "the mini-batch size, a whole number >= 1",
    "epochs": "the number of passes over the training data, a whole number >= 1",
    "optimizer": "sgd, momentum, nesterov, adagrad, rmsprop, adam or adamw, e.g. sgd(lr=0.1, momentum=0.9)",
    "init": "the default initialiser of weights: zeros, normal(std=0.01), xavier, he, ...",
    "weight_decay": "the L2 penalty on weights, a number >= 0",
    "l1": "the L1 penalty on weights, a number >= 0",
    "schedule": "a learning-rate schedule: constant, step(step_size=2, gamma=0.5), exponential(gamma=0.9), cosine; "
                "each takes warmup=EPOCHS, e.g. cosine(warmup=2)",
    "validation": "the fraction of training data held out for validation, in [0, 1)",
    "seed": "the random seed, a whole number",
    "early_stop": "stop after this many epochs without a better validation loss (0 = never)",
    "scale": "input scaling: unit (to [0, 1]) or standard (zero mean, unit variance)",
    "eval_samples": "how many of the first training and test samples to evaluate after each epoch "
                    "(cheap curves; 0 = off), a whole number >= 0",
}
# The value of every setting a train section does not write. Named calls keep only what
# was written: `sgd` takes its lr (0.01) from its signature, as `optimizer = sgd` does.
DEFAULTS = {"batch": 32, "epochs": 1, "optimizer": ("sgd", {}), "init": ("he", {}),
            "weight_decay": 0.0, "l1": 0.0, "schedule": ("constant", {}), "validation": 0.0,
            "seed": 0, "early_stop": 0, "scale": "unit", "eval_samples": 0}
# Settings written as a named call, with the noun for messages and the signature checker.
_NAMED_CALLS = {"optimizer": ("optimizer", check_optimizer), "schedule": ("schedule", check_schedule),
                "init": ("initialiser", check_initialiser)}
_FLOATS = ("weight_decay", "l1", "validation")


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_ACCEPTS = {
    "data": lambda v: isinstance(v, str),
    "batch": lambda v: _whole(v) and v >= 1,
    "epochs": lambda v: _whole(v) and v >= 1,
    "seed": lambda v: _whole(v) and v >= 0,
    "early_stop": lambda v: _whole(v) and v >= 0,
    "weight_decay": lambda v: _number(v) and v >= 0,
    "l1": lambda v: _number(v) and v >= 0,
    "validation": lambda v: _number(v) and 0 <= v < 1,
    "scale": lambda v: v in ("unit", "standard"),
    "eval_samples": lambda v: _whole(v) and v >= 0,
}


def default_settings() -> dict[str, Setting]:
    """Return every setting at its default (no span): what an absent key of a train section means."""
    return {key: Setting(key, value, None) for key, value in DEFAULTS.items()}


def resolve_train(train: S.Train, diagnostics: Diagnostics) -> dict[str, Setting]:
    """Return the checked settings of a train section, defaults filled in for absent keys."""
    evaluator = Evaluator(diagnostics)
    written: dict[str, Setting] = {}
    for setting in train.settings:
        if setting.key in written:
            diagnostics.error(f"`{setting.key}` is set twice", setting.key_span,
                              help="remove one of the two lines")
            continue
        value = check_setting(setting.key, setting.value, evaluator, setting.key_span)
        if value is not None:
            written[setting.key] = Setting(setting.key, value, setting.span)
    return {**default_settings(), **written}


def check_setting(key: str, expr, evaluator: Evaluator, key_span):
    """Return the checked value of one setting, or None after recording an error."""
    if key not in TRAIN_KEYS:
        evaluator.error(f"unknown train setting `{key}`", key_span,
                        help=((did_you_mean(key, TRAIN_KEYS) or "") + " settings: " + ", ".join(TRAIN_KEYS)).strip())
        return None
    scope = Scope("", {}, (), "", ())   # a train section sees no model names: only constants
    if key in _NAMED_CALLS:
        kind, check = _NAMED_CALLS[key]
        return evaluator.named_call(expr, scope, kind, check)
    if isinstance(expr, (S.Call, S.Chain)):
        evaluator.error(f"`{key}` must be a constant: {TRAIN_KEYS[key]}", span_of(expr))
        return None
    hyphenated = _hyphenated(expr) if isinstance(expr, S.BinOp) else None
    if key == "data" and hyphenated:
        evaluator.error(f"`{hyphenated}` reads as a subtraction of names", span_of(expr),
                        help=f"write `{hyphenated.replace('-', '_')}` or \"{hyphenated}\"")
        return None
    value = evaluator.expr(expr, scope, None)
    if value is POISON:
        return None
    value = value.name if isinstance(value, Symbol) else value.value if isinstance(value, Const) else value
    if not _ACCEPTS[key](value):
        evaluator.error(f"bad value for `{key}`: {_show(value)}", span_of(expr),
                        help=f"`{key}` is {TRAIN_KEYS[key]}")
        return None
    return float(value) if key in _FLOATS else value


def _hyphenated(expr) -> str | None:
    """Return `fashion-mnist` for the names-minus-names expression the parser makes of it, else None."""
    if isinstance(expr, S.Name):
        return expr.id
    if isinstance(expr, S.BinOp) and expr.op == "-":
        left, right = _hyphenated(expr.left), _hyphenated(expr.right)
        if left and right:
            return f"{left}-{right}"
    return None


def _show(v) -> str:
    return repr(v) if not isinstance(v, str) else f"`{v}`"


@dataclass
class TrainConfig:
    """Everything the training loop needs to know, as plain values."""

    data: str
    data_dir: str | None
    batch: int
    epochs: int
    optimizer: tuple[str, dict]
    init: tuple[str, dict]
    weight_decay: float
    l1: float
    schedule: tuple[str, dict]
    validation: float
    seed: int
    early_stop: int
    scale: str
    # The folder a relative `data` path written in a train section is read from: the .nn file's, like `include`.
    data_root: str | None = None
    # Measurement only (the weights do not depend on it): not in the fingerprint, so a resumed run may change it.
    eval_samples: int = 0

    def fingerprint(self) -> dict:
        """Return the settings that must match for a checkpoint to be resumed."""
        return {"data": self.data, "batch": self.batch, "optimizer": [self.optimizer[0], self.optimizer[1]],
                "init": [self.init[0], self.init[1]], "weight_decay": self.weight_decay, "l1": self.l1,
                "schedule": [self.schedule[0], self.schedule[1]], "validation": self.validation,
                "seed": self.seed, "scale": self.scale}


def train_config(graph, overrides: list[str] = (), *, epochs=None, batch=None, seed=None,
                 data=None) -> TrainConfig:
    """Return the train configuration of a graph with overrides applied (GraphcError if any is bad)."""
    values = {key: s.value for key, s in (graph.train or default_settings()).items()}
    diagnostics = Diagnostics()
    for item in overrides:
        key, value = _override(item, Evaluator(diagnostics), values["optimizer"])
        if value is not None:
            values[key] = value
    diagnostics.raise_if_errors()
    for key, value, minimum in (("epochs", epochs, 1), ("batch", batch, 1), ("seed", seed, 0)):
        if value is not None:
            if value < minimum:
                raise GraphcError(f"--{key} must be at least {minimum}, got {value}")
            values[key] = value
    data_dir = None
    written = (graph.train or {}).get("data")
    data_root = None
    if written is not None and written.span is not None and values.get("data") == written.value:
        data_root = os.path.dirname(os.path.abspath(written.span.source.path))
    if data is not None:
        if os.path.isdir(data):
            data_dir = data
        else:
            values["data"], data_root = data, None   # a --data path is relative to the current directory
    if "data" not in values and data_dir is not None and holds_idx(Path(data_dir)):
        values["data"] = "mnist"   # --data DIR of MNIST-layout files on a model without a `data` setting
    if "data" not in values:
        raise GraphcError(f"model `{graph.model}` has no `data` setting", span=graph.train_span,
                          help="add `data = mnist` (or digits, xor, spiral, a .npz/.csv path) or pass --data")
    return TrainConfig(data=values["data"], data_dir=data_dir, batch=values["batch"], epochs=values["epochs"],
                       optimizer=values["optimizer"], init=values["init"],
                       weight_decay=values["weight_decay"], l1=values["l1"], schedule=values["schedule"],
                       validation=values["validation"], seed=values["seed"], early_stop=values["early_stop"],
                       scale=values["scale"], data_root=data_root, eval_samples=values.get("eval_samples", 0))


def _override(item: str, evaluator: Evaluator, optimizer: tuple[str, dict]) -> tuple[str, object]:
    """Return (key, checked value or None after an error) of one `--set KEY=VALUE`.

    A KEY that is not a train setting but a keyword of the optimizer (`lr`, `momentum`, or
    `optimizer.lr`) changes that one keyword: the result is ("optimizer", (name, keywords)).
    """
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise GraphcError(f"--set {item!r} is not KEY=VALUE", help="e.g. --set optimizer=adam(lr=0.001) or --set lr=0.1")
    keyword = key.removeprefix("optimizer.")
    if key not in TRAIN_KEYS and keyword.isidentifier():
        return "optimizer", _optimizer_keyword(keyword, text.strip(), optimizer)
    settings = _parse_settings(key, f"{key} = {text.strip()}", text.strip())
    if len(settings) != 1:
        raise GraphcError(f"--set {item!r} is not KEY=VALUE")
    setting = settings[0]
    return setting.key, check_setting(setting.key, setting.value, evaluator, setting.key_span)


def _optimizer_keyword(keyword: str, text: str, optimizer: tuple[str, dict]) -> tuple[str, dict]:
    """Return the optimizer with one keyword set from `--set KEYWORD=VALUE`; GraphcError when the
    optimizer has no such keyword or the value is bad (the train section's diagnostics)."""
    name, given = optimizer
    keywords = [k.name for k in OPTIMIZER_SIGNATURES[name].keywords]
    if keyword not in keywords and not (keyword == "betas" and "beta1" in keywords):
        raise GraphcError(f"--set {keyword}: `{keyword}` is neither a train setting nor a keyword of `{name}`",
                          help=did_you_mean(keyword, [*TRAIN_KEYS, *keywords])
                          or f"train settings: {', '.join(TRAIN_KEYS)}; `{name}` takes {', '.join(keywords)}")
    # The other keywords as written; betas and beta1/beta2 replace each other.
    replaced = {"betas": ("beta1", "beta2"), "beta1": ("betas",), "beta2": ("betas",)}.get(keyword, ())
    kept = {k: v for k, v in given.items() if k != keyword and k not in replaced}
    settings = _parse_settings(keyword, f"optimizer = {name}({keyword} = {text})", text)
    if len(settings) != 1 or not isinstance(settings[0].value, S.Call) or len(settings[0].value.keywords) != 1:
        raise GraphcError(f"--set {keyword}={text} is not KEY=VALUE")
    diagnostics = Diagnostics()
    merged = Evaluator(diagnostics).named_call(
        settings[0].value, Scope("", {}, (), "", ()), "optimizer",
        lambda n, args, kwargs: check_optimizer(n, args, {**kept, **kwargs}))
    diagnostics.raise_if_errors()
    return merged


def _parse_settings(key: str, line: str, value_text: str) -> list:
    """Return the settings of `train { LINE }` parsed as the `--set KEY` source; GraphcError naming
    `value_text` when it does not parse."""
    try:
        module = parse(SourceFile(f"--set {key}", f"train {{ {line} }}\n"))
    except GraphcError as error:
        raise GraphcError(f"--set {key}: cannot read the value `{value_text}`",
                          help=error.diagnostics[0].help) from None
    return [s for i in module.items if isinstance(i, S.Train) for s in i.settings]
