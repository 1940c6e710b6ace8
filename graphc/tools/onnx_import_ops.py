"""The ONNX import table: one translation per ONNX op type, keyed by op type.

Input: the import `Writer` (onnx_import.py) and one `OnnxNode`. Output: `.nn`
statements written through the writer, and the node's outputs registered as
batched values. A translation raises `Unsupported` (op attribute values,
layouts or dtypes graphc cannot express); the writer turns it into a
diagnostic naming the node and its op type.

ONNX axes count the batch as axis 0; graphc's per-sample axes do not, so an
ONNX axis a > 0 is per-sample axis a - 1, and an op that works along the
batch axis (softmax over axis 0, Flatten at axis 0, a reduction over every
axis) cannot be imported. Nothing here imports onnx.
"""
from __future__ import annotations

import math

import numpy as np

from graphc.tools.onnx_import_layers import (
    Unsupported,
    arg,
    batchnorm,
    conv,
    gemm,
    global_average_pool,
    global_max_pool,
    groupnorm,
    instancenorm,
    int_setting,
    layernorm,
    lrn,
    matmul,
    number,
    pool,
    sample_axis,
    unused_extra_outputs,
)

# ---- elementwise -------------------------------------------------------------------------

def _binary(symbol: str):
    def translate(w, node, index) -> None:
        names = [n for n in node.inputs if n]
        tensors = [w.tensor(n) for n in names if w.const(n) is None]
        if not tensors:
            raise Unsupported("no input depends on the graph inputs")
        ranks = {len(t.shape) for t in tensors}
        if len(ranks) > 1:
            raise Unsupported("batched operands of different ranks: ONNX would align one's batch axis with "
                              "another's feature axis")
        rank = ranks.pop()
        terms = [w.operand(n, rank, n, like=tensors[0].shape) for n in names]
        expr = terms[0]
        for term in terms[1:]:
            expr = f"{symbol}({expr}, {term})" if symbol.isalpha() else f"{arg(expr)} {symbol} {arg(term)}"
        if len(terms) == 1:
            expr = f"identity({expr})"
        w.emit(node, expr, hint=node.outputs[0])
    return translate


def _unary(template: str):
    def translate(w, node, index) -> None:
        x = w.tensor(node.inputs[0])
        w.emit(node, template.format(x=x.name, **{k: arg(v) for k, v in node.attrs.items()
                                                    if isinstance(v, float)}), hint=node.outputs[0])
    return translate


def _leaky_relu(w, node, index) -> None:
    x = w.tensor(node.inputs[0])
    w.emit(node, f"leaky_relu({x.name}, slope={arg(node.attrs.get('alpha', 0.01))})", hint=node.outputs[0])


def _elu(w, node, index) -> None:
    x = w.tensor(node.inputs[0])
    alpha = node.attrs.get("alpha", 1.0)
    w.emit(node, f"elu({x.name})" if alpha == 1.0 else f"elu({x.name}, alpha={arg(alpha)})", hint=node.outputs[0])


def _prelu(w, node, index) -> None:
    x = w.tensor(node.inputs[0])
    slope = w.const(node.inputs[1])
    if slope is not None:
        slope = np.asarray(slope, np.float32)
        while slope.ndim > len(x.shape) and slope.shape[0] == 1:
            slope = slope[0]
        channel = (len(x.shape) >= 1 and slope.ndim == len(x.shape) and slope.shape[0] == x.shape[0]
                   and all(d == 1 for d in slope.shape[1:]))
        # Before opset 7 a [C] slope broadcast along the channel axis, not NumPy-style.
        channel = channel or (node.opset < 7 and slope.ndim == 1 and len(x.shape) >= 1 and slope.shape[0] == x.shape[0])
        if slope.size == 1 or channel:
            per_channel = ", per_channel=true" if slope.size > 1 else ""
            w.emit(node, f"prelu({x.name}{per_channel})", hint=w.layer_hint(node, node.inputs[1]),
                   weights={"slope": slope.reshape(-1)})
            return
    rank = len(x.shape)
    s = w.operand(node.inputs[1], rank, node.inputs[1], like=x.shape)
    if slope is None and len(w.tensor(node.inputs[1]).shape) != rank:
        raise Unsupported("batched slope of a different rank")
    w.emit(node, f"max({x.name}, 0.0) + {s} * min({x.name}, 0.0)", hint=node.outputs[0])


def _selu(w, node, index) -> None:
    x = w.tensor(node.inputs[0])
    alpha = node.attrs.get("alpha", 1.67326319217681884765625)
    gamma = node.attrs.get("gamma", 1.05070102214813232421875)
    w.emit(node, f"{number(gamma)} * elu({x.name}, alpha={number(alpha)})", hint=node.outputs[0])


