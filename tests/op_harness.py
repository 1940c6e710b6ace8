"""Run one registry op in isolation.

`Case`: a registry sample instantiated with random inputs from the op's
gradcheck domain, forward into a planned buffer, backward, and float64 central
differences (the registry-driven tests: test_ops, test_torch, test_expansions).
`run_op`: the one single-op runner for hand-written arrays (test_layers,
test_losses, test_norm).
"""
from __future__ import annotations

import numpy as np

from graphc.ops import Ctx, OpDef, Sample, lookup, resolve_attrs
from graphc.tensor_type import CLASS, TensorType

BATCH = 3


def sample_types(op: OpDef, sample: Sample) -> list[TensorType]:
    """Return the input types a sample describes."""
    batched = sample.batched or (True,) * len(sample.shapes)
    types = []
    for i, shape in enumerate(sample.shapes):
        if i in sample.classes:
            types.append(TensorType((), CLASS, batched[i], sample.classes[i]))
        else:
            types.append(TensorType(tuple(shape), batched=batched[i]))
    return types


def draw(domain: str, shape: tuple, rng: np.random.Generator, index: int) -> np.ndarray:
    """Return float64 values from a gradcheck domain.

    distinct: unique values on a 0.1 grid, shifted per input, so no two values
    are within finite-difference reach of a tie or of 0 (max, relu, pooling).
    """
    size = int(np.prod(shape, dtype=np.int64))
    if domain == "positive":
        return rng.uniform(0.5, 2.0, shape)
    if domain == "unit":
        return rng.uniform(0.1, 0.9, shape)
    if domain == "distinct":
        grid = (rng.permutation(size) - size / 2).astype(np.float64) * 0.1
        return (grid + 0.031 + 0.023 * index).reshape(shape)
    return rng.standard_normal(shape)


class Case:
    """One op sample, instantiated with concrete arrays."""

    def __init__(self, op: OpDef, sample: Sample, seed: int = 0, dtype=np.float64, batch: int = BATCH):
        rng = np.random.default_rng(seed)
        self.op, self.dtype, self.batch = op, dtype, batch
        self.attrs = resolve_attrs(op, dict(sample.attrs))
        self.in_types = sample_types(op, sample)
        self.out_type = op.shape_rule(self.in_types, self.attrs)
        self.args = []
        for i, t in enumerate(self.in_types):
            shape = t.runtime_shape(batch)
            if t.kind == CLASS:
                self.args.append(rng.integers(0, t.classes, shape))
            else:
                self.args.append(draw(op.domain, shape, rng, i).astype(dtype))
        self.param_specs = op.active_params(self.attrs)
        for j, spec in enumerate(self.param_specs):
            shape = spec.shape(self.in_types, self.attrs)
            value = draw(op.domain if op.domain == "distinct" else "normal", shape, rng, 10 + j)
            if spec.role == "gamma":    # norm scales near 1, as initialised
                value = 1.0 + 0.3 * value
            self.args.append(value.astype(dtype))
        self.state0 = {s.role: np.full(s.shape(self.in_types, self.attrs), s.fill, dtype)
                       for s in op.state}
        slot_names = [op.inputs[min(i, len(op.inputs) - 1)] for i in range(len(self.in_types))]
        self.nondiff = [name in op.nondiff for name in slot_names] + [False] * len(self.param_specs)
        self.kinds = [t.kind for t in self.in_types] + ["float"] * len(self.param_specs)

    def forward(self, args=None, train: bool = True):
        """Run forward with fresh state and a fixed noise seed; return (out, ctx)."""
        args = self.args if args is None else args
        out_buf = np.empty(self.out_type.runtime_shape(self.batch), self.dtype)
        needs = tuple(not nd and k == "float" for nd, k in zip(self.nondiff, self.kinds))
        ctx = Ctx(self.attrs, self.in_types, self.out_type, train=train,
                  state={k: v.copy() for k, v in self.state0.items()},
                  rng=np.random.default_rng(1234), needs=needs, out=out_buf)
        out = self.op.forward(ctx, *args)
        return out, ctx

    def backward(self, grad_out, train: bool = True):
        """Return the analytic gradients for grad_out (one per argument)."""
        out, ctx = self.forward(train=train)
        saves = self.op.saves
        args = self.args if saves in ("inputs", "both") else None
        out_arg = out if saves in ("output", "both") else None
        return self.op.backward(ctx, grad_out, args, out_arg)

    def numeric(self, grad_out, index: int, eps: float = 1e-6, train: bool = True) -> np.ndarray:
        """Return the central-difference gradient of sum(out * grad_out) w.r.t. argument `index`."""
        base = [a.copy() for a in self.args]
        grad = np.zeros_like(base[index], dtype=np.float64)
        flat = base[index].reshape(-1)
        for k in range(flat.size):
            old = flat[k]
            flat[k] = old + eps
            plus = float(np.sum(self.forward(base, train)[0] * grad_out))
            flat[k] = old - eps
            minus = float(np.sum(self.forward(base, train)[0] * grad_out))
            flat[k] = old
            grad.reshape(-1)[k] = (plus - minus) / (2 * eps)
        return grad


def run_op(name: str, args: list, in_types: list[TensorType], attrs: dict | None = None, *,
           needs: tuple[bool, ...] | None = None, train: bool = True, state: dict | None = None,
           seed: int = 0, grad_out=None):
    """Run op `name` forward on concrete arrays (inputs then parameters), and backward when
    grad_out is given; return (out, grads or None, ctx).

    needs defaults to True for every float input that is not a label and for every
    parameter; backward gets the arguments and output only as the op's `saves` says.
    """
    op = lookup(name)
    resolved = resolve_attrs(op, attrs or {})
    in_types = list(in_types)
    out_type = op.shape_rule(in_types, resolved)
    batch = next((a.shape[0] for a, t in zip(args, in_types) if t.batched), 1)
    if needs is None:
        slots = [op.inputs[min(i, len(op.inputs) - 1)] for i in range(len(in_types))]
        needs = tuple(t.kind != CLASS and n not in op.nondiff for t, n in zip(in_types, slots))
        needs += (True,) * (len(args) - len(in_types))
    ctx = Ctx(resolved, in_types, out_type, train=train, state=state, rng=np.random.default_rng(seed),
              needs=needs, out=np.empty(out_type.runtime_shape(batch), args[0].dtype))
    out = op.forward(ctx, *args)
    if grad_out is None:
        return out, None, ctx
    saved_args = args if op.saves in ("inputs", "both") else None
    saved_out = out if op.saves in ("output", "both") else None
    return out, op.backward(ctx, np.asarray(grad_out, out.dtype), saved_args, saved_out), ctx
