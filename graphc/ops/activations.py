"""Activations: elementwise nonlinearities (and softmax / log_softmax along one axis).

Input: one float tensor (prelu adds a learnable slope). Output: a tensor of the
same shape and batching. Each op follows the torch.nn.functional definition
named in its doc, including the gradient at the kink (relu gives 0 at exactly
0, as torch.relu does). softmax and log_softmax subtract the maximum first
(log-sum-exp), so logits of +-1e4 stay finite.
"""
from __future__ import annotations

import numpy as np

from graphc.ops.kernels import log_softmax, maximum_zero
from graphc.ops.registry import Attr, OpDef, ParamSpec, Sample, register
from graphc.tensor_type import ShapeError, TensorType, float_inputs, format_shape

_SAMPLES = (Sample(((3, 4),)), Sample(((),)), Sample(((2, 3, 5),)), Sample(((7,),), batched=(False,)))


def _same_shape(in_types: list[TensorType], attrs: dict) -> TensorType:
    """Return the input's type: an elementwise activation keeps shape and batching."""
    float_inputs(in_types, 0)
    return in_types[0].with_shape(in_types[0].shape)


def _per_element(cost: int):
    """Return a flops function charging `cost` FLOPs per output element."""
    def flops(in_types, out_type, attrs) -> int:
        return cost * out_type.size
    return flops


def _activation(name, forward, backward, grad_rule, doc, *, saves="inputs", domain="normal",
                expansion=None, attrs=(), params=(), cost=1, samples=_SAMPLES, returns_view=False,
                shape_rule=_same_shape, inplace=False, zero_grad=False):
    """Register one activation op and return its OpDef."""
    return register(OpDef(
        name=name, family="activation", inputs=("x",), shape_rule=shape_rule, forward=forward,
        shape_doc="x -> the same shape",
        backward=backward, flops=_per_element(cost), grad_rule=grad_rule, doc=doc,
        samples=samples, attrs=attrs, params=params, saves=saves, domain=domain,
        expansion=expansion, returns_view=returns_view, inplace=inplace,
        zero_grad=frozenset({"x"}) if zero_grad else frozenset()))


# ---- identity and step ---------------------------------------------------------

_activation(
    "identity", lambda ctx, x: x, lambda ctx, g, args, out: [g if ctx.needs[0] else None],
    "identity: pass-through",
    "Returns its input unchanged, as a view of the same array (torch.nn.Identity). "
    "The gradient passes through.",
    saves="none", returns_view=True, cost=0, expansion="x")


def _step_forward(ctx, x):
    # bool -> float is a safe cast, so the comparison writes 1.0 / 0.0 straight into out.
    return np.greater(x, 0, out=ctx.out)


def _step_backward(ctx, g, args, out):
    return [np.zeros_like(g) if ctx.needs[0] else None]


_activation(
    "step", _step_forward, _step_backward, "step: zero everywhere",
    "Heaviside step: 1 where x > 0, else 0 (torch.heaviside(x, 0)). Its derivative is 0 "
    "everywhere it exists (and undefined at 0), so no gradient flows through it: this is why "
    "a perceptron built from step units cannot be trained by backpropagation.",
    saves="none", domain="distinct", zero_grad=True)


# ---- sigmoid and tanh ----------------------------------------------------------

def _sigmoid_forward(ctx, x):
    # 1 / (1 + exp(-x)) has no cancellation anywhere; for very negative x exp(-x)
    # overflows to inf and 1 / inf = 0 is the correct limit, so that overflow is
    # expected and silenced. (Masked or two-branch forms are 3-5x slower in NumPy.)
    out = ctx.out
    np.negative(x, out=out)
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    np.add(out, 1, out=out)
    return np.reciprocal(out, out=out)


def _sigmoid_backward(ctx, g, args, out):
    if not ctx.needs[0]:
        return [None]
    grad = np.asarray(np.subtract(1, out))   # an array even for a 0-d output (out= below)
    np.multiply(grad, out, out=grad)
    np.multiply(grad, g, out=grad)
    return [grad]


