"""Curves: training history -> curves.png (loss and accuracy, train vs validation).

Input: the history records the trainer keeps. Output: a PNG written
atomically. The training loss of every step (the per-iteration curve of the
textbooks) is drawn thin behind the per-epoch means, step i of n in epoch e at
x = e - 1 + i/n, so a one-epoch run still shows a curve. Loss is drawn on a
log scale when it spans more than a decade, where a linear axis would flatten
everything after the first epochs; the epoch with the best validation loss is
marked on both panels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from graphc.training.checkpoint import atomic_write


def plot_curves(history: list[dict], path: Path, title: str = "") -> None:
    """Write the loss and accuracy curves of a training history to `path`; returns None.

    Raises ImportError when matplotlib (the [train] extra) is not installed.
    """
    # matplotlib is optional and slow to import: loaded only when curves are drawn.
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [r["epoch"] for r in history]
    has_acc = any("train_accuracy" in r for r in history)
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(10 if has_acc else 5.5, 4), squeeze=False)
    ax = axes[0][0]
    # Markers only while they can be told apart (XOR trains for 2,000 epochs).
    train_style = {"marker": "o" if len(epochs) <= 40 else None, "color": "#1565c0", "linestyle": "-"}
    val_style = {"marker": "s" if len(epochs) <= 40 else None, "color": "#e65100", "linestyle": "--"}
    train_loss = [r["train_loss"] for r in history]
    step_x, step_y = step_points(history)
    if step_y:
        ax.plot(step_x, step_y, color="#90caf9", linewidth=0.7, label="train, per step")
        window = len(step_y) // 50
        if window >= 2:
            # Mini-batch losses are noisy: a moving mean over ~2% of the steps shows the trend through them.
            smooth = np.convolve(step_y, np.ones(window) / window, mode="valid")
            ax.plot(step_x[window - 1:], smooth, color="#1e88e5", linewidth=1.2,
                    label=f"train, mean of {window} steps")
    ax.plot(epochs, train_loss, label="train, epoch mean" if step_y else "train", **train_style)
    val = [(r["epoch"], r["val_loss"]) for r in history if "val_loss" in r]
    best = min(val, key=lambda ev: ev[1]) if val else None
    if val:
        ax.plot(*zip(*val), label="validation", **val_style)
    losses = [v for v in train_loss + step_y + [v for _, v in val] if v > 0]
    if losses and max(losses) / min(losses) > 10:
        ax.set_yscale("log")
    if best is not None:
        ax.axvline(best[0], color="#2e7d32", linewidth=0.8, linestyle=":")
        ax.plot([best[0]], [best[1]], "*", color="#2e7d32", markersize=11,
                label=f"best validation: epoch {best[0]}, {best[1]:.4g}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss" + (" (log scale)" if ax.get_yscale() == "log" else ""))
    ax.set_title("loss")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(loc="lower left", framealpha=0.9)   # losses fall left to right: that corner stays empty
    if has_acc:
        ax = axes[0][1]
        ax.plot(epochs, [100 * r.get("train_accuracy", float("nan")) for r in history], label="train",
                **train_style)
        val_acc = [(r["epoch"], 100 * r["val_accuracy"]) for r in history if "val_accuracy" in r]
        if val_acc:
            ax.plot(*zip(*val_acc), label="validation", **val_style)
        if best is not None:
            ax.axvline(best[0], color="#2e7d32", linewidth=0.8, linestyle=":", label="best validation loss")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.set_title("accuracy")
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    finally:
        plt.close(fig)


def step_points(history: list[dict]) -> tuple[list[float], list[float]]:
    """Return (x, loss) of every recorded training step, x in epochs: step i of n in epoch e sits at e - 1 + i/n."""
    xs: list[float] = []
    ys: list[float] = []
    for r in history:
        losses = r.get("step_loss") or []   # absent in histories written before steps were recorded
        n = len(losses)
        xs += [r["epoch"] - 1 + (i + 1) / n for i in range(n)]
        ys += [float(v) for v in losses]
    return xs, ys
