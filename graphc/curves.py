"""Curves: per-epoch training history -> curves.png (loss and accuracy, train vs validation).

Input: the history records the trainer keeps. Output: a PNG written
atomically. Loss is drawn on a log scale when it spans more than a decade,
where a linear axis would flatten everything after the first epochs.
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
    train_loss = [r["train_loss"] for r in history]
    ax.plot(epochs, train_loss, "o-", label="train")
    val = [(r["epoch"], r["val_loss"]) for r in history if "val_loss" in r]
    if val:
        ax.plot(*zip(*val), "s--", label="validation")
    losses = [v for v in train_loss + [v for _, v in val] if v > 0]
    if losses and max(losses) / min(losses) > 10:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("loss")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if has_acc:
        ax = axes[0][1]
        ax.plot(epochs, [100 * r.get("train_accuracy", float("nan")) for r in history], "o-", label="train")
        val_acc = [(r["epoch"], 100 * r["val_accuracy"]) for r in history if "val_accuracy" in r]
        if val_acc:
            ax.plot(*zip(*val_acc), "s--", label="validation")
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
