"""The ONNX export table: one function per registry op, keyed by op name.

Input: an `OpView` (the node's ONNX input names, graphc types, attributes,
parameter and state names) and the `Emitter` of onnx_export.py. Output: ONNX
nodes appended to the emitter that write the node's value to `view.out`.
Nothing here imports onnx: nodes are plain records until the emitter builds
the model. Semantics are inference (graphc's `train=False`): batchnorm uses
its running statistics, dropout is the identity.

graphc shapes are per sample; in ONNX a batched tensor carries the batch as
axis 0. So a per-sample axis `a >= 0` is ONNX axis `a + 1`, and a batched
operand of lower rank is unsqueezed after its batch axis before NumPy-style
broadcasting (kernels.align does the same at run time).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from graphc.ops.im2col import geometry
from graphc.ops.pooling import reciprocal_counts
from graphc.source import Span
from graphc.tensor_type import CLASS, TensorType


class ExportError(Exception):
    """An op (or one of its attribute values) that ONNX cannot express; the exporter adds the span."""

    def __init__(self, message: str, help: str | None = None):
        super().__init__(message)
        self.message = message
        self.help = help


@dataclass
class OpView:
    """What an export function needs to know about one op node."""

    name: str                      # graphc node name, used for the ONNX node names
    out: str                       # the ONNX tensor the function must write
    inputs: list[str]              # ONNX tensor names of the inputs, in slot order
    in_types: list[TensorType]
    out_type: TensorType
    attrs: dict
    params: list[str]              # initializer names, in the OpDef's active-parameter order
    state: dict = field(default_factory=dict)   # role -> initializer name (running statistics)
    span: Span | None = None


def full_axis(axis: int, t: TensorType) -> int:
    """Return the ONNX axis of per-sample `axis` (negative axes count from the end in both)."""
    return axis + 1 if axis >= 0 and t.batched else axis


def _lead(t: TensorType) -> int:
    """Return 1 when the tensor carries a batch axis in ONNX, else 0."""
    return int(t.batched)


# ---- gates -----------------------------------------------------------------------------

def _aligned(em, v: OpView, i: int) -> str:
    """Return input i unsqueezed after its batch axis to the output's per-sample rank."""
    t, rank = v.in_types[i], v.out_type.rank
    if t.batched and t.rank < rank:
        return em.add("Unsqueeze", [v.inputs[i], em.ints(range(1, 1 + rank - t.rank))], hint=v.name)
    return v.inputs[i]


def _binary(onnx_op: str):
    def export(em, v: OpView) -> None:
        em.add(onnx_op, [_aligned(em, v, 0), _aligned(em, v, 1)], v.out, hint=v.name)
    return export


def _unary(onnx_op: str, **attrs):
    def export(em, v: OpView) -> None:
        em.add(onnx_op, [v.inputs[0]], v.out, hint=v.name, **attrs)
    return export


def _matmul(em, v: OpView) -> None:
    """MatMul with graphc's promotion: 1-D operands gain an axis, batched stacks align after the batch."""
    ta, tb = v.in_types
    if ta.batched and not tb.batched and tb.rank == 2:
        em.add("MatMul", v.inputs, v.out, hint=v.name)   # [N, ..., k] @ [k, m]: ONNX broadcasts as graphc
        return
    pa = (1,) + ta.shape if ta.rank == 1 else ta.shape
    pb = tb.shape + (1,) if tb.rank == 1 else tb.shape
    rank = max(len(pa), len(pb))
    operands = []
    for name, t, promoted in ((v.inputs[0], ta, pa), (v.inputs[1], tb, pb)):
        if t.batched:
            target = (0,) + (1,) * (rank - len(promoted)) + promoted
            operands.append(em.add("Reshape", [name, em.ints(target)], hint=v.name))
        elif promoted != t.shape:
            operands.append(em.add("Reshape", [name, em.ints(promoted)], hint=v.name))
        else:
            operands.append(name)
    product = em.add("MatMul", operands, hint=v.name)
    em.add("Reshape", [product, em.ints(((0,) if v.out_type.batched else ()) + v.out_type.shape)],
           v.out, hint=v.name)


# ---- layers ----------------------------------------------------------------------------

