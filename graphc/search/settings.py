"""The search section: `search { trials = 100; sampler = random; metric = val_acc }` -> SearchConfig.

Input: the search section build chose for the model (syntax.Search, or None) and
the typed graph of the model filled at its base values (to know whether it is a
classifier and whether its train section holds out a validation split). Output:
a `SearchConfig`, every unknown key and bad value a diagnostic at its line, so
`graphc check` reports them before any trial runs.
"""
from __future__ import annotations

from dataclasses import dataclass

from graphc.diagnostics import Diagnostics, did_you_mean
from graphc.language import syntax as S
from graphc.training.metrics import classifiers

SEARCH_KEYS = {
    "trials": "how many trials the study runs in all (every worker together), a whole number >= 1",
    "sampler": "tpe (Bayesian, the default), random (the textbook's), grid (every combination; choices and stepped "
               "ranges only) or cmaes (needs the cmaes package)",
    "pruner": "median (stop a trial whose epoch metric is below the median of earlier trials at that epoch), "
              "hyperband, or none",
    "metric": "what the study optimises: val_acc, val_loss, train_acc or train_loss (the last epoch's value)",
    "direction": "maximize or minimize (default: maximize for an accuracy, minimize for a loss)",
    "timeout": "stop starting trials after this many seconds (a worker finishes its running trial)",
    "seed": "the sampler's seed, a whole number (default: the train section's seed)",
}
SAMPLERS = ("tpe", "random", "grid", "cmaes")
PRUNERS = ("median", "hyperband", "none")
METRICS = ("val_acc", "val_loss", "train_acc", "train_loss")


@dataclass
class SearchConfig:
    """The study's settings as plain values."""
    trials: int = 20
    sampler: str = "tpe"
    pruner: str = "median"
    metric: str = "val_acc"
    direction: str = "maximize"
    timeout: float | None = None
    seed: int = 0
    grid: dict | None = None    # sampler = grid: each space's values (search/study.py fills it)


def resolve_search(section: S.Search | None, graph, diagnostics: Diagnostics) -> SearchConfig:
    """Return the search settings of a model (defaults for absent keys); errors go to `diagnostics`."""
    train = graph.train or {}
    validation = train["validation"].value if "validation" in train else 0.0
    classifier = bool(classifiers(graph))
    config = SearchConfig(seed=train["seed"].value if "seed" in train else 0,
                          metric=("val_" if validation > 0 else "train_") + ("acc" if classifier else "loss"))
    written: dict[str, object] = {}
    span_of: dict[str, object] = {}
    for setting in (section.settings if section is not None else ()):
        if setting.key not in SEARCH_KEYS:
            diagnostics.error(f"unknown search setting `{setting.key}`", setting.key_span,
                              help=((did_you_mean(setting.key, SEARCH_KEYS) or "") + " settings: "
                                    + ", ".join(SEARCH_KEYS)).strip())
            continue
        if setting.key in written:
            diagnostics.error(f"`{setting.key}` is set twice", setting.key_span, help="remove one of the two lines")
            continue
        value = _value(setting.value)
        if not _accepts(setting.key, value):
            diagnostics.error(f"bad value for `{setting.key}`: {_show(value)}", setting.value.span,
                              help=f"`{setting.key}` is {SEARCH_KEYS[setting.key]}")
            continue
        written[setting.key], span_of[setting.key] = value, setting.value.span
    for key, value in written.items():
        setattr(config, key, float(value) if key == "timeout" else value)
    if "direction" not in written:
        config.direction = "maximize" if config.metric.endswith("acc") else "minimize"
    if config.metric.startswith("val_") and validation <= 0:
        diagnostics.error(f"the search optimises `{config.metric}`, but the train section holds out no validation "
                          "data", span_of.get("metric", section.span if section is not None else graph.train_span),
                          help="add `validation = 0.2` to the train section (the textbook holds out 20%), "
                               "or optimise train_acc/train_loss")
    if config.metric.endswith("acc") and not classifier:
        diagnostics.error(f"`{config.metric}` needs a classifier (a cross-entropy or similar loss over class labels)",
                          span_of.get("metric", section.span if section is not None else graph.model_span),
                          help="optimise val_loss or train_loss")
    return config


def _value(expr):
    """Return a setting's value: a number (with unary minus), a name's text, or None for anything else."""
    if isinstance(expr, S.Number):
        return expr.value
    if isinstance(expr, S.Negate) and isinstance(expr.operand, S.Number):
        return -expr.operand.value
    if isinstance(expr, S.Name):
        return expr.id
    return None


def _accepts(key: str, value) -> bool:
    whole = isinstance(value, int) and not isinstance(value, bool)
    return {
        "trials": whole and value >= 1,
        "sampler": value in SAMPLERS,
        "pruner": value in PRUNERS,
        "metric": value in METRICS,
        "direction": value in ("maximize", "minimize"),
        "timeout": isinstance(value, (int, float)) and not isinstance(value, str) and value > 0,
        "seed": whole and value >= 0,
    }[key]


def _show(value) -> str:
    return "not a number or a name" if value is None else f"`{value}`"
