"""Gates: the primitive ops whose gradients are the textbook's local rules.

add and sub pass the gradient through (summed back over broadcast axes), mul
swaps its inputs, max/min route it to the winner, matmul multiplies by the
other operand transposed. Every composite op is checked against these.
Shapes are per sample and broadcast as NumPy does; a batched operand's batch
axis never aligns with a feature axis (see kernels.align).
"""
from __future__ import annotations

import numpy as np

from graphc.ops.kernels import align, grad_for, unbroadcast
from graphc.ops.registry import OpDef, Sample, register
from graphc.tensor_type import ShapeError, TensorType, broadcast_shapes, float_inputs, format_shape

_BINARY_SAMPLES = (
    Sample(((3, 4), (3, 4))),
    Sample(((3, 4), (4,)), batched=(True, False)),   # a bias-like broadcast
    Sample(((), (5,))),                               # a batched scalar against a vector
    Sample(((2, 1, 3), (4, 1)), batched=(True, False)),
)


def _binary_shape(in_types: list[TensorType], attrs: dict) -> TensorType:
    float_inputs(in_types, 0, 1)
    a, b = in_types
    shape = broadcast_shapes(a.shape, b.shape)
    return TensorType(shape, batched=a.batched or b.batched)


def _elementwise_flops(in_types, out_type, attrs) -> int:
    return out_type.size


def _aligned(ctx, a, b):
    rank = ctx.out_type.rank
    return align(a, ctx.in_types[0], rank), align(b, ctx.in_types[1], rank)


def _binary_grads(ctx, ga, gb, a_shape_src, b_shape_src):
    rank = ctx.out_type.rank
    ta, tb = ctx.in_types
    return [grad_for(ga, a_shape_src, ta, rank) if ctx.needs[0] else None,
            grad_for(gb, b_shape_src, tb, rank) if ctx.needs[1] else None]


def _binary(name, ufunc, backward, grad_rule, doc, saves="inputs", domain="normal", expansion=None):
    def forward(ctx, a, b):
        x, y = _aligned(ctx, a, b)
        return ufunc(x, y, out=ctx.out)

    return register(OpDef(
        name=name, family="gate", inputs=("a", "b"), shape_rule=_binary_shape,
        shape_doc="a, b -> their broadcast shape (NumPy rules on per-sample shapes)",
        forward=forward, backward=backward, flops=_elementwise_flops, grad_rule=grad_rule,
        doc=doc, samples=_BINARY_SAMPLES, saves=saves, domain=domain, expansion=expansion))


def _add_backward(ctx, g, args, out):
    # Only the input shapes matter: a zero-size stand-in would do, but the
    # arrays are not saved, so use the planned types to rebuild the shapes.
    return _binary_grads(ctx, g, g, _shape_of(ctx, 0, g), _shape_of(ctx, 1, g))


def _sub_backward(ctx, g, args, out):
    return _binary_grads(ctx, g, np.negative(g), _shape_of(ctx, 0, g), _shape_of(ctx, 1, g))


def _shape_of(ctx, i, g):
    """A zero-strided stand-in with input i's run-time shape (add/sub save nothing)."""
    t = ctx.in_types[i]
    shape = t.runtime_shape(g.shape[0]) if t.batched else t.shape
    return np.broadcast_to(np.zeros((), g.dtype), shape)


def _mul_backward(ctx, g, args, out):
    a, b = args
    x, y = _aligned(ctx, a, b)
    # mul swaps: each input's gradient is the other input times the gradient.
    return _binary_grads(ctx, g * y if ctx.needs[0] else None, g * x if ctx.needs[1] else None, a, b)


def _div_backward(ctx, g, args, out):
    a, b = args
    x, y = _aligned(ctx, a, b)
    ga = g / y if ctx.needs[0] else None
    gb = -g * x / (y * y) if ctx.needs[1] else None
    return _binary_grads(ctx, ga, gb, a, b)


