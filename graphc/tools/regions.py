"""Decision regions: a classifier with a 2-D input -> the class it predicts at every point of the plane.

Input: a Program whose single input is declared `[2]` and whose loss classifies (cross_entropy or
hinge: the argmax of the scores; binary_cross_entropy: the prediction cut at 0.5, or at 0 for logits),
and the training points. Output: the predicted class on a grid over the points' range (with a margin),
and `draw_regions`, which colours the grid by class and draws the points on top in their label's colour
(the command is `graphc inspect FILE --regions`). A leaf: nothing in the pipeline imports it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphc.diagnostics import GraphcError
from graphc.tensor_type import CLASS
from graphc.training.checkpoint import atomic_write
from graphc.training.metrics import classifiers

# One colour per class (points; regions take it paler), cycled beyond ten classes.
_POINT = ["#1565c0", "#d84315", "#2e7d32", "#6a1b9a", "#f9a825", "#00838f", "#ad1457", "#4e342e", "#37474f",
          "#558b2f"]


@dataclass
class Regions:
    """The predicted class on a grid: `classes[i, j]` at (xs[j], ys[i]); `score` the binary prediction or the
    winning class's softmax probability there; `n_classes` counts the classes the model can predict."""

    xs: np.ndarray
    ys: np.ndarray
    classes: np.ndarray
    score: np.ndarray
    n_classes: int


def check_plane_classifier(graph) -> tuple[str, object]:
    """Return (the input's name, the Classifier deciding the class) of a model drawable as regions;
    GraphcError saying what is missing for any other model."""
    shapes = {name: list(graph.node(name).declared.shape) for name in graph.inputs}
    if len(graph.inputs) != 1 or next(iter(shapes.values())) != [2]:
        shown = ", ".join(f"`{n}: {s}`" for n, s in shapes.items()) or "none"
        raise GraphcError(f"--regions draws a model with one 2-D input; `{graph.model}` has {shown}",
                          span=graph.model_span,
                          help="decision regions are drawn over a plane: declare `input x: [2]` (xor, spiral)")
    found = classifiers(graph)
    if not found:
        raise GraphcError(f"--regions needs a classifier, but the loss of `{graph.model}` is not a "
                          "classification loss", span=graph.model_span,
                          help="declare `loss = cross_entropy(logits, y)` (or hinge, binary_cross_entropy)")
    return graph.inputs[0], found[0]


def decision_regions(program, points: np.ndarray | None, *, resolution: int = 200,
                     margin: float = 0.1) -> Regions:
    """Return the Regions of the program's classifier (inference mode) on a `resolution`^2 grid spanning
    `points` (n x 2) plus `margin` of their range on every side; [0, 1]^2 with that margin without points."""
    check_plane_classifier(program.graph)
    if points is not None and len(points):
        lo, hi = points.min(axis=0).astype(np.float64), points.max(axis=0).astype(np.float64)
    else:
        lo, hi = np.zeros(2), np.ones(2)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    lo, hi = lo - margin * span, hi + margin * span
    xs, ys = np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    classes, score, n_classes = predict_classes(program, grid)
    shape = (resolution, resolution)
    return Regions(xs, ys, classes.reshape(shape), score.reshape(shape), n_classes)


def predict_classes(program, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Return (predicted class, score, number of classes) of the program's classifier (inference mode) at
    `points` (n x 2): the score is the winning class's softmax probability, or the binary probability."""
    name, decider = check_plane_classifier(program.graph)
    feeds, batch = program.check_feeds({name: points}, need_labels=False)
    executor = program.executor((decider.pred,), backward=False)
    pred = executor.forward(feeds, program.params, program.state, train=False, rng=program.rng,
                            batch=batch)[decider.pred].reshape(batch, -1).astype(np.float64)
    if decider.cut is None:
        shifted = np.exp(pred - pred.max(axis=1, keepdims=True))
        probs = shifted / shifted.sum(axis=1, keepdims=True)
        return probs.argmax(axis=1), probs.max(axis=1), pred.shape[1]
    # A binary prediction (one element per sample; a multi-label target's first element).
    first = pred[:, 0]
    return (first > decider.cut).astype(np.int64), (1 / (1 + np.exp(-first)) if decider.cut == 0.0 else first), 2


def point_classes(graph, labels: np.ndarray | None, n: int) -> np.ndarray | None:
    """Return the class of each of `n` training points from the model's first label (a class index, a
    one-hot vector or a 0/1 target), or None without labels."""
    if labels is None or not graph.labels:
        return None
    labels = np.asarray(labels).reshape(n, -1)
    if graph.node(graph.labels[0]).declared.kind == CLASS or labels.shape[1] == 1:
        return (labels[:, 0] > 0.5).astype(np.int64) if labels.dtype.kind == "f" else labels[:, 0].astype(np.int64)
    return labels.argmax(axis=1)


def draw_regions(regions: Regions, points: np.ndarray | None, point_class: np.ndarray | None,
                 path: Path, title: str) -> None:
    """Write the picture: the grid coloured by predicted class (paler where less sure), the decision boundary in black, and the
    points on top in their class's colour (a white ring where the model gets one wrong); returns None."""
    try:
        # matplotlib is optional (the [train] extra) and slow to import: loaded only to draw.
        import matplotlib
    except ImportError:
        raise GraphcError("graphc inspect draws with matplotlib, which is not installed",
                          help="pip install 'graphc[train]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb
    from matplotlib.lines import Line2D

    k = regions.n_classes
    fig, ax = plt.subplots(figsize=(5.6, 5.0), layout="constrained")
    extent = (regions.xs[0], regions.xs[-1], regions.ys[0], regions.ys[-1])
    # Each class's colour, faded towards white where the model is unsure (score near 1/k: a coin toss).
    rgb = np.array([to_rgb(_POINT[c % len(_POINT)]) for c in range(k)])
    sure = np.clip((regions.score - 1 / k) / (1 - 1 / k), 0, 1)[..., None] if k > 1 else 1.0
    ax.imshow(1 - (0.15 + 0.45 * sure) * (1 - rgb[regions.classes]), origin="lower", extent=extent,
              aspect="auto", interpolation="nearest")
    if len(np.unique(regions.classes)) > 1:
        ax.contour(regions.xs, regions.ys, regions.classes, levels=np.arange(k - 1) + 0.5, colors="black",
                   linewidths=1.2)
    handles = []
    if points is not None and len(points):
        colours = ([_POINT[c % len(_POINT)] for c in point_class] if point_class is not None
                   else ["black"] * len(points))
        ax.scatter(points[:, 0], points[:, 1], c=colours, s=60 if len(points) <= 50 else 14, edgecolors="white",
                   linewidths=1.0 if len(points) <= 50 else 0.3, zorder=3)
        if point_class is not None:
            handles = [Line2D([], [], marker="o", linestyle="", color=_POINT[c % len(_POINT)],
                              markeredgecolor="white", label=f"class {c}") for c in np.unique(point_class)]
    handles += [Line2D([], [], marker="s", linestyle="", markersize=10, color=1 - 0.6 * (1 - rgb[c]),
                       label=f"predicted {c}") for c in range(k)]
    handles.append(Line2D([], [], linestyle="", label="(paler: less sure)"))
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_xlabel("x[0]")
    ax.set_ylabel("x[1]")
    ax.set_title(title, fontsize=10)
    try:
        kind = Path(path).suffix.lstrip(".").lower() or "png"
        atomic_write(path, lambda f: fig.savefig(f, format=kind, dpi=100))
    finally:
        plt.close(fig)