def _clip(w, node, index) -> None:
    x = w.tensor(node.inputs[0])
    low, high = node.attrs.get("min"), node.attrs.get("max")
    if len(node.inputs) > 1 and node.inputs[1]:
        low = w.const(node.inputs[1])
    if len(node.inputs) > 2 and node.inputs[2]:
        high = w.const(node.inputs[2])
    expr = x.name
    if low is not None:
        expr = f"max({expr}, {arg(number(np.asarray(low).reshape(())))})"
    if high is not None:
        expr = f"min({expr}, {arg(number(np.asarray(high).reshape(())))})"
    w.emit(node, expr if expr != x.name else f"identity({x.name})", hint=node.outputs[0])


def _softmax(kind: str):
    def translate(w, node, index) -> None:
        x = w.tensor(node.inputs[0])
        full = len(x.shape) + 1
        axis = node.attrs.get("axis", -1 if node.opset >= 13 else 1)
        axis = axis + full if axis < 0 else axis
        per = sample_axis(axis, full, kind)
        if node.opset < 13 and axis != full - 1:
            # Before opset 13 the axes from `axis` on count as one: normalise over their product.
            flat = w.aux(f"{node.outputs[0]}_flat", f"reshape({x.name}, {[*x.shape[:per], math.prod(x.shape[per:])]})")
            normalised = w.aux(f"{node.outputs[0]}_{kind}", f"{kind}({flat})")
            w.emit(node, f"reshape({normalised}, {list(x.shape)})", hint=node.outputs[0])
            return
        w.emit(node, f"{kind}({x.name})" if per == full - 2 else f"{kind}({x.name}, axis={per})",
               hint=node.outputs[0])
    return translate


# ---- shapes and reductions -----------------------------------------------------------------

def _flatten(w, node, index) -> None:
    x = w.tensor(node.inputs[0])
    full = len(x.shape) + 1
    axis = node.attrs.get("axis", 1)
    axis = axis + full if axis < 0 else axis
    if axis == 0 or math.prod(x.shape[:axis - 1]) != 1:
        raise Unsupported(f"Flatten at axis {axis} merges the batch axis with others")
    w.emit(node, f"flatten({x.name})", hint=node.outputs[0])


def _reshape_to(w, node, x, shape) -> None:
    w.emit(node, f"reshape({x.name}, {list(shape)})", hint=node.outputs[0])