_activation(
    "sigmoid", _sigmoid_forward, _sigmoid_backward, "sigmoid: g * y * (1 - y)",
    "Logistic sigmoid 1 / (1 + exp(-x)) (torch.sigmoid), computed without overflow for "
    "large |x|. Backward uses the saved output y: dy/dx = y (1 - y).",
    saves="output", cost=4, expansion="1 / (1 + exp(-x))", inplace=True)


def _tanh_backward(ctx, g, args, out):
    if not ctx.needs[0]:
        return [None]
    grad = np.asarray(np.multiply(out, out))   # an array even for a 0-d output (out= below)
    np.subtract(1, grad, out=grad)
    np.multiply(grad, g, out=grad)
    return [grad]


_activation(
    "tanh", lambda ctx, x: np.tanh(x, out=ctx.out), _tanh_backward, "tanh: g * (1 - y^2)",
    "Hyperbolic tangent (torch.tanh). Backward uses the saved output y: dy/dx = 1 - y^2.",
    saves="output", cost=4, expansion="2 / (1 + exp(-2 * x)) - 1", inplace=True)


# ---- the relu family -----------------------------------------------------------

def _relu_forward(ctx, x):
    if x.flags.c_contiguous and ctx.out.flags.c_contiguous:
        return maximum_zero(x, ctx.out)
    return np.maximum(x, 0, out=ctx.out)


def _relu_backward(ctx, g, args, out):
    # out > 0 exactly where x > 0: the gradient is 0 at x == 0, as torch.relu.
    if not ctx.needs[0]:
        return [None]
    if not (g.flags.c_contiguous and out.flags.c_contiguous and g.shape == out.shape):
        return [g * (out > 0)]
    # The comparison writes 1.0 / 0.0 into the result, which then scales g in place:
    # no boolean temporary, and a float * float loop (0.12 ms on 432k float32 against
    # 0.15 for g * (out > 0)).
    grad = np.greater(out, 0, out=np.empty_like(g))
    return [np.multiply(g, grad, out=grad)]


_activation(
    "relu", _relu_forward, _relu_backward,
    "relu: pass where x > 0 (0 at x == 0)",
    "Rectified linear unit max(x, 0) (torch.relu). Tie rule: the gradient at exactly x = 0 "
    "is 0, as torch.relu gives. The expansion max(x, 0) agrees only away from 0: the max gate "
    "would split a tie at 0 evenly.",
    saves="output", domain="distinct", expansion="max(x, 0)", inplace=True)


def _leaky_forward(ctx, x):
    slope = ctx.attrs["slope"]
    np.copyto(ctx.out, x)
    np.multiply(x, slope, out=ctx.out, where=x <= 0)
    return ctx.out


def _leaky_backward(ctx, g, args, out):
    if not ctx.needs[0]:
        return [None]
    (x,) = args
    return [np.where(x > 0, g, g * ctx.attrs["slope"])]


_activation(
    "leaky_relu", _leaky_forward, _leaky_backward, "leaky_relu: g where x > 0, else slope * g",
    "Leaky ReLU (torch.nn.functional.leaky_relu): x where x > 0, else slope * x; `slope` is "
    "torch's negative_slope. Tie rule: at exactly x = 0 the gradient is slope, as in torch.",
    domain="distinct", cost=2, expansion="max(x, 0) + slope * min(x, 0)",
    attrs=(Attr("slope", "float", 0.01, "gradient for x < 0 (torch negative_slope)"),),
    samples=_SAMPLES + (Sample(((4, 3),), attrs={"slope": 0.2}),))


def _elu_forward(ctx, x):
    # expm1 of min(x, 0): never overflows and keeps precision near 0.
    alpha = ctx.attrs["alpha"]
    neg = np.asarray(np.expm1(np.minimum(x, 0)))   # an array even for a 0-d x (out= below)
    np.multiply(neg, alpha, out=neg)
    np.copyto(ctx.out, x)
    np.copyto(ctx.out, neg, where=x <= 0)
    return ctx.out


