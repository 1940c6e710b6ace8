"""Search plots: an Optuna study -> history.png, importances.png, parallel.png and best_curves.png in a folder.

Input: a study laid out by `graphc search`: trial.params (`optimizer.lr`, `units`, `init`, ...), the metric per
epoch in trial.intermediate_values, the final metric in trial.value, per-epoch curves in
trial.user_attrs["curves"] ({"train_loss", "val_loss", "train_acc", "val_acc"}), and study.user_attrs["metric"]
("val_acc", "val_loss", ...). Output: PNG files, each written atomically, and notes on the plots that could not be
drawn. Completed trials appear everywhere; pruned ones (their value is the metric at the epoch they stopped) are
marked in the history and may enter best_curves.png by value; failed and running trials appear nowhere.
best_curves.png is the textbook's figure (ch06 hyperparameter_optimization.py): the best trials' validation curves
solid and training curves dashed, one panel each.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, NamedTuple

from graphc.training.checkpoint import atomic_write

COLUMNS = 5                 # panels per row in best_curves.png, as in the textbook's figure
TITLE_CHARS = 36            # what fits on one title line above a panel of best_curves.png
TRAIN_COLOR = "#1565c0"     # the colours of curves.png (graphc run)
VAL_COLOR = "#e65100"
PRUNED_COLOR = "#9e9e9e"
BEST_COLOR = "#c62828"
# Short names for the panel titles of best_curves.png (the textbook prints "lr" and "weight decay").
SHORT_NAMES = {"lr": "lr", "learning_rate": "lr", "weight_decay": "wd", "momentum": "mom", "batch": "batch"}


class SearchPlots(NamedTuple):
    """What draw_search_plots did: the files written, why others were skipped, the trials in best_curves.png."""
    paths: list[Path]
    notes: list[str]
    best_trials: list[int]   # trial numbers shown in best_curves.png, best first


def draw_search_plots(study, out_dir: Path, *, top: int = 20) -> SearchPlots:
    """Draw the study's plots into `out_dir`; return SearchPlots(paths written, notes on skipped plots, best trials).

    history.png (every finished trial's metric and the best so far), importances.png (Optuna's parameter
    importances; skipped with a note when they cannot be computed), parallel.png (parameters against the metric)
    and best_curves.png (the best `top` trials' curves, best first). Unfinished studies simply draw less.
    Raises ImportError when optuna or matplotlib (the [search] extra) is not installed.
    """
    # matplotlib and optuna are optional (the [search] extra) and slow to import: loaded only when plots are drawn.
    import matplotlib
    matplotlib.use("Agg")
    import optuna

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)   # read once: on PostgreSQL each read is a query
    complete = [t for t in trials if t.state == states.COMPLETE and _finite(t.value)]
    pruned = [t for t in trials if t.state == states.PRUNED and _finite(t.value)]
    notes: list[str] = []
    if not complete and not pruned:
        return SearchPlots([], ["no search plots yet: no trial has finished"], [])
    metric = study.user_attrs.get("metric", "objective value")
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    paths = [_save(out_dir / "history.png", _history_figure(complete, pruned, metric, maximize))]
    importances, why_not = _importances(study, complete)
    if importances is None:
        notes.append(f"no importances.png: {why_not}")
    else:
        paths.append(_save(out_dir / "importances.png", _importances_figure(importances, metric, len(complete))))
    if complete:
        paths.append(_save(out_dir / "parallel.png", _parallel_figure(complete, metric, maximize)))
    else:
        notes.append("no parallel.png: no trial has completed (only pruned ones)")
    ranked = _ranked(complete + pruned, maximize)[:max(top, 0)]
    if ranked:
        paths.append(_save(out_dir / "best_curves.png", _best_curves_figure(ranked, metric)))
    else:
        notes.append(f"no best_curves.png: asked for the best {top} trials")
    return SearchPlots(paths, notes, [t.number for t in ranked])


def best_trials(study, top: int) -> list:
    """Return up to `top` finished trials (completed, or pruned with a value), best value first, ties by trial number."""
    # optuna is optional (the [search] extra): only needed to name the trial states and the direction.
    import optuna

    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    trials = [t for t in study.get_trials(deepcopy=False) if t.state in finished and _finite(t.value)]
    return _ranked(trials, study.direction == optuna.study.StudyDirection.MAXIMIZE)[:max(top, 0)]


def short_params(params: dict[str, Any]) -> str:
    """Return a trial's parameters in a short form for a title: `lr=0.0092, wd=3.9e-07` (2 significant digits)."""
    shorts = {name: SHORT_NAMES.get(name.rsplit(".", 1)[-1], name.rsplit(".", 1)[-1]) for name in params}
    if len(set(shorts.values())) < len(shorts):   # two names would read the same: keep the full ones
        shorts = {name: name for name in params}
    return ", ".join(f"{shorts[name]}={_short_value(value)}" for name, value in sorted(params.items()))


# ---- one figure each --------------------------------------------------------------------------------------------

def _history_figure(complete: list, pruned: list, metric: str, maximize: bool):
    import matplotlib.pyplot as plt  # optional and slow (the [search] extra); draw_search_plots chose Agg
    from matplotlib.ticker import FuncFormatter  # with pyplot: optional

    fig, ax = plt.subplots(figsize=(8, 4.8))
    if pruned:
        ax.plot([t.number for t in pruned], [t.value for t in pruned], "x", color=PRUNED_COLOR, markersize=6,
                label=f"pruned ({len(pruned)}): {metric} where it stopped")
    if complete:
        ax.plot([t.number for t in complete], [t.value for t in complete], "o", color=TRAIN_COLOR, markersize=5,
                alpha=0.8, label=f"completed ({len(complete)})")
        best_x, best_y, best = [], [], None
        for t in complete:   # already in trial order
            if best is None or (t.value > best if maximize else t.value < best):
                best = t.value
            best_x.append(t.number)
            best_y.append(best)
        ax.plot(best_x, best_y, color=BEST_COLOR, linewidth=1.6, drawstyle="steps-post",
                label=f"best so far: {best:.4g}")
    values = [t.value for t in complete + pruned]
    # Losses spread over decades read on a log axis; accuracies stay linear (they live in [0, 1]).
    if "acc" not in metric and min(values) > 0 and max(values) / min(values) > 10:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))   # 0.2, not 2 x 10^-1
        # Minor labels at 2, 3 and 5 x 10^k only: all eight would crowd the top of each decade.
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:.3g}" if f"{v:.0e}"[0] in "235" else ""))
    ax.set_xlabel("trial")
    ax.set_ylabel(metric + (" (log scale)" if ax.get_yscale() == "log" else ""))
    ax.set_title(f"optimisation history ({'maximize' if maximize else 'minimize'} {metric})")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(True, alpha=0.3)
    # Below the axes: pruned trials may fill any corner.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, frameon=False)
    fig.tight_layout()
    return fig


