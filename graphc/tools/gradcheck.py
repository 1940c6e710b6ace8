"""Gradcheck: a model's analytic gradients against float64 central differences.

Input: a Program compiled in float64. Output: one row per parameter and float
input with its maximum relative error. Dropout draws the same mask for every
evaluation (the noise generator is reseeded before each forward pass), so the
function being differentiated is fixed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class GradRow:
    """The check of one tensor: how many coordinates, and the worst relative error."""

    name: str
    shape: tuple
    checked: int
    max_rel_error: float
    max_abs_error: float


def gradcheck(program, feeds: dict, *, eps: float = 1e-6, samples: int = 12, seed: int = 0) -> list[GradRow]:
    """Return one GradRow per parameter and float input, comparing analytic and numerical gradients."""
    feeds, _ = program.check_feeds(feeds, need_labels=True)
    noise_seed = 12345

    executor = program.executor_for_backward()
    batch = next(iter(feeds.values())).shape[0]

    def objective() -> float:
        # Same dropout mask every time; running statistics updated on a throwaway copy.
        state = {k: v.copy() for k, v in program.state.items()}
        values = executor.forward(feeds, program.params, state, train=True,
                                  rng=np.random.default_rng(noise_seed), batch=batch)
        return float(program.reduce_loss(values[program.graph.objective]).sum())

    program.rng = np.random.default_rng(noise_seed)
    saved_state = {k: v.copy() for k, v in program.state.items()}
    _, grads = program.forward_backward(feeds, train=True, checked=False)
    grads = {k: np.array(v) for k, v in grads.items()}
    program.state.update(saved_state)
    rng = np.random.default_rng(seed)
    rows = []
    for name in executor.plan.grad_targets:
        array = program.params[name] if name in program.params else feeds[name]
        analytic = grads.get(name, np.zeros_like(array))
        flat = array.reshape(-1)
        picks = np.arange(flat.size) if flat.size <= samples else rng.choice(flat.size, samples, replace=False)
        worst_rel = worst_abs = 0.0
        for k in picks:
            old = flat[k]
            flat[k] = old + eps
            plus = objective()
            flat[k] = old - eps
            minus = objective()
            flat[k] = old
            numeric = (plus - minus) / (2 * eps)
            a = float(analytic.reshape(-1)[k])
            diff = abs(a - numeric)
            worst_abs = max(worst_abs, diff)
            worst_rel = max(worst_rel, diff / max(abs(a), abs(numeric), 1e-7))
        rows.append(GradRow(name, tuple(array.shape), len(picks), worst_rel, worst_abs))
    return rows
