"""Curves: per-epoch training history -> curves.png (loss and accuracy, train vs validation).

Input: the history records the trainer keeps. Output: a PNG written
atomically. Loss is drawn on a log scale when it spans more than a decade,
where a linear axis would flatten everything after the first epochs; the
epoch with the best validation loss is marked on both panels.
"""
from __future__ import annotations

import os
from pathlib import Path


def plot_curves(history: list[dict], path: Path, title: str = "") -> None:
    """Write the loss and accuracy curves of a training history to `path`."""
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
    ax.plot(epochs, train_loss, label="train", **train_style)
    val = [(r["epoch"], r["val_loss"]) for r in history if "val_loss" in r]
    best = min(val, key=lambda ev: ev[1]) if val else None
    if val:
        ax.plot(*zip(*val), label="validation", **val_style)
    losses = [v for v in train_loss + [v for _, v in val] if v > 0]
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
    ax.legend()
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
    tmp = Path(str(path) + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