def _linear(em, v: OpView) -> None:
    x, t = v.inputs[0], v.in_types[0]
    if t.batched and t.rank == 1:
        em.add("Gemm", [x, *v.params], v.out, hint=v.name)   # x [N, in] @ W [in, out] + b: transB=0
        return
    if len(v.params) == 1:
        em.add("MatMul", [x, v.params[0]], v.out, hint=v.name)
        return
    product = em.add("MatMul", [x, v.params[0]], hint=v.name)
    em.add("Add", [product, v.params[1]], v.out, hint=v.name)


def _with_batch(em, v: OpView, onnx_op: str, inputs: list[str], **attrs) -> None:
    """Run an op that needs [N, C, ...] on an unbatched input by adding and removing a batch of one."""
    if v.in_types[0].batched:
        em.add(onnx_op, inputs, v.out, hint=v.name, **attrs)
        return
    x = em.add("Unsqueeze", [inputs[0], em.ints([0])], hint=v.name)
    y = em.add(onnx_op, [x, *inputs[1:]], hint=v.name, **attrs)
    em.add("Squeeze", [y, em.ints([0])], v.out, hint=v.name)


def _conv(em, v: OpView) -> None:
    a = v.attrs
    (ph, pw) = a["pad"]
    _with_batch(em, v, "Conv", [v.inputs[0], *v.params], kernel_shape=list(a["kernel"]),
                strides=list(a["stride"]), pads=[ph, pw, ph, pw])


def _pool(onnx_op: str, **extra):
    def export(em, v: OpView) -> None:
        a = v.attrs
        stride = a["stride"] or a["size"]
        geo = geometry((1, *v.in_types[0].shape), {"stride": stride, "pad": a["pad"]}, v.out_type.shape[1:], a["size"])
        # ceil_mode as explicit padding after the input (geo.eh, geo.ew): before opset 22 ONNX's
        # ceil_mode keeps a last window that PyTorch (and graphc) drop.
        pads = [geo.ph, geo.pw, geo.ph + geo.eh, geo.pw + geo.ew]
        attrs = {"kernel_shape": list(a["size"]), "strides": list(stride), "pads": pads, **extra}
        if onnx_op != "AveragePool" or not (geo.eh or geo.ew):
            _with_batch(em, v, onnx_op, [v.inputs[0]], **attrs)
            return
        # A window hanging over the end averages over its part inside the padded input: rescale.
        pooled = em.fresh(f"{v.name}/{onnx_op}")
        _with_batch(em, replace(v, out=pooled), onnx_op, [v.inputs[0]], **attrs)
        scale = geo.kh * geo.kw * reciprocal_counts(geo, np.dtype(np.float32))
        em.add("Mul", [pooled, em.const(scale.astype(np.float32))], v.out, hint=v.name)
    return export


# ---- activations -----------------------------------------------------------------------

def _step(em, v: OpView) -> None:
    positive = em.add("Greater", [v.inputs[0], em.scalar(0.0)], hint=v.name)
    em.add("Cast", [positive], v.out, hint=v.name, to=1)   # 1 = TensorProto.FLOAT


def _prelu(em, v: OpView) -> None:
    t, slope = v.in_types[0], v.params[0]
    if v.attrs["per_channel"] and t.rank > 1:
        # graphc keeps the slope as [C]; ONNX broadcasts from the right, so give it [C, 1, ...].
        slope = em.add("Reshape", [slope, em.ints((t.shape[0],) + (1,) * (t.rank - 1))], hint=v.name)
    em.add("PRelu", [v.inputs[0], slope], v.out, hint=v.name)


def _axis_op(onnx_op: str):
    def export(em, v: OpView) -> None:
        em.add(onnx_op, [v.inputs[0]], v.out, hint=v.name, axis=full_axis(v.attrs["axis"], v.in_types[0]))
    return export


# ---- normalisation ---------------------------------------------------------------------

def _batchnorm(em, v: OpView) -> None:
    # ONNX's momentum weighs the running value (running * m + batch * (1 - m)); graphc's the batch.
    em.add("BatchNormalization", [v.inputs[0], *v.params, v.state["running_mean"], v.state["running_var"]],
           v.out, hint=v.name, epsilon=float(v.attrs["eps"]), momentum=1.0 - float(v.attrs["momentum"]))


def _layernorm(em, v: OpView) -> None:
    em.add("LayerNormalization", [v.inputs[0], *v.params], v.out, hint=v.name,
           axis=_lead(v.in_types[0]), epsilon=float(v.attrs["eps"]))