def _elu_backward(ctx, g, args, out):
    if not ctx.needs[0]:
        return [None]
    (x,) = args
    slope = np.asarray(np.exp(np.minimum(x, 0)))   # an array even for a 0-d x (out= below)
    np.multiply(slope, ctx.attrs["alpha"], out=slope)
    return [np.where(x > 0, g, g * slope)]


_activation(
    "elu", _elu_forward, _elu_backward, "elu: g where x > 0, else g * alpha * exp(x)",
    "Exponential linear unit (torch.nn.functional.elu): x where x > 0, else "
    "alpha * (exp(x) - 1). Tie rule: at exactly x = 0 the gradient is alpha, as in torch.",
    domain="distinct", cost=4, expansion="max(x, 0) + alpha * (exp(min(x, 0)) - 1)",
    attrs=(Attr("alpha", "float", 1.0, "scale of the negative part"),),
    samples=_SAMPLES + (Sample(((4, 3),), attrs={"alpha": 0.5}),))


# ---- prelu -----------------------------------------------------------------------

def _prelu_shape(in_types, attrs):
    t = _same_shape(in_types, attrs)
    if attrs["per_channel"] and t.rank == 0:
        raise ShapeError("prelu with per_channel=true needs an input with a channel axis",
                         help=f"the input's shape is {format_shape(t.shape)}; "
                              "use per_channel=false for a single shared slope", arg="per_channel")
    return t


def _prelu_slope_shape(in_types, attrs) -> tuple[int, ...]:
    # torch.nn.PReLU(num_parameters=C) uses dim 1 of the batched tensor: per-sample dim 0.
    return (in_types[0].shape[0],) if attrs["per_channel"] else (1,)


def _slope_view(ctx, slope):
    """Return the slope shaped to broadcast over the channel axis (per-sample dim 0)."""
    rank = ctx.in_types[0].rank
    # The shared slope is viewed 0-d: its stored shape (1,) would widen a 0-d input to (1,).
    return slope.reshape(slope.shape + (1,) * (rank - 1)) if ctx.attrs["per_channel"] else slope.reshape(())


def _prelu_forward(ctx, x, slope):
    w = _slope_view(ctx, slope)
    np.copyto(ctx.out, x)
    np.multiply(x, w, out=ctx.out, where=x <= 0)
    return ctx.out


def _prelu_backward(ctx, g, args, out):
    x, slope = args
    w = _slope_view(ctx, slope)
    negative = x <= 0
    gx = np.where(negative, g * w, g) if ctx.needs[0] else None
    gw = None
    if ctx.needs[1]:
        # d out / d slope = x where x <= 0: summed over every axis but the channel axis.
        contrib = np.where(negative, g * x, 0)
        if ctx.attrs["per_channel"]:
            channel = 1 if ctx.in_types[0].batched else 0
            axes = tuple(i for i in range(contrib.ndim) if i != channel)
            gw = contrib.sum(axis=axes).reshape(slope.shape)
        else:
            gw = np.asarray(contrib.sum(), dtype=slope.dtype).reshape(slope.shape)
    return [gx, gw]


_activation(
    "prelu", _prelu_forward, _prelu_backward,
    "prelu: g or slope * g; slope gets x * g summed where x <= 0",
    "Parametric ReLU (torch.nn.PReLU): x where x > 0, else slope * x, with a learnable "
    "`slope` of shape [1], or [C] with per_channel=true where C is the per-sample dim 0 "
    "(torch's num_parameters=C, channel = dim 1 of the batched tensor). Initialised to 0.25 "
    "as torch does, without weight decay. Tie rule: at exactly x = 0 the gradient is slope. "
    "The expansion holds when the slope broadcasts (per_channel=false or a rank-1 input).",
    domain="distinct", cost=2, expansion="max(x, 0) + slope * min(x, 0)",
    shape_rule=_prelu_shape,
    attrs=(Attr("per_channel", "bool", False, "one slope per channel (per-sample dim 0)"),),
    params=(ParamSpec("slope", _prelu_slope_shape, init="constant", init_args=(("value", 0.25),),
                      layout="other", decay=False, follows_default=False),),
    samples=(Sample(((3, 4),)), Sample(((),)), Sample(((3, 4),), attrs={"per_channel": True}),
             Sample(((3, 2, 5),), attrs={"per_channel": True}),
             Sample(((5,),), attrs={"per_channel": True}, batched=(False,))))


