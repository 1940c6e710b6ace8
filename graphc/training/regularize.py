"""Regularisation and early stopping: the two per-step and per-epoch rules the train section adds.

Input: the weights that decay (`decay` parameters of the graph), their
gradients, and the per-epoch validation loss. Output: gradients with the L2
(weight_decay) and L1 terms added, and the early-stopping verdict with the
counters a checkpoint keeps.
"""
from __future__ import annotations

import numpy as np


def add_weight_penalties(grads: dict, params: dict, decayed: list[str], *, weight_decay: float, l1: float) -> None:
    """Add `weight_decay * w` (L2, as torch's weight_decay) and `l1 * sign(w)` to the gradient of
    each decayed weight, replacing the entries of `grads`; returns None."""
    if not (weight_decay or l1):
        return
    for name in decayed:
        if name not in grads:
            continue
        p = params[name]
        extra = 0
        if weight_decay:
            extra = weight_decay * p
        if l1:
            extra = extra + l1 * np.sign(p)
        grads[name] = grads[name] + extra


class EarlyStopping:
    """Tracks the best validation loss; `patience` epochs without a better one stop training (0: never)."""

    def __init__(self, patience: int, best_val: float | None = None, stale_epochs: int = 0):
        self.patience, self.best_val, self.stale_epochs = patience, best_val, stale_epochs

    @property
    def stopped(self) -> bool:
        """Return True when the patience has already run out (e.g. in a resumed run)."""
        return bool(self.patience) and self.stale_epochs >= self.patience

    def update(self, val_loss: float | None) -> bool:
        """Record an epoch's validation loss (None: no validation data); return True when it is a new best."""
        if val_loss is None:
            return False
        if self.best_val is None or val_loss < self.best_val:
            self.best_val, self.stale_epochs = val_loss, 0
            return True
        self.stale_epochs += 1
        return False
