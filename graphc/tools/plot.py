"""Plot: run folders (metrics.json) -> one PNG of their curves, overlaid or as small multiples.

Input: the folders `graphc run --out` wrote (a folder holding sweep.json stands
for every run of its sweep). Output: a PNG written atomically. `plot_runs`
overlays the runs' curves of one metric, with a legend made of what differs
between the runs' settings (`init=he`, `optimizer=adam(lr=0.3)`), or draws one
small panel per run (`grid=True`; runs whose settings differ only in the model
share a panel, so a with/without pair reads side by side). `plot_trace` draws
traced parameter paths (`graphc run --trace x,y`) over the contour of the loss,
which it computes by recompiling the run's source and evaluating its objective
over a grid of the two parameters.
"""
from __future__ import annotations

import io
import json
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphc.diagnostics import GraphcError
from graphc.program import compile_file
from graphc.training.checkpoint import atomic_write

SPLITS = ("train", "val", "test", "sample_train", "sample_test")
# The keys an epoch record may hold a metric under: the trainer writes `train_accuracy`, the textbook `train_acc`.
_SUFFIXES = {"loss": ("loss",), "acc": ("accuracy", "acc")}
# Settings that say how a run was executed, not what was trained: never a reason to tell runs apart.
_NOT_A_DIFFERENCE = {"dtype", "threads"}
_COLORS = ("#1565c0", "#e65100", "#2e7d32", "#c62828", "#6a1b9a", "#00838f", "#f9a825", "#4e342e")


@dataclass
class Run:
    """One run folder: where it is and what its metrics.json holds."""

    folder: Path
    metrics: dict

    def settings(self) -> dict[str, str]:
        """Return the run's settings (plus its model) as display strings, keyed by setting name."""
        shown = {"model": str(self.metrics.get("model", ""))}
        for key, value in (self.metrics.get("settings") or {}).items():
            if key not in _NOT_A_DIFFERENCE:
                shown[key] = _show_setting(value)
        return shown


def load_runs(paths) -> list[Run]:
    """Return the runs in `paths` (run folders, metrics.json files, or sweep folders holding sweep.json)."""
    runs: list[Run] = []
    for given in paths:
        path = Path(given)
        if path.is_dir() and (path / "sweep.json").is_file() and not (path / "metrics.json").is_file():
            sweep = _read_json(path / "sweep.json")
            runs += load_runs([_inside(path, r["dir"]) for r in sweep.get("runs", [])])
            continue
        file = path if path.is_file() else path / "metrics.json"
        if not file.is_file():
            raise GraphcError(f"no metrics.json in {path}" if path.is_dir() else f"{path}: no such run folder",
                              help="pass folders written by `graphc run --out DIR` (or a sweep's folder)")
        runs.append(Run(file.parent, _read_json(file)))
    if not runs:
        raise GraphcError("nothing to plot: no run folders given", help="graphc plot RUN_DIR... -o FIG.png")
    return runs


def series(run: Run, metric: str = "loss", split: str = "train", per: str = "epoch") -> tuple[list[float], list[float]]:
    """Return (x, y) of one run's metric: x in epochs (per="epoch") or in training steps (per="step")."""
    epochs = run.metrics.get("epochs") or []
    if per == "step":
        if (metric, split) != ("loss", "train"):
            raise GraphcError(f"per-step values are recorded for the training loss only, not {split} {metric}",
                              help="use --per epoch, or --metric loss --split train")
        xs, ys, done = [], [], 0
        for record in epochs:
            every = int(record.get("steps_per_point", 1))
            for value in record.get("step_loss") or []:
                # A point of `every` averaged steps sits at the last step it covers.
                done += every
                xs.append(done)
                ys.append(float(value))
        if not ys:
            raise GraphcError(f"{run.folder}: no per-step losses in metrics.json", help="use --per epoch")
        return xs, ys
    keys = [f"{split}_{suffix}" for suffix in _SUFFIXES.get(metric, (metric,))]
    points = []
    for record in epochs:
        key = next((k for k in keys if isinstance(record.get(k), (int, float))), None)
        if key is not None:
            points.append((record["epoch"], float(record[key])))
    if not points:
        held = sorted({k for r in epochs for k in r if isinstance(r[k], (int, float))})
        raise GraphcError(f"{run.folder}: no {split} {metric} per epoch in metrics.json (looked for {', '.join(keys)})",
                          help=_missing_help(split, held))
    return [float(e) for e, _ in points], [v for _, v in points]


