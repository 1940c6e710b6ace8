"""Metrics: what a training run measures on its splits, and how it is shown while it runs.

Input: a Program and arrays of one split. Output: {"loss", "accuracy"?, "samples"}
dicts, the lines the trainer prints, and progress bars on a terminal.
Accuracy is reported for every classification loss found in the loss
expression, so `cross_entropy(logits, y) + 0.01 * l2` and a sigmoid with
`binary_cross_entropy` both keep it: class losses (cross_entropy, hinge)
compare the argmax of the scores with the class (or with the argmax of a
one-hot / probability target); binary losses compare the prediction, cut at
0.5 (probabilities) or 0 (logits), with the target cut at 0.5, element by element.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np

from graphc.diagnostics import GraphcError, did_you_mean
from graphc.tensor_type import CLASS

# loss op -> the cut applied to its prediction (None: the argmax over classes)
CLASSIFYING_LOSSES: dict[str, float | None] = {
    "cross_entropy": None,
    "hinge": None,
    "binary_cross_entropy": 0.5,
    "binary_cross_entropy_with_logits": 0.0,
}


@dataclass(frozen=True)
class Classifier:
    """One classification loss in the loss expression: the node it scores and the target it is scored against."""

    loss: str                 # the loss op node
    pred: str                 # its first input: scores, logits or probabilities
    target: str               # its second input
    cut: float | None         # None: argmax over classes; else the prediction's decision threshold
    class_target: bool        # the target is a class index (not a float vector)

    def correct(self, pred: np.ndarray, target: np.ndarray, n: int) -> tuple[int, int]:
        """Return (correct decisions, decisions) for a batch of `n` samples."""
        if self.cut is None:
            guess = np.argmax(pred.reshape(n, -1), axis=1)
            truth = np.asarray(target).reshape(n) if self.class_target else np.argmax(target.reshape(n, -1), axis=1)
            return int(np.sum(guess == truth)), n
        # binary losses decide every element: a [K] multi-label target counts K decisions per sample
        decided = (pred > self.cut) == (np.asarray(target) > 0.5)
        return int(np.sum(decided)), int(decided.size)


def classifiers(graph) -> list[Classifier]:
    """Return the classification losses the loss is made of, in the order the loss expression names them.

    The first is the model's accuracy: in `cross_entropy(logits, y) + 0.3 * cross_entropy(aux, y)`, logits'.
    """
    if graph.loss is None:
        return []
    found = []
    for name in _written_order(graph, graph.loss):
        node = graph.node(name)
        if node.kind != "op" or node.op_name not in CLASSIFYING_LOSSES or len(node.inputs) < 2:
            continue
        cut = CLASSIFYING_LOSSES[node.op_name]
        class_target = graph.type_of(node.inputs[1]).kind == CLASS
        found.append(Classifier(name, node.inputs[0], node.inputs[1], cut, class_target))
    return found


def _written_order(graph, root: str) -> list[str]:
    """Return `root` and the nodes it is computed from, depth first along inputs in slot order (left to right)."""
    order, seen, stack = [], {root}, [root]
    while stack:
        name = stack.pop()
        order.append(name)
        for source in reversed(graph.node(name).inputs):   # reversed: the first input is popped first
            if source not in seen:
                seen.add(source)
                stack.append(source)
    return order


def value_nodes(graph, found: list[Classifier]) -> list[str]:
    """Return the op nodes whose values the classifiers read (feeds, params and constants are always at hand)."""
    return list(dict.fromkeys(n for c in found for n in (c.pred, c.target) if graph.node(n).kind == "op"))


class Tally:
    """Counts correct decisions of every classifier over the batches of a split."""

    def __init__(self, found: list[Classifier]):
        self.found = found
        self.correct = [0] * len(found)
        self.count = [0] * len(found)

    def add(self, values: dict, n: int) -> None:
        """Count one batch of `n` samples from a forward pass's values; returns None."""
        for i, c in enumerate(self.found):
            right, total = c.correct(values[c.pred], values[c.target], n)
            self.correct[i] += right
            self.count[i] += total

    def metrics(self, prefix: str = "") -> dict:
        """Return {prefix+"accuracy": first} and, with several classifiers, {prefix+"accuracies": {pred: acc}}."""
        if not self.found:
            return {}
        acc = [c / max(t, 1) for c, t in zip(self.correct, self.count)]
        out = {prefix + "accuracy": acc[0]}
        if len(self.found) > 1:
            out[prefix + "accuracies"] = {c.pred: a for c, a in zip(self.found, acc)}
        return out