def _importances(study, complete: list) -> tuple[dict[str, float] | None, str]:
    """Return (importance by parameter, "") or (None, why they cannot be computed)."""
    # optuna is optional (the [search] extra): loaded only when plots are drawn.
    import optuna

    varying = {name for name in {n for t in complete for n in t.params}
               if len({repr(t.params.get(name)) for t in complete}) > 1}
    if len(complete) < 2 or not varying:
        return None, (f"parameter importances need at least 2 completed trials with varying parameters "
                      f"(have {len(complete)} completed, {len(varying)} varying parameters)")
    try:
        with warnings.catch_warnings():
            # Few trials per branch of a conditional space: Optuna warns per parameter; the figure says n.
            warnings.simplefilter("ignore", UserWarning)
            return optuna.importance.get_param_importances(study), ""
    except (ValueError, RuntimeError, ZeroDivisionError) as e:   # Optuna's own "cannot evaluate" cases
        return None, f"Optuna could not compute parameter importances: {e}"


def _importances_figure(importances: dict[str, float], metric: str, n_complete: int):
    import matplotlib.pyplot as plt  # optional and slow (the [search] extra); draw_search_plots chose Agg

    names = sorted(importances, key=importances.get)   # largest on top of a horizontal bar chart
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.45 * len(names)))
    bars = ax.barh(names, [importances[n] for n in names], color=TRAIN_COLOR)
    ax.bar_label(bars, labels=[f"{importances[n]:.2f}" for n in names], padding=3)
    ax.set_xlim(0, max(1.0, max(importances.values()) * 1.15))
    ax.set_xlabel(f"importance for {metric} (sums to 1)")
    ax.set_title(f"parameter importances ({n_complete} completed trials)")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def _parallel_figure(complete: list, metric: str, maximize: bool):
    """Parallel coordinates: one vertical axis for the metric then one per parameter, one line per completed trial."""
    import matplotlib.pyplot as plt  # optional and slow (the [search] extra); draw_search_plots chose Agg
    from matplotlib.cm import ScalarMappable  # with pyplot: optional
    from matplotlib.collections import LineCollection  # with pyplot: optional
    from matplotlib.colors import Normalize  # with pyplot: optional

    names = sorted({n for t in complete for n in t.params})
    distributions = {n: next(t.distributions[n] for t in reversed(complete) if n in t.distributions) for n in names}
    values = [t.value for t in complete]
    axes = [_metric_axis(values)] + [_param_axis(distributions[n]) for n in names]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.9 * len(axes) + 2.5), 5))
    # Brighter is better: viridis runs dark to bright from the worst value to the best.
    cmap = plt.get_cmap("viridis" if maximize else "viridis_r")
    norm = Normalize(min(values), max(values) if max(values) > min(values) else min(values) + 1)
    # Worst first, so the good trials are drawn on top.
    order = sorted(range(len(complete)), key=lambda i: values[i] if maximize else -values[i])
    columns = _columns(complete, names)
    segments, colors, dots = [], [], []
    for i in order:
        ys = [axis["position"](col[i]) for axis, col in zip(axes, columns)]
        # A conditional parameter a trial did not sample (NaN) breaks its line there.
        segments += [[(k, ys[k]), (k + 1, ys[k + 1])] for k in range(len(ys) - 1)
                     if math.isfinite(ys[k]) and math.isfinite(ys[k + 1])]
        colors += [cmap(norm(values[i]))] * (len(segments) - len(colors))
        dots += [(k, y, cmap(norm(values[i]))) for k, y in enumerate(ys) if math.isfinite(y)]
    # One collection, not one line per trial: thousands of trials still draw in a moment.
    ax.add_collection(LineCollection(segments, colors=colors, linewidths=1.1, alpha=0.75))
    if len(complete) <= 200:
        ax.scatter([d[0] for d in dots], [d[1] for d in dots], c=[d[2] for d in dots], s=6, zorder=2)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02, fraction=0.03).set_label(metric)
    best = order[-1]
    best_ys = [axis["position"](col[best]) for axis, col in zip(axes, columns)]
    ax.plot(range(len(axes)), best_ys, "-o", color=BEST_COLOR, linewidth=2.4, markersize=4,
            label=f"best: trial {complete[best].number}, {metric} {values[best]:.4g}")
    for x, axis in enumerate(axes):
        ax.axvline(x, color="black", linewidth=0.8)
        for pos, text in axis["ticks"]:
            ax.text(x + 0.04, pos, text, fontsize=8, va="center", ha="left",
                    bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.7})
    ax.set_xticks(range(len(axes)), [metric] + [n + (" (log)" if axes[k + 1]["log"] else "") for k, n in enumerate(names)])
    ax.set_xlim(-0.15, len(axes) - 0.35)
    ax.set_ylim(-0.05, 1.05)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"parameters against {metric} ({len(complete)} completed trials)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), frameon=False)
    fig.tight_layout()
    return fig