def _instancenorm(em, v: OpView) -> None:
    channels = v.in_types[0].shape[0]
    params = v.params or [em.const(np.ones(channels, np.float32)), em.const(np.zeros(channels, np.float32))]
    _with_batch(em, v, "InstanceNormalization", [v.inputs[0], *params], epsilon=float(v.attrs["eps"]))


def _channels_view(em, v: OpView, x: str, rank: int) -> str:
    """Return x reshaped to [N, C, S, 1...] of full rank `rank` (ONNX norms want spatial axes)."""
    t = v.in_types[0]
    spatial = t.size // t.shape[0]
    shape = ((0,) if t.batched else (1,)) + (t.shape[0], spatial) + (1,) * (rank - 3)
    return em.add("Reshape", [x, em.ints(shape)], hint=v.name)


def _back_to_shape(em, v: OpView, y: str) -> None:
    t = v.out_type
    em.add("Reshape", [y, em.ints(((0,) if t.batched else ()) + t.shape)], v.out, hint=v.name)


def _groupnorm(em, v: OpView) -> None:
    if em.opset < 21:
        raise ExportError(f"groupnorm needs ONNX opset 21 or later (this export uses opset {em.opset})",
                          help="export with --opset 21: GroupNormalization-18 scales per group, not per channel")
    x = _channels_view(em, v, v.inputs[0], 3)
    y = em.add("GroupNormalization", [x, *v.params], hint=v.name, num_groups=int(v.attrs["groups"]),
               epsilon=float(v.attrs["eps"]))
    _back_to_shape(em, v, y)