def _reshape(w, node, index) -> None:
    x = w.tensor(node.inputs[0])
    target = int_setting(w, node, "shape", 1)
    if target is None:
        raise Unsupported("the target shape must be a constant")
    full_in = ["N", *x.shape]
    out = [full_in[i] if d == 0 and not node.attrs.get("allowzero", 0) and i < len(full_in) else d
           for i, d in enumerate(target)]
    size = math.prod(x.shape)
    batch = w.batch_dim(node.inputs[0])
    rest = out[1:]
    if "N" in rest or rest.count(-1) > 1 or (-1 in rest and out[0] == -1):
        raise Unsupported(f"reshape to {target} moves the batch axis")
    if -1 in rest:
        known = math.prod(d for d in rest if d != -1)
        rest = [size // known if d == -1 else d for d in rest]
    if not (out[0] == "N" or (out[0] in (-1, batch) and math.prod(rest) == size)) or math.prod(rest) != size:
        raise Unsupported(f"reshape to {target} moves the batch axis")
    _reshape_to(w, node, x, rest)


def _squeeze(w, node, index) -> None:
    x = w.tensor(node.inputs[0])
    axes = int_setting(w, node, "axes", 1)
    full = len(x.shape) + 1
    per = [d for d in range(len(x.shape)) if x.shape[d] == 1] if axes is None else \
        [sample_axis(a, full, "Squeeze") for a in axes]
    _reshape_to(w, node, x, [d for i, d in enumerate(x.shape) if i not in per])


def _unsqueeze(w, node, index) -> None:
    x = w.tensor(node.inputs[0])
    axes = int_setting(w, node, "axes", 1) or []
    full = len(x.shape) + 1 + len(axes)
    shape = list(x.shape)
    for a in sorted(sample_axis(a, full, "Unsqueeze") for a in axes):
        shape.insert(a, 1)
    _reshape_to(w, node, x, shape)


def _pad(w, node, index) -> None:
    x = w.tensor(node.inputs[0])
    if node.attrs.get("mode", "constant") != "constant":
        raise Unsupported(f"mode={node.attrs['mode']}: graphc's pad fills with a constant")
    pads = node.attrs.get("pads", node.attrs.get("paddings")) or int_setting(w, node, "pads", 1)
    value = node.attrs.get("value", 0.0)
    if len(node.inputs) > 2 and node.inputs[2]:
        value = w.const(node.inputs[2])
        if value is None:
            raise Unsupported("constant_value must be a constant")
    full = len(x.shape) + 1
    axes = int_setting(w, node, "axes", 3) or list(range(full))
    before, after = [0] * full, [0] * full
    for k, a in enumerate(axes):
        before[a % full], after[a % full] = pads[k], pads[k + len(axes)]
    if before[0] or after[0]:
        raise Unsupported("it pads the batch axis")
    if any(p < 0 for p in before + after):
        raise Unsupported(f"negative pads {list(pads)} (cropping) are not supported")
    widths = [p for a in range(full - 1, 0, -1) for p in (before[a], after[a])]   # torch's order
    while widths and widths[-2:] == [0, 0]:
        widths = widths[:-2]
    fill = float(np.asarray(value).reshape(()))
    extra = "" if fill == 0 else f", value={arg(fill)}"
    w.emit(node, f"pad({x.name}, {widths}{extra})" if widths else f"identity({x.name})", hint=node.outputs[0])


def _slices(x, axes, starts, ends, full: int) -> str:
    """Return x sliced along each (axis, start, end), ONNX-clamped, as nested `slice` calls."""
    expr = x.name
    for a, start, end in zip(axes, starts, ends):
        a = a % full
        if a == 0:
            if start != 0 or end < 2 ** 31 - 1:
                raise Unsupported("it slices the batch axis")
            continue
        size = x.shape[a - 1]
        start, end = (min(max(v + size if v < 0 else v, 0), size) for v in (start, end))
        if end <= start:
            raise Unsupported(f"an empty slice [{start}:{end}] of axis {a}")
        if (start, end) != (0, size):
            expr = f"slice({expr}, axis={a - 1}, start={start}" + (")" if end == size else f", end={end})")
    return expr


def _slice(w, node, index) -> None:
    x = w.tensor(node.inputs[0])
    starts, ends = int_setting(w, node, "starts", 1), int_setting(w, node, "ends", 2)
    axes = int_setting(w, node, "axes", 3) or list(range(len(starts)))
    steps = int_setting(w, node, "steps", 4) or [1] * len(starts)
    if any(step != 1 for step in steps):
        raise Unsupported(f"steps {steps}: graphc slices take every element")
    expr = _slices(x, axes, starts, ends, len(x.shape) + 1)
    w.emit(node, expr if expr != x.name else f"identity({x.name})", hint=node.outputs[0])


def _split(w, node, index) -> None:
    x = w.tensor(node.inputs[0])
    full = len(x.shape) + 1
    axis = node.attrs.get("axis", 0) % full
    if axis == 0:
        raise Unsupported("it splits the batch axis")
    size = x.shape[axis - 1]
    sizes = node.attrs.get("split") or int_setting(w, node, "split", 1)
    if not sizes:
        parts = node.attrs.get("num_outputs", len(node.outputs))
        chunk = -(-size // parts)
        sizes = [min(chunk, size - k * chunk) for k in range(parts)]
    start = 0
    for out, length in zip(node.outputs, sizes):
        w.emit(node, _slices(x, [axis], [start], [start + length], full), output=out, hint=out)
        start += length


def _concat(w, node, index) -> None:
    parts = [w.tensor(n) for n in node.inputs if n]
    full = len(parts[0].shape) + 1
    axis = sample_axis(int(node.attrs["axis"]), full, "Concat")
    w.emit(node, f"concat({', '.join(p.name for p in parts)}, axis={axis})", hint=node.outputs[0])


def _reduce(kind: str):
    def translate(w, node, index) -> None:
        x = w.tensor(node.inputs[0])
        axes = int_setting(w, node, "axes", 1)
        keep = ", keepdims=true" if node.attrs.get("keepdims", 1) else ""
        if not axes:
            if node.attrs.get("noop_with_empty_axes", 0):
                w.emit(node, f"identity({x.name})", hint=node.outputs[0])
                return
            raise Unsupported("reducing every axis includes the batch axis")
        full = len(x.shape) + 1
        per = sorted(sample_axis(a, full, kind) for a in axes)
        axis = per[0] if len(per) == 1 else per
        w.emit(node, f"{kind}({x.name}, axis={axis}{keep})", hint=node.outputs[0])
    return translate


def _dropout(w, node, index) -> None:
    x = w.tensor(node.inputs[0])
    unused_extra_outputs(w, node, "mask")
    ratio = node.attrs.get("ratio", 0.5)
    if len(node.inputs) > 1 and node.inputs[1]:
        ratio = w.const(node.inputs[1])
        if ratio is None:
            raise Unsupported("ratio must be a constant")
    if len(node.inputs) > 2 and node.inputs[2]:
        mode = w.const(node.inputs[2])
        if mode is None or bool(np.asarray(mode)):
            raise Unsupported("training_mode must be a constant false")
    w.emit(node, f"dropout({x.name}, p={number(np.asarray(ratio).reshape(()))})", hint=node.outputs[0])


def _greater(w, node, index) -> None:
    x = w.tensor(node.inputs[0])
    zero = w.const(node.inputs[1])
    users = w.consumers(node.outputs[0])
    cast = w.nodes[users[0]] if len(users) == 1 else None
    if zero is None or np.any(np.asarray(zero) != 0) or cast is None or cast.op_type != "Cast" \
            or cast.attrs.get("to") != 1 or node.outputs[0] in w.graph_outputs:
        raise Unsupported("graphc has no boolean tensors: only Greater(x, 0) cast to float (a step) is supported")
    w.absorb(users[0])
    w.emit(node, f"step({x.name})", output=cast.outputs[0], hint=cast.outputs[0], shape=x.shape)


def _reduce_max(w, node, index) -> None:
    x = w.tensor(node.inputs[0])
    axes = sorted(a % (len(x.shape) + 1) for a in (int_setting(w, node, "axes", 1) or []))
    if len(x.shape) != 3 or axes != [2, 3] or node.attrs.get("keepdims", 1):
        raise Unsupported("graphc has no max reduction; only the max over H and W of [N, C, H, W] without "
                          "keepdims (global_maxpool) is supported")
    w.emit(node, f"global_maxpool({x.name})", hint=node.outputs[0])


def _cast(w, node, index) -> None:
    x = w.tensor(node.inputs[0])
    if node.attrs.get("to") != 1:
        raise Unsupported("graphc computes in float32; only casts to float are supported")
    w.emit(node, f"identity({x.name})", hint=node.outputs[0])


def _softmax_cross_entropy(w, node, index) -> None:
    scores = w.tensor(node.inputs[0])
    if len(scores.shape) != 1 or node.attrs.get("reduction", "mean") != "mean":
        raise Unsupported("graphc's cross_entropy takes scores [N, K] and averages over the batch")
    if len(node.inputs) > 2 and node.inputs[2] or "ignore_index" in node.attrs:
        raise Unsupported("class weights and ignore_index are not supported")
    unused_extra_outputs(w, node, "log_prob")
    label = w.label(node.inputs[1], scores.shape[0])
    # graphc's loss is the statement named `loss` (not an output); Program.run reports it as "loss".
    w.emit(node, f"cross_entropy({scores.name}, {label})", hint="loss", as_output=False, shape=())


IMPORTERS = {
    "Conv": conv, "MaxPool": pool("maxpool"), "AveragePool": pool("avgpool"),
    "GlobalAveragePool": global_average_pool, "GlobalMaxPool": global_max_pool,
    "Gemm": gemm, "MatMul": matmul,
    "Add": _binary("+"), "Sub": _binary("-"), "Mul": _binary("*"), "Div": _binary("/"),
    "Pow": _binary("**"), "Max": _binary("max"), "Min": _binary("min"), "Sum": _binary("+"),
    "Relu": _unary("relu({x})"), "Sigmoid": _unary("sigmoid({x})"), "Tanh": _unary("tanh({x})"),
    "Exp": _unary("exp({x})"), "Log": _unary("log({x})"), "Neg": _unary("-{x}"),
    "Identity": _unary("identity({x})"), "Sqrt": _unary("{x} ** 0.5"), "Reciprocal": _unary("1.0 / {x}"),
    "Abs": _unary("max({x}, -{x})"),
    # softplus as max(x, 0) + log(1 + exp(-|x|)): exp never overflows.
    "Softplus": _unary("max({x}, 0.0) + log(1.0 + exp(min({x}, -{x})))"), "Selu": _selu,
    "LeakyRelu": _leaky_relu, "Elu": _elu, "PRelu": _prelu, "Clip": _clip,
    "Softmax": _softmax("softmax"), "LogSoftmax": _softmax("log_softmax"),
    "BatchNormalization": batchnorm, "LayerNormalization": layernorm,
    "InstanceNormalization": instancenorm, "GroupNormalization": groupnorm, "LRN": lrn,
    "Flatten": _flatten, "Reshape": _reshape, "Squeeze": _squeeze, "Unsqueeze": _unsqueeze,
    "Pad": _pad, "Slice": _slice, "Split": _split, "Concat": _concat,
    "ReduceSum": _reduce("sum"), "ReduceMean": _reduce("mean"), "ReduceMax": _reduce_max, "Greater": _greater,
    "Dropout": _dropout, "Cast": _cast, "SoftmaxCrossEntropyLoss": _softmax_cross_entropy,
}