def _best_curves_figure(ranked: list, metric: str):
    """The textbook's figure: one panel per trial, validation solid and training dashed; accuracy axes from 0 to 1."""
    import matplotlib.pyplot as plt  # optional and slow (the [search] extra); draw_search_plots chose Agg

    val_key, train_key, accuracy = _curve_keys(metric, ranked)
    rows = max(1, math.ceil(len(ranked) / COLUMNS))
    title_lines = max([_wrap(short_params(t.params), TITLE_CHARS).count("\n") + 2 for t in ranked] or [2])
    fig, grid = plt.subplots(rows, COLUMNS, figsize=(2.9 * COLUMNS, (1.9 + 0.16 * title_lines) * rows + 0.6), squeeze=False,
                             sharex=True, sharey=True)
    for k, t in enumerate(ranked):
        ax = grid[k // COLUMNS][k % COLUMNS]
        curves = t.user_attrs.get("curves") or {}
        # Without recorded curves, the per-epoch metric the pruner saw is the validation curve.
        val = curves.get(val_key) or [t.intermediate_values[s] for s in sorted(t.intermediate_values)]
        train = curves.get(train_key) or []
        ax.plot(range(1, len(val) + 1), val, "-", color=VAL_COLOR, linewidth=1.4)
        ax.plot(range(1, len(train) + 1), train, "--", color=TRAIN_COLOR, linewidth=1.1)
        state = " (pruned)" if t.state.name == "PRUNED" else ""
        ax.set_title(f"Best-{k + 1}: {t.value:.3g}{state}\n" + _wrap(short_params(t.params), TITLE_CHARS), fontsize=8.5)
        ax.tick_params(labelsize=7.5)
        ax.grid(True, alpha=0.3)
    for k in range(len(ranked), rows * COLUMNS):   # empty cells of the last row
        grid[k // COLUMNS][k % COLUMNS].axis("off")
    if accuracy:
        grid[0][0].set_ylim(0, 1)
    elif ranked and all(v > 0 for t in ranked for v in (t.user_attrs.get("curves") or {}).get(val_key, [1.0])):
        grid[0][0].set_ylim(bottom=0)
    fig.legend(handles=[plt.Line2D([], [], color=VAL_COLOR, linestyle="-", label=f"validation ({val_key})"),
                        plt.Line2D([], [], color=TRAIN_COLOR, linestyle="--", label=f"training ({train_key})")],
               loc="upper right", ncol=2, frameon=False, fontsize=9)
    fig.suptitle(f"best {len(ranked)} trials by {metric}: curves per epoch", x=0.01, ha="left", fontsize=11)
    fig.supxlabel("epoch", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    return fig


# ---- helpers ----------------------------------------------------------------------------------------------------

def _ranked(trials: list, maximize: bool) -> list:
    """Return the trials best value first, ties by trial number."""
    sign = -1.0 if maximize else 1.0
    return sorted(trials, key=lambda t: (sign * t.value, t.number))


def _curve_keys(metric: str, ranked: list) -> tuple[str, str, bool]:
    """Return (validation key, training key, is accuracy) of the curves to draw for this metric."""
    if "acc" in metric:
        return "val_acc", "train_acc", True
    if "loss" in metric:
        return "val_loss", "train_loss", False
    has_acc = any("val_acc" in (t.user_attrs.get("curves") or {}) for t in ranked)
    return ("val_acc", "train_acc", True) if has_acc else ("val_loss", "train_loss", False)


def _metric_axis(values: list[float]) -> dict:
    lo, hi = min(values), max(values)
    span = hi - lo
    return {"log": False, "position": lambda v: 0.5 if span == 0 else (v - lo) / span,
            "ticks": [(0.5, f"{lo:.4g}")] if span == 0 else
            [(f, f"{lo + f * span:.3g}") for f in (0.0, 0.25, 0.5, 0.75, 1.0)]}


def _param_axis(distribution) -> dict:
    """Return how a parameter maps to [0, 1] on its axis (the whole search range, log when sampled log) and its ticks."""
    choices = getattr(distribution, "choices", None)
    if choices is not None:   # categorical: the choices evenly spaced, in the declared order
        index = {repr(c): i for i, c in enumerate(choices)}
        spread = max(len(choices) - 1, 1)
        return {"log": False, "position": lambda v: math.nan if v is None else index[repr(v)] / spread,
                "ticks": [(i / spread, str(c)) for i, c in enumerate(choices)]}
    log = bool(getattr(distribution, "log", False))
    low, high = distribution.low, distribution.high
    scale = math.log10 if log else float
    lo, hi = scale(low), scale(high)
    span = hi - lo

    def position(v):
        return math.nan if v is None else (0.5 if span == 0 else (scale(float(v)) - lo) / span)

    step = getattr(distribution, "step", None)
    if isinstance(low, int):   # IntDistribution
        grid = range(int(low), int(high) + 1, int(step or 1))
        if not log and len(grid) <= 9:   # a few integer values: a tick at each one
            return {"log": log, "position": position, "ticks": [(position(v), str(v)) for v in grid]}
    fractions = (0.0, 0.25, 0.5, 0.75, 1.0) if span else (0.5,)
    ticks = []
    for f in fractions:
        v = 10 ** (lo + f * span) if log else lo + f * span
        ticks.append((f, str(round(v)) if isinstance(low, int) else f"{v:.2g}"))
    return {"log": log, "position": position, "ticks": ticks}


def _columns(trials: list, names: list[str]) -> list[list]:
    """Return the metric column then one column per parameter (None where a conditional parameter was not sampled)."""
    return [[t.value for t in trials]] + [[t.params.get(n) for t in trials] for n in names]


def _wrap(text: str, width: int) -> str:
    """Break `a=1, b=2, ...` into lines of at most `width` characters, between parameters."""
    lines = [""]
    for part in text.split(", "):
        candidate = f"{lines[-1]}, {part}" if lines[-1] else part
        if len(candidate) <= width or not lines[-1]:
            lines[-1] = candidate
        else:
            lines.append(part)
    return "\n".join(lines)


def _short_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.2g}"
    return str(value)


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def _save(path: Path, fig) -> Path:
    """Write the figure to `path` atomically, close it, and return the path."""
    import matplotlib.pyplot as plt  # optional and slow (the [search] extra); draw_search_plots chose Agg

    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    finally:
        plt.close(fig)
    return path