def evaluate_split(program, x, y, batch: int = 1000, *, bar: str | None = None) -> dict:
    """Return {"loss", "accuracy"?, "accuracies"?, "samples"} of a one-input, one-label model over (x, y).

    {} when there is no data; see `evaluate_feeds`.
    """
    if x is None or len(x) == 0:
        return {}
    graph = program.graph
    feeds = {graph.inputs[0]: x, **({graph.labels[0]: y} if graph.labels and y is not None else {})}
    return evaluate_feeds(program, feeds, batch, bar=bar)


def evaluate_feeds(program, feeds: dict | None, batch: int = 1000, *, bar: str | None = None) -> dict:
    """Return {"loss", "accuracy"?, "accuracies"?, "samples"} of the model in eval mode over a split's feeds
    (name -> array, one per input and label).

    {} when there is no data. With `bar` (its label), a progress bar runs on a terminal.
    """
    n = len(next(iter(feeds.values()))) if feeds else 0
    if n == 0:
        return {}
    graph = program.graph
    found = classifiers(graph)
    wanted = tuple(dict.fromkeys([graph.loss, *value_nodes(graph, found)]))
    executor = program.executor(wanted, backward=False)
    total_loss, tally = 0.0, Tally(found)
    shown = progress_bar(n, bar) if bar else None
    for start in range(0, n, batch):
        fed = {name: a[start:start + batch] for name, a in feeds.items()}
        rows = min(batch, n - start)
        values = executor.forward(fed, program.params, program.state, train=False, rng=program.rng, batch=rows)
        total_loss += float(program.reduce_loss(values[graph.loss])) * rows
        tally.add(values, rows)
        if shown is not None:
            shown.update(rows)
    if shown is not None:
        shown.close()
    return {"loss": total_loss / n, **tally.metrics(), "samples": int(n)}


def format_metrics(m: dict) -> str:
    """Return `loss 0.1234 acc 98.12%` for a metrics dict (each accuracy named when there are several)."""
    text = f"loss {m['loss']:.4f}"
    if "accuracy" in m:
        text += f" acc {100 * m['accuracy']:.2f}%"
    if "accuracies" in m:
        text += " (" + ", ".join(f"{name} {100 * a:.2f}%" for name, a in m["accuracies"].items()) + ")"
    return text


def epoch_line(r: dict, epochs: int) -> str:
    """Return the one line an epoch prints: losses, accuracies, learning rate, time and speed."""
    text = f"epoch {r['epoch']}/{epochs}  train loss {r['train_loss']:.4f}"
    if "train_accuracy" in r:
        text += f" acc {100 * r['train_accuracy']:.2f}%"
    if "val_loss" in r:
        text += f"  val loss {r['val_loss']:.4f}"
        if "val_accuracy" in r:
            text += f" acc {100 * r['val_accuracy']:.2f}%"
    return text + f"  lr {r['lr']:.3g}  {r['seconds']:.1f} s ({r['samples_per_s']:,.0f} samples/s)"