# ---- softmax and log_softmax ---------------------------------------------------------

def _axis_shape(in_types, attrs):
    t = _same_shape(in_types, attrs)
    axis = attrs["axis"]
    if t.rank == 0:
        raise ShapeError("softmax needs an input with at least one axis",
                         help="the input is a scalar per sample; softmax of one value is always 1",
                         arg=0)
    if not -t.rank <= axis < t.rank:
        raise ShapeError(f"axis {axis} is out of range for shape {format_shape(t.shape)}",
                         help=f"per-sample axes are 0..{t.rank - 1} (or -{t.rank}..-1 from the end); "
                              "the batch axis cannot be used", arg="axis")
    return t


def _runtime_axis(ctx) -> int:
    """Return the array axis of the per-sample `axis` attribute."""
    axis = ctx.attrs["axis"]
    return axis + 1 if axis >= 0 and ctx.in_types[0].batched else axis


def _softmax_forward(ctx, x):
    axis = _runtime_axis(ctx)
    out = ctx.out
    # softmax = exp(log_softmax(x)): exp never overflows, even for logits of 1e4.
    np.exp(log_softmax(x, axis, out=out), out=out)
    return out


def _softmax_backward(ctx, g, args, out):
    if not ctx.needs[0]:
        return [None]
    axis = _runtime_axis(ctx)
    gy = g * out
    # d softmax: y * (g - sum(g * y)).
    np.subtract(g, np.sum(gy, axis=axis, keepdims=True), out=gy)
    np.multiply(gy, out, out=gy)
    return [gy]


def _log_softmax_forward(ctx, x):
    axis = _runtime_axis(ctx)
    return log_softmax(x, axis, out=ctx.out)


def _log_softmax_backward(ctx, g, args, out):
    if not ctx.needs[0]:
        return [None]
    axis = _runtime_axis(ctx)
    # d log_softmax: g - softmax * sum(g), with softmax = exp(output).
    grad = np.exp(out)
    np.multiply(grad, np.sum(g, axis=axis, keepdims=True), out=grad)
    np.subtract(g, grad, out=grad)
    return [grad]


_AXIS_ATTR = (Attr("axis", "int", -1, "per-sample axis to normalise over (0 = first, -1 = last)"),)
_AXIS_SAMPLES = (Sample(((5,),)), Sample(((3, 4),)), Sample(((3, 4),), attrs={"axis": 0}),
                 Sample(((2, 3, 5),), attrs={"axis": 1}), Sample(((7,),), batched=(False,)),
                 Sample(((3, 4),), attrs={"axis": -2}, batched=(False,)))

_activation(
    "softmax", _softmax_forward, _softmax_backward, "softmax: y * (g - sum(g * y))",
    "Softmax along a per-sample axis (torch.softmax): exp(x - max) / sum(exp(x - max)); "
    "subtracting the maximum keeps logits of +-1e4 finite.",
    saves="output", cost=4, attrs=_AXIS_ATTR, samples=_AXIS_SAMPLES, shape_rule=_axis_shape,
    expansion="exp(x) / sum(exp(x), axis=axis, keepdims=true)")

_activation(
    "log_softmax", _log_softmax_forward, _log_softmax_backward,
    "log_softmax: g - softmax * sum(g)",
    "Log-softmax along a per-sample axis (torch.log_softmax): x - max - log(sum(exp(x - max))), "
    "the log-sum-exp form, finite for logits of +-1e4.",
    saves="output", cost=4, attrs=_AXIS_ATTR, samples=_AXIS_SAMPLES, shape_rule=_axis_shape,
    expansion="x - log(sum(exp(x), axis=axis, keepdims=true))")