def _pow_backward(ctx, g, args, out):
    a, b = args
    x, y = _aligned(ctx, a, b)
    ga = g * y * np.power(x, y - 1) if ctx.needs[0] else None
    gb = g * np.power(x, y) * np.log(x) if ctx.needs[1] else None
    return _binary_grads(ctx, ga, gb, a, b)


def _route(winner_a):
    def backward(ctx, g, args, out):
        a, b = args
        x, y = _aligned(ctx, a, b)
        # The gradient goes to the winner; a tie splits it evenly, as torch.maximum does.
        share_a = np.where(x == y, 0.5, winner_a(x, y).astype(g.dtype))
        ga = g * share_a if ctx.needs[0] else None
        gb = g * (1 - share_a) if ctx.needs[1] else None
        return _binary_grads(ctx, ga, gb, a, b)
    return backward


_binary("add", np.add, _add_backward, "add: pass-through",
        "a + b, NumPy broadcasting (torch.add).", saves="none")
_binary("sub", np.subtract, _sub_backward, "sub: pass-through, negated for b",
        "a - b, NumPy broadcasting (torch.sub).", saves="none")
_binary("mul", np.multiply, _mul_backward, "mul: swap",
        "a * b elementwise (torch.mul).")
_binary("div", np.divide, _div_backward, "div: 1/b and -a/b^2",
        "a / b elementwise (torch.div).", domain="positive")
_binary("pow", np.power, _pow_backward, "pow: b*a^(b-1) and a^b*log(a)",
        "a ** b elementwise (torch.pow); defined for a > 0 when b needs a gradient.",
        domain="positive")
_binary("max", np.maximum, _route(np.greater), "max: route to the winner (ties split evenly)",
        "Elementwise maximum (torch.maximum). Tie rule: the gradient is split evenly "
        "between tied inputs, as torch.maximum does.", domain="distinct")
_binary("min", np.minimum, _route(np.less), "min: route to the winner (ties split evenly)",
        "Elementwise minimum (torch.minimum). Tie rule: the gradient is split evenly "
        "between tied inputs, as torch.minimum does.", domain="distinct")


# ---- unary gates -------------------------------------------------------------

def _unary_shape(in_types, attrs):
    float_inputs(in_types, 0)
    return in_types[0].with_shape(in_types[0].shape)


def _unary(name, forward, backward, grad_rule, doc, saves, domain="normal"):
    return register(OpDef(
        name=name, family="gate", inputs=("x",), shape_rule=_unary_shape, forward=forward,
        shape_doc="x -> the same shape",
        backward=backward, flops=_elementwise_flops, grad_rule=grad_rule, doc=doc,
        samples=(Sample(((3, 4),)), Sample(((),)), Sample(((2, 3, 5),))), saves=saves,
        domain=domain))


_unary("neg", lambda ctx, x: np.negative(x, out=ctx.out),
       lambda ctx, g, args, out: [np.negative(g)],
       "neg: negate", "-x (torch.neg).", saves="none")
_unary("exp", lambda ctx, x: np.exp(x, out=ctx.out),
       lambda ctx, g, args, out: [g * out],
       "exp: times its own output", "e^x (torch.exp).", saves="output")
_unary("log", lambda ctx, x: np.log(x, out=ctx.out),
       lambda ctx, g, args, out: [g / args[0]],
       "log: divide by the input", "Natural logarithm (torch.log); x > 0.", saves="inputs",
       domain="positive")


# ---- matmul ------------------------------------------------------------------

def _matmul_shape(in_types, attrs):
    float_inputs(in_types, 0, 1)
    a, b = in_types
    if a.rank == 0 or b.rank == 0:
        raise ShapeError("@ needs operands with at least one dimension",
                         help="use * to multiply by a scalar")
    sa = (1,) + a.shape if a.rank == 1 else a.shape
    sb = b.shape + (1,) if b.rank == 1 else b.shape
    if sa[-1] != sb[-2]:
        raise ShapeError(
            f"inner dimensions differ in {format_shape(a.shape)} @ {format_shape(b.shape)}: "
            f"{sa[-1]} vs {sb[-2]}",
            help="the last dimension of the left operand must equal the "
                 "first (of the last two) of the right operand")
    batch = broadcast_shapes(sa[:-2], sb[:-2])
    shape = batch + (sa[-2],) * (a.rank > 1) + (sb[-1],) * (b.rank > 1)
    return TensorType(shape, batched=a.batched or b.batched)