def smooth_curve(values, window: int) -> np.ndarray:
    """Return `values` smoothed as the textbook's smooth_curve (common/util.py): a moving average weighted by a
    Kaiser window (beta 2) of `window` points, normalised to sum 1, centred; same length as `values`.

    The ends are mirrored as the book's np.r_ slices do: reflected at the start (the first value not
    repeated), mirrored with the last value repeated at the end. So the curve keeps its level at both ends.
    """
    values = np.asarray(values, dtype=float)
    window = min(window, len(values))
    if window < 2:
        return values
    left = (window - 1) // 2
    right = window - 1 - left
    padded = np.concatenate([values[left:0:-1], values, values[::-1][:right]])
    weights = np.kaiser(window, 2)
    return np.convolve(padded, weights / weights.sum(), mode="valid")


def legend_labels(runs: list[Run]) -> list[str]:
    """Return one label per run: the settings that differ between the runs, else the folder's name."""
    all_settings = [r.settings() for r in runs]
    keys = sorted({k for s in all_settings for k in s})
    differing = [k for k in keys if len({s.get(k, "-") for s in all_settings}) > 1]
    if not differing:
        return [r.folder.name for r in runs]
    return [", ".join(f"{k}={s.get(k, '-')}" for k in differing) for s in all_settings]


def plot_runs(paths, output, *, metric: str = "loss", split: str = "train", per: str = "epoch", smooth: int = 0,
              grid: bool = False, title: str | None = None) -> Path:
    """Draw the runs' curves of one metric into the PNG `output` (overlaid, or small multiples); return its path."""
    if split not in SPLITS:
        raise GraphcError(f"unknown split `{split}`", help="splits: " + ", ".join(SPLITS))
    runs = load_runs(paths)
    curves = [series(r, metric, split, per) for r in runs]
    if smooth and smooth > 1:
        curves = [(xs, list(smooth_curve(ys, smooth))) for xs, ys in curves]
    plt = _pyplot()
    y_label = f"{split} {'accuracy' if metric == 'acc' else metric}" + (f" (smoothed, {smooth})" if smooth > 1 else "")
    x_label = "iteration" if per == "step" else "epoch"
    if not grid:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for i, (label, (xs, ys)) in enumerate(zip(legend_labels(runs), curves)):
            ax.plot(xs, ys, color=_COLORS[i % len(_COLORS)], linewidth=1.3, label=label,
                    marker="o" if len(xs) <= 25 else None, markersize=3)
        _axes_labels(ax, x_label, y_label, metric, [v for _, ys in curves for v in ys])
        if len(runs) > 1:
            ax.legend(fontsize=8, frameon=False)
        ax.set_title(title or f"{y_label} per {per}", fontsize=10)
    else:
        panels = _panels(runs)
        cols = math.ceil(math.sqrt(len(panels)))
        rows = math.ceil(len(panels) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols + 0.6, 1.9 * rows + 0.8),
                                 sharex=True, sharey=True, squeeze=False)
        everything = [v for _, ys in curves for v in ys]
        # One colour per line label (a model) across all panels, in order of first appearance.
        color_of = {label: _COLORS[i % len(_COLORS)]
                    for i, label in enumerate(dict.fromkeys(label for _, members in panels for _, label in members))}
        legend_ax = None
        for ax, (panel_title, members) in zip(axes.flat, panels):
            for index, label in members:
                xs, ys = curves[index]
                ax.plot(xs, ys, color=color_of[label], linewidth=1.1, label=label)
            if legend_ax is None and len(members) == len(color_of):
                legend_ax = ax
            ax.set_title(panel_title, fontsize=7)
            ax.tick_params(labelsize=6)
        spare = list(axes.flat)[len(panels):]
        for ax in spare:
            ax.axis("off")
        _axes_labels(axes[0][0], "", "", metric, everything)
        if any(label for _, members in panels for _, label in members):
            # The legend goes into an empty cell of the grid when there is one, else into the first panel.
            handles, labels = (legend_ax or axes[0][0]).get_legend_handles_labels()
            (spare[0] if spare else axes[0][0]).legend(handles, labels, loc="center" if spare else "best",
                                                       fontsize=8 if spare else 6, frameon=False)
        fig.supxlabel(x_label, fontsize=9)
        fig.supylabel(y_label, fontsize=9)
        fig.suptitle(textwrap.fill(title or f"{y_label} per {per}", width=int(9.5 * fig.get_figwidth())), fontsize=10)
    return _save(fig, output)