def progress_bar(total: int, label: str, postfix: dict | None = None):
    """Return a tqdm bar on stderr counting `total` samples, or None when stderr is no terminal or tqdm is absent.

    `postfix` (e.g. the learning rate) is shown from the first frame on.
    """
    if not sys.stderr.isatty():
        return None
    try:
        # tqdm is optional (the [train] extra): without it there is simply no bar.
        from tqdm import tqdm
    except ImportError:
        return None
    columns, rows = _stderr_size()
    return tqdm(total=total, desc=label, unit="sample", unit_scale=total >= 10_000, leave=False, file=sys.stderr,
                postfix=postfix, ncols=columns, nrows=rows)


def _stderr_size() -> tuple[int, int]:
    """Return the terminal's (columns, rows), 80 x 24 where it reports 0 (tqdm hides its bar on a 0 x 0 terminal)."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except (OSError, ValueError):
        return 80, 24
    return size.columns or 80, size.lines or 24


def best_epoch(history: list[dict]) -> int | None:
    """Return the epoch with the lowest validation loss (the first of equals; early stopping's choice), or None."""
    val = [(r["val_loss"], r["epoch"]) for r in history if "val_loss" in r]
    return min(val, key=lambda le: le[0])[1] if val else None


# ---- per-step parameter traces (`graphc run --trace x,y`) and per-epoch sample evaluations ----------

MAX_TRACE_ELEMENTS = 64   # a traced tensor is written once per step: small ones only


def check_trace(names, params: dict) -> tuple[str, ...]:
    """Return the parameter names to trace, checked: each must name a parameter of <= MAX_TRACE_ELEMENTS
    elements (GraphcError otherwise, naming the parameters there are)."""
    names = tuple(dict.fromkeys(n.strip() for n in names if n.strip()))
    for name in names:
        if name not in params:
            small = [p for p, a in params.items() if a.size <= MAX_TRACE_ELEMENTS]
            raise GraphcError(f"--trace {name}: the model has no parameter `{name}`",
                              help=did_you_mean(name, params) or
                              ("parameters small enough to trace: " + ", ".join(small) if small
                               else "the model has no parameter small enough to trace"))
        if params[name].size > MAX_TRACE_ELEMENTS:
            raise GraphcError(f"--trace {name}: `{name}` has {params[name].size:,} elements "
                              f"(shape {list(params[name].shape)}); only tensors of at most "
                              f"{MAX_TRACE_ELEMENTS} elements are traced",
                              help="trace a scalar or a small parameter (a bias, a 2-D point), "
                                   "or read the weights from weights.npz after the run")
    return names


def trace_values(names, params: dict) -> dict:
    """Return {name: value} of the traced parameters now: a float for a scalar, else a flat list of floats."""
    return {name: (float(params[name]) if params[name].ndim == 0 else
                   [float(v) for v in params[name].reshape(-1)]) for name in names}


def trace_from_history(history: list[dict]) -> dict:
    """Return {name: [value before the first step, after step 1, ...]} from the epoch records'
    `trace_start` (the first record) and `trace` (each epoch's values after every step); {} untraced."""
    trace: dict[str, list] = {}
    for record in history:
        for name, value in record.get("trace_start", {}).items():
            trace[name] = [value]
        for name, values in record.get("trace", {}).items():
            trace.setdefault(name, []).extend(values)
    return trace


def sample_metrics(program, train: dict | None, test: dict | None, samples: int) -> dict:
    """Return the `eval_samples` record of an epoch: sample_train_loss/_acc on the first `samples` training
    samples and sample_test_loss/_acc on the first `samples` test samples, in inference mode (accuracy for
    classifiers only; a split that is absent or empty is left out). {} when `samples` is 0."""
    record = {}
    if not samples:
        return record
    for split, feeds in (("train", train), ("test", test)):
        if not feeds:
            continue
        measured = evaluate_feeds(program, {name: a[:samples] for name, a in feeds.items()})
        if "loss" in measured:
            record[f"sample_{split}_loss"] = measured["loss"]
        if "accuracy" in measured:
            record[f"sample_{split}_acc"] = measured["accuracy"]
    return record
