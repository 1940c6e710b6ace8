"""Gradcheck: a model's analytic gradients against float64 central differences.

Input: a Program compiled in float64 and a batch. Output: one row per parameter
and float input: how many coordinates were checked, the largest gradient on
each side, the worst error, and why the row failed (if it did).

What is differentiated is the objective a training step minimises: training
mode, so dropout drops and batchnorm normalises with the batch's statistics.
Every evaluation reseeds the noise generator, so each one draws the same
dropout mask, and running statistics are updated on a throwaway copy.

The error of one coordinate, analytic a against numerical n, is

    |a - n| / max(|a| + |n|, floor)

symmetric and bounded by 1 (a sign flip scores 1). The absolute floor (default
1e-5) is there because central differences carry round-off of about
1e-16 |loss| / eps (1e-10 at eps = 1e-6): a gradient that is truly 0 (a conv
bias followed by batchnorm) comes out as 1e-10 on one side and 0 on the other,
which a purely relative error calls a 100 % mismatch. Below the floor the error
is absolute, scaled by 1/floor; for a large loss the floor is raised to 100 times
that round-off, 100 * 2.2e-16 * |loss| / eps. A coordinate where either side, or the loss, is
NaN or infinite fails with that reason: both sides NaN is not agreement.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from graphc.diagnostics import GraphcError

FLOOR = 1e-5


@dataclass
class GradRow:
    """The check of one tensor: coordinates checked, the magnitudes on both sides, the worst error,
    and `reason` (empty when every coordinate is finite on both sides)."""

    name: str
    shape: tuple
    checked: int
    max_error: float          # the worst |a - n| / max(|a| + |n|, floor)
    max_abs_error: float      # the worst |a - n|
    max_analytic: float       # the largest |a| among the coordinates checked
    max_numeric: float        # the largest |n| among the coordinates checked
    reason: str = ""

    def ok(self, tol: float) -> bool:
        """Return True when every coordinate was finite and within `tol`."""
        return not self.reason and self.max_error <= tol


def check_options(eps: float, samples: int, tol: float, floor: float, batch: int) -> None:
    """Return None when the options make sense; raise GraphcError naming the first that does not."""
    if not (math.isfinite(eps) and eps > 0):
        raise GraphcError(f"--eps must be a positive step, got {eps:g}", help="the default is 1e-6")
    if samples < 1:
        raise GraphcError(f"--samples must be at least 1, got {samples}",
                          help="it is how many coordinates of each tensor are checked")
    if not (math.isfinite(tol) and tol > 0):
        raise GraphcError(f"--tol must be a positive number, got {tol:g}")
    if not (math.isfinite(floor) and floor > 0):
        raise GraphcError(f"--floor must be a positive number, got {floor:g}")
    if batch < 1:
        raise GraphcError(f"--batch must be at least 1, got {batch}")


def gradcheck(program, feeds: dict, *, eps: float = 1e-6, samples: int = 12, seed: int = 0,
              floor: float = FLOOR) -> list[GradRow]:
    """Return one GradRow per parameter and float input, comparing analytic and numerical gradients."""
    check_options(eps, samples, 1.0, floor, 1)
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

    # NaN and overflow are reported in the rows; NumPy's warnings would only repeat them, untidily.
    with np.errstate(all="ignore"):
        program.rng = np.random.default_rng(noise_seed)
        saved_state = {k: v.copy() for k, v in program.state.items()}
        _, grads = program.forward_backward(feeds, train=True, checked=False)
        grads = {k: np.array(v) for k, v in grads.items()}
        program.state.update(saved_state)
        base = objective()
        base_finite = math.isfinite(base)
        if base_finite:
            # Round-off of the numerical side grows with the loss: keep the floor 100x above it.
            floor = max(floor, 100 * np.finfo(np.float64).eps * abs(base) / eps)
        rng = np.random.default_rng(seed)
        rows = []
        for name in executor.plan.grad_targets:
            array = program.params[name] if name in program.params else feeds[name]
            analytic = grads.get(name, np.zeros_like(array)).reshape(-1)
            flat = array.reshape(-1)
            picks = np.arange(flat.size) if flat.size <= samples else rng.choice(flat.size, samples, replace=False)
            row = GradRow(name, tuple(array.shape), len(picks), 0.0, 0.0, 0.0, 0.0,
                          "" if base_finite else "the loss is NaN or infinite at this point")
            for k in picks:
                old = flat[k]
                flat[k] = old + eps
                plus = objective()
                flat[k] = old - eps
                minus = objective()
                flat[k] = old
                _score(row, float(analytic[k]), (plus - minus) / (2 * eps), floor)
            rows.append(row)
    return rows


def _score(row: GradRow, a: float, n: float, floor: float) -> None:
    """Fold one coordinate's analytic a and numerical n into the row (NaN, once seen, stays in the row)."""
    if not (math.isfinite(a) and math.isfinite(n)) and not row.reason:
        sides = [side for side, v in (("analytic", a), ("numerical", n)) if not math.isfinite(v)]
        row.reason = f"{' and '.join(sides)} gradient not finite ({a:g} vs {n:g})"
    diff = abs(a - n)
    row.max_abs_error = _worst(row.max_abs_error, diff)
    row.max_error = _worst(row.max_error, diff / max(abs(a) + abs(n), floor))
    row.max_analytic = _worst(row.max_analytic, abs(a))
    row.max_numeric = _worst(row.max_numeric, abs(n))


def _worst(current: float, value: float) -> float:
    """Return the larger of two magnitudes, NaN if either is NaN (Python's max would drop it)."""
    return math.nan if math.isnan(current) or math.isnan(value) else max(current, value)