def plot_trace(paths, output, names: tuple[str, str], *, grid: bool = False, title: str | None = None,
               resolution: int = 80) -> Path:
    """Draw each run's traced path of the parameters `names` over the contour of its loss; return the PNG's path."""
    if len(names) != 2:
        raise GraphcError(f"--trace takes two parameter names, got {len(names)}", help="e.g. --trace x,y")
    runs = load_runs(paths)
    paths_xy = [_traced(r, names) for r in runs]
    xs = np.concatenate([p[0] for p in paths_xy])
    ys = np.concatenate([p[1] for p in paths_xy])
    x_grid, y_grid = _span(xs), _span(ys)
    loss = _loss_surface(runs[0], names, x_grid, y_grid, resolution)
    plt = _pyplot()
    labels = legend_labels(runs)
    count = len(runs) if grid else 1
    cols = min(count, 2)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows + 0.3), squeeze=False)
    gx, gy = np.meshgrid(np.linspace(*x_grid, resolution), np.linspace(*y_grid, resolution))
    levels = _levels(loss)
    for ax in axes.flat[:count]:
        ax.contour(gx, gy, loss, levels=levels, colors="#9e9e9e", linewidths=0.6)
        ax.plot([gx.flat[loss.argmin()]], [gy.flat[loss.argmin()]], "+", color="black", markersize=9)
        ax.set_xlabel(names[0], fontsize=9)
        ax.set_ylabel(names[1], fontsize=9)
        ax.tick_params(labelsize=7)
    for i, ((px, py), label) in enumerate(zip(paths_xy, labels)):
        ax = axes.flat[i if grid else 0]
        color = "#d32f2f" if grid else _COLORS[i % len(_COLORS)]
        ax.plot(px, py, "o-", color=color, markersize=2.5, linewidth=1.0, label=label)
        if grid:
            ax.set_title(label, fontsize=9)
    for ax in list(axes.flat)[count:]:
        ax.axis("off")
    if not grid:
        axes[0][0].legend(fontsize=8, frameon=False)
    fig.suptitle(title or f"paths of {names[0]}, {names[1]} over the loss", fontsize=10)
    return _save(fig, output)


# ---- helpers ----------------------------------------------------------------------------------

def _read_json(file: Path) -> dict:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GraphcError(f"cannot read {file}: {e}", help="metrics.json is written by `graphc run --out DIR`") from None


def _inside(folder: Path, run_dir: str) -> Path:
    """Return a sweep's run folder: as written (absolute or relative to the working directory), else inside the sweep."""
    given = Path(run_dir)
    return given if given.is_absolute() or given.exists() else folder / given.name


def _show_setting(value) -> str:
    """Return a setting as written in a train section: ["adam", {"lr": 0.3}] -> adam(lr=0.3)."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], dict):
        args = ", ".join(f"{k}={_show_setting(v)}" for k, v in value[1].items())
        return f"{value[0]}({args})" if args else value[0]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _missing_help(split: str, held: list[str]) -> str:
    hint = ""
    if split.startswith("sample_"):
        hint = "per-epoch sample metrics need the train setting `eval_samples = N`; "
    elif split == "test":
        hint = "the test set is scored once, after training: use --split sample_test (with `eval_samples = N`); "
    elif split == "val":
        hint = "validation needs the train setting `validation = 0.1` (a held-out fraction); "
    return hint + "the epoch records hold: " + (", ".join(held) or "nothing")


def _panels(runs: list[Run]) -> list[tuple[str, list[tuple[int, str]]]]:
    """Group runs for --grid: runs whose settings agree (their model aside) share a panel.

    Returns (panel title, [(run index, line label)]) in the runs' order.
    """
    def key(run: Run) -> str:
        return json.dumps({k: v for k, v in run.settings().items() if k != "model"}, sort_keys=True)
    groups: dict[str, list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(key(run), []).append(i)
    if all(len(members) == 1 for members in groups.values()):
        return [(label, [(i, "")]) for i, label in enumerate(legend_labels(runs))]
    # Titles say what differs between the panels: the settings, the model aside (it is each panel's legend).
    shown = [{k: v for k, v in runs[members[0]].settings().items() if k != "model"} for members in groups.values()]
    differing = [k for k in sorted({k for s in shown for k in s}) if len({s.get(k, "-") for s in shown}) > 1]
    titles = [", ".join(f"{k}={s.get(k, '-')}" for k in differing) for s in shown]
    return [(title, [(i, runs[i].settings()["model"]) for i in members])
            for title, members in zip(titles, groups.values())]


def _axes_labels(ax, x_label: str, y_label: str, metric: str, values: list[float]) -> None:
    if x_label:
        ax.set_xlabel(x_label, fontsize=9)
    if y_label:
        ax.set_ylabel(y_label, fontsize=9)
    positive = [v for v in values if v > 0]
    # A loss spanning more than two decades reads on a log axis; accuracies stay linear.
    if metric == "loss" and positive and len(positive) == len(values) and max(positive) / min(positive) > 100:
        ax.set_yscale("log")
    ax.grid(alpha=0.3, linewidth=0.5)


def _traced(run: Run, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Return the traced values of the two parameters (the start, then after every step)."""
    trace = run.metrics.get("trace")
    if not trace:
        # Older layout: the trace rides in the epoch records (a start value, then one list per epoch).
        records = run.metrics.get("epochs") or []
        if records and "trace" in records[0]:
            trace = {n: list(records[0].get("trace_start", {}).get(n, []))
                     + [v for r in records for v in r["trace"].get(n, [])] for n in records[0]["trace"]}
    if not trace:
        raise GraphcError(f"{run.folder}: metrics.json holds no trace",
                          help="train with `graphc run FILE --trace x,y --out DIR` to record parameter values per step")
    missing = [n for n in names if n not in trace]
    if missing:
        raise GraphcError(f"{run.folder}: no trace of {', '.join(missing)}", help="traced: " + ", ".join(sorted(trace)))
    x, y = (np.asarray(trace[n], dtype=float).reshape(len(trace[n]), -1)[:, 0] for n in names)
    return x, y


