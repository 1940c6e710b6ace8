"""Inspection: a Program and a batch -> what its layers do, as numbers and one picture.

Input: a Program (fresh, or with loaded weights) and fed arrays. Output: the
activations of every hidden activation layer (the classic initialisation
experiment: with std 1 sigmoids saturate at 0 and 1, with std 0.01 they all
sit at 0.5, with Xavier they stay spread), the first conv layer's filters,
and the mean |gradient| of each layer's weight; `draw_panels` draws them as
histograms, a grid of grey images, and bars on a log scale (the command is
graphc/cli/inspect.py). A leaf: nothing in the pipeline imports it.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from graphc.diagnostics import GraphcError
from graphc.runtime.execute import Executor, nonfinite_error
from graphc.runtime.nan_guard import nonfinite_gradient_error
from graphc.training.checkpoint import atomic_write


def activation_nodes(graph) -> list[str]:
    """Return the hidden activation layers in schedule order: activation ops that are not outputs."""
    outputs = set(graph.outputs.values())
    return [n for n in graph.op_nodes() if graph.node(n).op.family == "activation" and n not in outputs]


def activation_stats(program, feeds: dict, train: bool = True) -> dict[str, np.ndarray]:
    """Return {layer: its activations on the batch, flattened} for every hidden activation layer.

    In training mode by default (what a training step sees: batchnorm normalises with the
    batch's statistics, dropout drops); `train=False` shows the inference-mode model.
    Running statistics are left as they were.
    """
    nodes = activation_nodes(program.graph)
    if not nodes:
        raise GraphcError(f"model `{program.graph.model}` has no activation layers to inspect",
                          help="activations are the outputs of ops such as relu, sigmoid and tanh")
    feeds, batch = program.check_feeds(feeds, need_labels=False)
    executor = program.executor(tuple(nodes), backward=False)
    state = {k: v.copy() for k, v in program.state.items()}   # a training pass would update them
    noise = program.rng.bit_generator.state
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):   # reported below, with the node
        values = executor.forward(feeds, program.params, state, train=train, rng=program.rng, batch=batch)
        stats = {n: np.array(values[n], dtype=np.float64).reshape(-1) for n in nodes}
        if all(np.all(np.isfinite(v)) for v in stats.values()):
            return stats
        # Replay with a buffer per step (and the same dropout masks) to name the node that started it.
        exact = Executor(program.graph, executor.plan.without_reuse(), program.dtype)
        rng = np.random.default_rng()
        rng.bit_generator.state = noise
        values = exact.forward(feeds, program.params, {k: v.copy() for k, v in program.state.items()},
                               train=train, rng=rng, batch=batch)
    node = exact.first_nonfinite(values) or next(n for n, v in stats.items() if not np.all(np.isfinite(v)))
    raise nonfinite_error(program.graph, node, "on this batch, so there is no histogram to draw")


def weight_params(program) -> list[str]:
    """Return each layer's weight in schedule order: the parameter with the most dimensions (at least 2)."""
    graph, names = program.graph, []
    for n in graph.op_nodes():
        node = graph.node(n)
        candidates = list(node.params.values()) + [i for i in node.inputs if i in graph.params]
        candidates = [p for p in candidates if len(graph.params[p].shape) >= 2 and p not in names]
        if candidates:
            names.append(max(candidates, key=lambda p: len(graph.params[p].shape)))
    return names


def gradient_stats(program, feeds: dict, train: bool = True) -> dict[str, float]:
    """Return {weight: mean |d loss / d weight|} on the batch, in schedule order.

    In training mode by default: the gradient of the objective training minimises (batch
    statistics, dropout), as Program.gradients; `train=False` differentiates the inference-mode
    model. Running statistics are left as they were.
    """
    weights = weight_params(program)
    if not weights:
        raise GraphcError(f"model `{program.graph.model}` has no weights to inspect")
    saved = {k: v.copy() for k, v in program.state.items()}
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):   # reported below
            _, grads = program.forward_backward(feeds, train=train)
    finally:
        program.state.update(saved)
    if any(w in grads and not np.all(np.isfinite(grads[w])) for w in weights):
        raise nonfinite_gradient_error(program.graph, program.executor_for_backward().plan, program.params,
                                       grads, "on this batch")
    return {w: float(np.mean(np.abs(grads[w]))) if w in grads else 0.0 for w in weights}


def first_conv_filters(program) -> tuple[str, np.ndarray] | None:
    """Return (name, weights [out, in, kh, kw]) of the first layer with a 4-D weight, or None."""
    for w in weight_params(program):
        if len(program.graph.params[w].shape) == 4:
            return w, np.array(program.params[w], dtype=np.float64)
    return None