def _matmul_flops(in_types, out_type, attrs):
    a = in_types[0]
    return 2 * a.shape[-1] * out_type.size


def _promoted(ctx, a, b):
    """Views of a and b as stacks of matrices, with aligned stack axes."""
    ta, tb = ctx.in_types
    A = a.reshape(a.shape[:-1] + (1, a.shape[-1])) if ta.rank == 1 else a
    B = b.reshape(b.shape + (1,)) if tb.rank == 1 else b
    ra, rb = max(ta.rank, 2), max(tb.rank, 2)
    rank = max(ra, rb)
    if ta.batched and ra < rank:
        A = A.reshape((A.shape[0],) + (1,) * (rank - ra) + A.shape[1:])
    if tb.batched and rb < rank:
        B = B.reshape((B.shape[0],) + (1,) * (rank - rb) + B.shape[1:])
    return A, B


def _folds(ctx) -> bool:
    """True when a's batch and leading axes can fold into one GEMM with a 2-D b."""
    ta, tb = ctx.in_types
    return not tb.batched and tb.rank == 2


def _matmul_forward(ctx, a, b):
    if _folds(ctx):
        k = a.shape[-1]
        np.matmul(a.reshape(-1, k), b, out=ctx.out.reshape(-1, b.shape[-1]))
        return ctx.out
    A, B = _promoted(ctx, a, b)
    out_view = ctx.out.reshape(np.broadcast_shapes(A.shape[:-2], B.shape[:-2]) + (A.shape[-2], B.shape[-1]))
    np.matmul(A, B, out=out_view)
    return ctx.out


def _matmul_backward(ctx, g, args, out):
    a, b = args
    if _folds(ctx):
        k, m = b.shape
        g2 = g.reshape(-1, m)
        ga = (g2 @ b.T).reshape(a.shape) if ctx.needs[0] else None
        gb = a.reshape(-1, k).T @ g2 if ctx.needs[1] else None
        return [ga, gb]
    A, B = _promoted(ctx, a, b)
    G = g.reshape(np.broadcast_shapes(A.shape[:-2], B.shape[:-2]) + (A.shape[-2], B.shape[-1]))
    ga = gb = None
    if ctx.needs[0]:
        ga = unbroadcast(G @ np.swapaxes(B, -1, -2), A.shape).reshape(a.shape)
    if ctx.needs[1]:
        gb = unbroadcast(np.swapaxes(A, -1, -2) @ G, B.shape).reshape(b.shape)
    return [ga, gb]


register(OpDef(
    name="matmul", family="gate", inputs=("a", "b"), shape_rule=_matmul_shape,
    shape_doc="a [..., n, k] @ b [..., k, m] -> [..., n, m] (torch.matmul's rules per sample)",
    forward=_matmul_forward, backward=_matmul_backward, flops=_matmul_flops,
    grad_rule="matmul: g @ b^T and a^T @ g",
    doc="Matrix product with NumPy/torch.matmul semantics on per-sample shapes: 1-D operands "
        "are promoted and the promoted axis removed, stacks broadcast. `a @ b` in the language.",
    samples=(Sample(((5,), (5, 3)), batched=(True, False)),
             Sample(((2, 5), (5, 3)), batched=(True, False)),
             Sample(((4, 5), (5,)), batched=(False, True)),
             Sample(((5,), (5,))),
             Sample(((2, 3, 4), (4, 2))),
             Sample(((3, 4), (2, 4, 5)), batched=(True, False)))))