def _span(values: np.ndarray) -> tuple[float, float]:
    low, high = float(values.min()), float(values.max())
    margin = max(high - low, 1e-3) * 0.15
    return low - margin, high + margin


def _loss_surface(run: Run, names, x_span, y_span, resolution: int) -> np.ndarray:
    """Return the run's objective on a resolution x resolution grid of the two parameters (rows: y)."""
    source = run.metrics.get("source")
    if not source or not Path(source).is_file():
        raise GraphcError(f"{run.folder}: the run's source {source or '(not recorded)'} is not readable",
                          help="the contour is computed from the .nn file the run trained (metrics.json \"source\")")
    program = compile_file(source, "float64", model=run.metrics.get("model"))
    for name in names:
        if name not in program.params:
            raise GraphcError(f"`{name}` is not a parameter of {source}", help="parameters: " + ", ".join(program.params))
    # A model declares at least one input; a loss over parameters alone reads none of it, so zeros do.
    feeds = {name: np.zeros((1, *program.graph.nx.nodes[name]["node"].declared.shape)) for name in program.graph.inputs}
    surface = np.empty((resolution, resolution))
    for row, y in enumerate(np.linspace(*y_span, resolution)):
        for col, x in enumerate(np.linspace(*x_span, resolution)):
            program.params[names[0]][...] = x
            program.params[names[1]][...] = y
            surface[row, col] = float(np.asarray(program.run(feeds)["loss"]).mean())
    return surface


def _levels(surface: np.ndarray) -> np.ndarray:
    low, high = float(surface.min()), float(surface.max())
    if low >= 0 and high > 0:
        # Quadratic bowls: levels spaced by square roots keep the rings evenly spread near the minimum.
        return np.linspace(math.sqrt(low), math.sqrt(high), 14)[1:] ** 2
    return np.linspace(low, high, 14)[1:]


def _pyplot():
    # matplotlib is optional (the [train] extra) and slow to import: loaded only when a figure is drawn.
    try:
        import matplotlib
    except ImportError:
        raise GraphcError("graphc plot needs matplotlib", help='pip install "graphc[train]"') from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, output) -> Path:
    plt = _pyplot()
    output = Path(output)
    if output.suffix.lower() not in (".png", ".svg", ".pdf"):
        plt.close(fig)
        raise GraphcError(f"cannot draw {output}: unknown picture format", help="write .png, .svg or .pdf")
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format=output.suffix[1:].lower(), dpi=90)
    plt.close(fig)
    data = _small_png(buffer.getvalue()) if output.suffix.lower() == ".png" else buffer.getvalue()
    atomic_write(output, lambda f: f.write(data))
    return output


def _small_png(png: bytes) -> bytes:
    """Return the PNG re-encoded with a 256-colour palette: a line plot has few colours, and the file shrinks ~3x."""
    # Pillow comes with matplotlib; imported here for the same reason.
    from PIL import Image
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