def activation_table(stats: dict[str, np.ndarray]) -> str:
    """Return one line per layer: mean, std, and where the values sit."""
    lines = [f"  {'layer':<16} {'mean':>8} {'std':>8} {'min':>8} {'max':>8} {'zero':>6}"]
    for name, v in stats.items():
        lines.append(f"  {name:<16} {v.mean():>8.4f} {v.std():>8.4f} {v.min():>8.4f} {v.max():>8.4f} "
                     f"{np.mean(v == 0):>6.1%}")
    return "\n".join(lines)


# ---- the picture ------------------------------------------------------------------------------

def draw_panels(panels: list, path: Path, title: str) -> None:
    """Write one figure with a row per panel (activations, filters, gradients)."""
    try:
        # matplotlib is optional (the [train] extra) and slow to import: loaded only to draw.
        import matplotlib
    except ImportError:
        raise GraphcError("graphc inspect draws with matplotlib, which is not installed",
                          help="pip install 'graphc[train]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    heights = {"activations": 2.8, "filters": 0.0, "gradients": 3.2}
    widths = [8.0]
    for kind, data in panels:
        if kind == "activations":
            widths.append(2.3 * len(data))
        if kind == "filters":
            rows, cols = _filter_grid(data[1])
            heights["filters"] = min(0.55 * rows + 0.7, 9.0)
            widths.append(0.55 * cols)
    fig = plt.figure(figsize=(min(max(widths), 22.0), sum(heights[k] for k, _ in panels) + 0.5), layout="constrained")
    subfigs = fig.subfigures(len(panels), 1, height_ratios=[heights[k] for k, _ in panels], squeeze=False)
    for sub, (kind, data) in zip(subfigs[:, 0], panels):
        {"activations": _draw_activations, "filters": _draw_filters, "gradients": _draw_gradients}[kind](sub, data)
    fig.suptitle(title, fontsize=11, fontweight="bold")
    try:
        # The extension picks the format, as savefig(path) would; written atomically like every output.
        kind = Path(path).suffix.lstrip(".").lower() or "png"
        atomic_write(path, lambda f: fig.savefig(f, format=kind, dpi=100))
    finally:
        plt.close(fig)


def _draw_activations(sub, stats: dict) -> None:
    lo = min(float(v.min()) for v in stats.values())
    hi = max(float(v.max()) for v in stats.values())
    # Bounded activations keep their whole range, so runs with different inits compare at a glance.
    for a, b in ((0.0, 1.0), (-1.0, 1.0)):
        if a <= lo and hi <= b:
            lo, hi = a, b
            break
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    axes = sub.subplots(1, len(stats), sharey=True, squeeze=False)[0]
    for ax, (name, v) in zip(axes, stats.items()):
        ax.hist(v, bins=40, range=(lo, hi), weights=np.full(v.size, 1.0 / max(v.size, 1)), color="#42a5f5",
                edgecolor="#1e5f99", linewidth=0.4)
        ax.set_title(f"{name}\nmean {v.mean():.3f}, std {v.std():.3f}", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.set_xlim(lo, hi)
    axes[0].set_ylabel("share of activations", fontsize=9)
    sub.suptitle("activations per layer (histograms over the batch)", fontsize=10, x=0.01, ha="left")


def _filter_grid(w: np.ndarray) -> tuple[int, int]:
    out, cin = w.shape[:2]
    if cin == 1:
        cols = min(out, 12)
        return math.ceil(out / cols), cols
    return min(out, 16), min(cin, 12)


def _draw_filters(sub, found) -> None:
    name, w = found
    out, cin = w.shape[:2]
    rows, cols = _filter_grid(w)
    axes = sub.subplots(rows, cols, squeeze=False)
    limit = float(np.max(np.abs(w))) or 1.0
    for r in range(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            o, i = (r * cols + c, 0) if cin == 1 else (r, c)
            if o >= out or i >= cin:
                ax.axis("off")
                continue
            ax.imshow(w[o, i], cmap="gray", vmin=-limit, vmax=limit, interpolation="nearest")
    shown = "" if cin == 1 else f" (rows: filters, columns: input channels{', first 12' if cin > 12 else ''})"
    sub.suptitle(f"first conv layer: {name} {list(w.shape)}, black -{limit:.2g} .. white +{limit:.2g}{shown}",
                 fontsize=10, x=0.01, ha="left")


def _draw_gradients(sub, grads: dict) -> None:
    ax = sub.subplots(1, 1)
    names = list(grads)
    values = [max(g, 1e-30) for g in grads.values()]
    bars = ax.bar(range(len(names)), values, color="#ef6c00")
    ax.set_yscale("log")
    ax.set_ylim(min(values) / 4, max(values) * 4)
    ax.bar_label(bars, labels=[f"{g:.1e}" for g in values], fontsize=7, padding=2)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center",
                       fontsize=8)
    ax.set_ylabel("mean |gradient|", fontsize=9)
    ax.grid(True, axis="y", alpha=0.3, which="both")
    sub.suptitle("gradient magnitude of each layer's weight (log scale; input side on the left)",
                 fontsize=10, x=0.01, ha="left")