def _lrn(em, v: OpView) -> None:
    a = v.attrs
    size = int(a["size"])
    x4 = _channels_view(em, v, v.inputs[0], 4)
    if size % 2:
        # Odd sizes: ONNX's window [c - (size-1)/2, c + (size-1)/2] is torch's (and graphc's).
        y = em.add("LRN", [x4], hint=v.name, size=size, alpha=float(a["alpha"]), beta=float(a["beta"]),
                   bias=float(a["k"]))
        _back_to_shape(em, v, y)
        return
    # Even sizes: ONNX centres the window the other way (and onnxruntime refuses them), so write
    # torch's window out: channels padded size//2 before and (size-1)//2 after, averaged over `size`.
    t = v.in_types[0]
    rows = em.add("Reshape", [x4, em.ints((0 if t.batched else 1, 1, t.shape[0], t.size // t.shape[0]))],
                  hint=v.name)
    squares = em.add("Mul", [rows, rows], hint=v.name)
    padded = em.add("Pad", [squares, em.ints([0, 0, size // 2, 0, 0, 0, (size - 1) // 2, 0])], hint=v.name)
    window_mean = em.add("AveragePool", [padded], hint=v.name, kernel_shape=[size, 1], strides=[1, 1])
    scaled = em.add("Mul", [window_mean, em.scalar(a["alpha"])], hint=v.name)
    base = em.add("Add", [scaled, em.scalar(a["k"])], hint=v.name)
    denominator = em.add("Pow", [base, em.scalar(a["beta"])], hint=v.name)
    y = em.add("Div", [rows, denominator], hint=v.name)
    _back_to_shape(em, v, y)


# ---- reductions and shapes -------------------------------------------------------------

def _reduce(onnx_op: str):
    def export(em, v: OpView) -> None:
        t, axis = v.in_types[0], v.attrs["axis"]
        given = range(t.rank) if axis is None else (axis if isinstance(axis, tuple) else (axis,))
        axes = sorted({a % t.rank + _lead(t) for a in given}) if t.rank else []
        if not axes:
            em.add("Identity", [v.inputs[0]], v.out, hint=v.name)
            return
        em.reduce(onnx_op, v.inputs[0], axes, keepdims=bool(v.attrs["keepdims"]), out=v.out, hint=v.name)
    return export


def _flatten(em, v: OpView) -> None:
    if v.in_types[0].batched:
        em.add("Flatten", [v.inputs[0]], v.out, hint=v.name, axis=1)
    else:
        em.add("Reshape", [v.inputs[0], em.ints(v.out_type.shape)], v.out, hint=v.name)


def _reshape(em, v: OpView) -> None:
    shape = v.out_type.shape
    if 0 in shape:
        # Reshape reads 0 as "copy this dimension"; the batch axis relies on that.
        raise ExportError("reshape to a shape with a zero-length axis cannot be exported")
    em.add("Reshape", [v.inputs[0], em.ints(((0,) if v.out_type.batched else ()) + shape)], v.out, hint=v.name)


def _concat(em, v: OpView) -> None:
    t = v.in_types[0]
    em.add("Concat", v.inputs, v.out, hint=v.name, axis=v.attrs["axis"] % t.rank + _lead(t))


def _dropout(em, v: OpView) -> None:
    # Without training_mode ONNX Dropout is the identity, as graphc's inverted dropout in eval.
    em.add("Dropout", [v.inputs[0], em.scalar(v.attrs["p"])], v.out, hint=v.name)


# ---- losses (a scalar: the batch mean, as Program.run reports it) -------------------------

def _per_sample_mean(em, v: OpView, terms: str, t: TensorType, out: str) -> str:
    """Return sum(terms) / batch: per-sample sums averaged over the batch (a plain sum if unbatched)."""
    if not t.batched:
        return em.reduce("ReduceSum", terms, None, keepdims=False, out=out, hint=v.name)
    if t.rank:
        terms = em.reduce("ReduceSum", terms, list(range(1, t.rank + 1)), keepdims=False, hint=v.name)
    return em.reduce("ReduceMean", terms, None, keepdims=False, out=out, hint=v.name)


def _class_rows(em, v: OpView) -> list[str]:
    """Return [scores [N, K], labels [N]]: an unbatched pair becomes a batch of one."""
    if v.in_types[0].batched:
        return list(v.inputs)
    return [em.add("Unsqueeze", [name, em.ints([0])], hint=v.name) for name in v.inputs]


def _cross_entropy(em, v: OpView) -> None:
    logits, target = v.inputs
    tz, tt = v.in_types
    if tt.kind == CLASS:
        em.add("SoftmaxCrossEntropyLoss", _class_rows(em, v), v.out, hint=v.name, reduction="mean")
        return
    log_p = em.add("LogSoftmax", [logits], hint=v.name, axis=-1)
    terms = em.add("Mul", [target, log_p], hint=v.name)
    total = _per_sample_mean(em, v, terms, tz, None)
    em.add("Neg", [total], v.out, hint=v.name)


def _mse(em, v: OpView) -> None:
    diff = em.add("Sub", v.inputs, hint=v.name)
    squares = em.add("Mul", [diff, diff], hint=v.name)
    em.reduce("ReduceMean", squares, None, keepdims=False, out=v.out, hint=v.name)


def _bce(em, v: OpView) -> None:
    p, t = v.inputs
    floor = em.scalar(-100.0)   # torch clamps each log at -100
    log_p = em.add("Max", [em.add("Log", [p], hint=v.name), floor], hint=v.name)
    one = em.scalar(1.0)
    log_q = em.add("Max", [em.add("Log", [em.add("Sub", [one, p], hint=v.name)], hint=v.name), floor],
                   hint=v.name)
    terms = em.add("Add", [em.add("Mul", [t, log_p], hint=v.name),
                           em.add("Mul", [em.add("Sub", [one, t], hint=v.name), log_q], hint=v.name)],
                   hint=v.name)
    mean = em.reduce("ReduceMean", terms, None, keepdims=False, hint=v.name)
    em.add("Neg", [mean], v.out, hint=v.name)


def _bce_logits(em, v: OpView) -> None:
    x, t = v.inputs
    # torch's stable form: max(x, 0) - x t + log(1 + exp(-|x|)).
    softplus = em.add("Softplus", [em.add("Neg", [em.add("Abs", [x], hint=v.name)], hint=v.name)], hint=v.name)
    terms = em.add("Add", [em.add("Sub", [em.add("Relu", [x], hint=v.name),
                                          em.add("Mul", [x, t], hint=v.name)], hint=v.name), softplus],
                   hint=v.name)
    em.reduce("ReduceMean", terms, None, keepdims=False, out=v.out, hint=v.name)


def _kl_div(em, v: OpView) -> None:
    x, t = v.inputs
    pointwise = em.add("Mul", [t, em.add("Sub", [em.add("Log", [t], hint=v.name), x], hint=v.name)], hint=v.name)
    positive = em.add("Greater", [t, em.scalar(0.0)], hint=v.name)
    terms = em.add("Where", [positive, pointwise, em.scalar(0.0)], hint=v.name)   # 0 where t == 0 (xlogy)
    reduction = v.attrs["reduction"]
    if reduction == "batchmean":
        _per_sample_mean(em, v, terms, v.in_types[0], v.out)
    else:
        em.reduce("ReduceMean" if reduction == "mean" else "ReduceSum", terms, None, keepdims=False,
                  out=v.out, hint=v.name)


def _hinge(em, v: OpView) -> None:
    s, y = _class_rows(em, v)
    k = v.in_types[0].shape[0]
    rows = em.add("Unsqueeze", [y, em.ints([1])], hint=v.name)
    true_score = em.add("GatherElements", [s, rows], hint=v.name, axis=1)
    margin = float(v.attrs["margin"])
    viol = em.add("Relu", [em.add("Add", [em.add("Sub", [s, true_score], hint=v.name), em.scalar(margin)],
                                  hint=v.name)], hint=v.name)
    # The j = y term is max(0, margin) exactly; graphc leaves it out of the sum.
    per_sample = em.add("Sub", [em.reduce("ReduceSum", viol, [1], keepdims=False, hint=v.name),
                                em.scalar(max(margin, 0.0))], hint=v.name)
    mean = em.reduce("ReduceMean", per_sample, None, keepdims=False, hint=v.name)
    em.add("Div", [mean, em.scalar(float(k))], v.out, hint=v.name)


def _global_pool(onnx_reduce: str):
    def export(em, v: OpView) -> None:
        lead = _lead(v.in_types[0])
        em.reduce(onnx_reduce, v.inputs[0], [lead + 1, lead + 2], keepdims=False, out=v.out, hint=v.name)
    return export


def _slice(em, v: OpView) -> None:
    t, a = v.in_types[0], v.attrs
    axis = a["axis"] % t.rank
    size, start = t.shape[axis], a["start"]
    start = start + size if start < 0 else start
    end = start + v.out_type.shape[axis]
    em.add("Slice", [v.inputs[0], em.ints([start]), em.ints([end]), em.ints([axis + _lead(t)])], v.out,
           hint=v.name)


def _pad(em, v: OpView) -> None:
    t, pads = v.in_types[0], v.attrs["pads"]
    # graphc (torch) order: (before, after) pairs from the last axis; ONNX: all befores, then all afters.
    before, after = [0] * (t.rank + _lead(t)), [0] * (t.rank + _lead(t))
    for k in range(len(pads) // 2):
        before[-1 - k], after[-1 - k] = pads[2 * k], pads[2 * k + 1]
    em.add("Pad", [v.inputs[0], em.ints(before + after), em.scalar(float(v.attrs["value"]))], v.out,
           hint=v.name, mode="constant")


EXPORTERS = {
    "add": _binary("Add"), "sub": _binary("Sub"), "mul": _binary("Mul"), "div": _binary("Div"),
    "pow": _binary("Pow"), "max": _binary("Max"), "min": _binary("Min"), "matmul": _matmul,
    "neg": _unary("Neg"), "exp": _unary("Exp"), "log": _unary("Log"),
    "identity": _unary("Identity"), "relu": _unary("Relu"), "sigmoid": _unary("Sigmoid"),
    "tanh": _unary("Tanh"), "step": _step, "prelu": _prelu,
    "elu": lambda em, v: em.add("Elu", [v.inputs[0]], v.out, hint=v.name, alpha=float(v.attrs["alpha"])),
    "leaky_relu": lambda em, v: em.add("LeakyRelu", [v.inputs[0]], v.out, hint=v.name,
                                       alpha=float(v.attrs["slope"])),
    "softmax": _axis_op("Softmax"), "log_softmax": _axis_op("LogSoftmax"),
    "linear": _linear, "conv": _conv,
    "maxpool": _pool("MaxPool"), "avgpool": _pool("AveragePool", count_include_pad=1),
    "batchnorm": _batchnorm, "layernorm": _layernorm, "instancenorm": _instancenorm,
    "groupnorm": _groupnorm, "lrn": _lrn,
    "sum": _reduce("ReduceSum"), "mean": _reduce("ReduceMean"),
    "flatten": _flatten, "reshape": _reshape, "concat": _concat, "dropout": _dropout,
    "global_avgpool": _global_pool("ReduceMean"), "global_maxpool": _global_pool("ReduceMax"),
    "slice": _slice, "pad": _pad,
    "cross_entropy": _cross_entropy, "mse": _mse, "binary_cross_entropy": _bce,
    "binary_cross_entropy_with_logits": _bce_logits, "kl_div": _kl_div, "hinge": _hinge,
}
