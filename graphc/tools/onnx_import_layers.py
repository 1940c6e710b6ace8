"""ONNX import of layers: Conv, pooling, Gemm/MatMul, and the normalisations.

Input: the import `Writer` (onnx_import.py) and one `OnnxNode`. Output: one
graphc layer statement (`conv`, `maxpool`, `linear`, `batchnorm`, ...) with
its weights under the layer's name, or `Unsupported` saying which attribute
value graphc cannot express. Also the helpers every translation shares
(onnx_import_ops.py holds the gates, shapes and the table). Nothing here
imports onnx.
"""
from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import numpy as np


class Unsupported(Exception):
    """A node graphc cannot express: what is wrong, and optionally what would work."""

    def __init__(self, message: str, help: str | None = None):
        super().__init__(message)
        self.message = message
        self.help = help


def number(value) -> str:
    """Return a float as the shortest `.nn` text that reads back to the same float32 value."""
    v = np.float32(value)
    if not np.isfinite(v):
        raise Unsupported(f"the constant {float(v)} has no `.nn` spelling")
    return str(v)


def arg(value) -> str:
    """Return a number for an argument list, in parentheses when negative."""
    text = value if isinstance(value, str) else number(value)
    return f"({text})" if text.startswith("-") else text


def pair(values) -> str:
    """Return `.nn` text for a pair: `5` when both are equal, else `[5, 3]`."""
    a, b = (int(v) for v in values)
    return str(a) if a == b else f"[{a}, {b}]"


def int_setting(w, node, key: str, index: int) -> list[int] | None:
    """Return an int-list setting that older opsets give as attribute `key` and newer as input `index`."""
    if key in node.attrs:
        return [int(v) for v in node.attrs[key]]
    if len(node.inputs) > index and node.inputs[index]:
        value = w.const(node.inputs[index])
        if value is None:
            raise Unsupported(f"`{key}` must be a constant")
        return [int(v) for v in np.asarray(value).reshape(-1)]
    return None


def sample_axis(axis: int, full_rank: int, what: str) -> int:
    """Return the per-sample axis of ONNX axis `axis`; Unsupported for the batch axis."""
    a = axis + full_rank if axis < 0 else axis
    if a == 0:
        raise Unsupported(f"{what} along axis 0, the batch axis", help="graphc ops act on each sample")
    return a - 1


def unused_extra_outputs(w, node, what: str) -> None:
    """Raise Unsupported when an output after the first is read (graphc ops have one output)."""
    if any(w.used(o) for o in node.outputs[1:]):
        raise Unsupported(f"the {what} output is used; graphc computes only the first output")


def initializer(w, node, index: int, role: str) -> np.ndarray:
    """Return input `index` as a float32 constant (a layer's weight); Unsupported if it is computed."""
    value = w.const(node.inputs[index]) if len(node.inputs) > index else None
    if value is None:
        raise Unsupported(f"the {role} (input {index}) must be an initializer or constant")
    return np.asarray(value, np.float32)


# ---- convolution and pooling -------------------------------------------------------------

LOWEST = float(np.finfo(np.float32).min)
MAX_GROUPS = 64   # a grouped conv becomes this many statements at most


def _spatial(w, node, x, kernel, strides, what: str, pad_value: float | None = 0.0):
    """Return (x, (pad_h, pad_w)): pads both sides alike, after checking dilations and auto_pad.

    Padding that differs before and after (auto_pad SAME with an odd total, explicit pads) puts
    the difference in a `pad` statement first, filled with `pad_value` (None: not possible).
    """
    if len(x.shape) != 3:
        raise Unsupported(f"graphc's {what} is 2-D: it needs input [N, C, H, W] (or [N, C, L]), got "
                          f"per-sample {list(x.shape)}")
    if any(d != 1 for d in node.attrs.get("dilations", [1, 1])):
        raise Unsupported(f"dilations {list(node.attrs['dilations'])} are not supported")
    auto = node.attrs.get("auto_pad", "NOTSET")
    sizes = x.shape[1:]
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        before, after = [], []
        for size, k, s in zip(sizes, kernel, strides):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            small, large = total // 2, total - total // 2
            before.append(small if auto == "SAME_UPPER" else large)
            after.append(large if auto == "SAME_UPPER" else small)
        pads = before + after
    elif auto == "VALID":
        pads = [0, 0, 0, 0]
    elif auto == "NOTSET":
        pads = [int(p) for p in node.attrs.get("pads", [0, 0, 0, 0])]
    else:
        raise Unsupported(f"auto_pad={auto} is not supported")
    common = (min(pads[0], pads[2]), min(pads[1], pads[3]))
    if what != "conv":   # graphc's pools pad at most half the window (PyTorch's rule): the rest goes first
        common = (min(common[0], kernel[0] // 2), min(common[1], kernel[1] // 2))
    extra = [pads[1] - common[1], pads[3] - common[1], pads[0] - common[0], pads[2] - common[0]]
    if any(extra):
        if pad_value is None:
            raise Unsupported(f"pads {pads} differ before and after the input; graphc's {what} pads both "
                              "sides alike")
        value = "" if pad_value == 0 else f", value={arg(pad_value)}"
        padded = w.aux(f"{node.outputs[0]}_pad", f"pad({x.name}, {extra}{value})")
        x = SimpleNamespace(name=padded, shape=(x.shape[0], sizes[0] + extra[2] + extra[3],
                                                sizes[1] + extra[0] + extra[1]))
    return x, common


def _check_size(w, node, shape: tuple) -> None:
    """Raise Unsupported when graphc's output size differs from ONNX's (ceil_mode before opset 22)."""
    if tuple(w.per_sample(node.outputs[0])) != tuple(shape):
        raise Unsupported(f"ONNX computes per-sample shape {list(w.per_sample(node.outputs[0]))}, graphc "
                          f"{list(shape)}: ONNX's ceil_mode keeps a last window starting in the padding, "
                          "PyTorch and graphc drop it")


def _out_size(size: int, k: int, s: int, p: int, ceil: bool) -> int:
    """Return graphc's (PyTorch's) conv/pool output size: floored, or ceil_mode's rule."""
    span = size + 2 * p - k
    out = (-(-span // s) if ceil else span // s) + 1
    return out - 1 if ceil and (out - 1) * s >= size + p else out


def _lift_1d(w, node, x):
    """Return (x as [C, 1, L], the node with 2-D attributes) for a 1-D Conv or pool, else (x, node).

    graphc's conv and pools are 2-D: a 1-D one runs on a height-1 image between two reshapes.
    """
    if len(x.shape) != 2:
        return x, node
    name = w.aux(f"{node.outputs[0]}_2d", f"reshape({x.name}, [{x.shape[0]}, 1, {x.shape[1]}])")
    attrs = dict(node.attrs)
    for key in ("kernel_shape", "strides", "dilations"):
        if key in attrs:
            attrs[key] = [1, *attrs[key]]
    if "pads" in attrs:
        attrs["pads"] = [0, attrs["pads"][0], 0, attrs["pads"][1]]
    lifted = copy.copy(node)
    lifted.attrs = attrs
    return SimpleNamespace(name=name, shape=(x.shape[0], 1, x.shape[1])), lifted


def _emit_layer(w, node, lifted: bool, expr: str, hint: str, weights: dict | None = None) -> None:
    """Write the layer statement; a lifted 1-D layer is followed by the reshape back to [C, L]."""
    if not lifted:
        w.emit(node, expr, hint=hint, weights=weights)
        return
    layer = w.aux(hint, expr)
    for role, array in (weights or {}).items():
        w.weights[f"{layer}.{role}"] = np.asarray(array, np.float32)
    w.emit(node, f"reshape({layer}, {list(w.per_sample(node.outputs[0]))})", hint=f"{hint}_1d")


def conv(w, node, index) -> None:
    """Conv with an initializer weight (+ bias) -> a `conv` layer (1-D: on a height-1 image); returns None."""
    x0 = w.tensor(node.inputs[0])
    groups = int(node.attrs.get("group", 1))
    if groups > MAX_GROUPS:
        raise Unsupported(f"group={groups}: graphc writes a grouped convolution as one conv per group, "
                          f"at most {MAX_GROUPS}")
    weight = initializer(w, node, 1, "weight")
    if weight.ndim not in (3, 4) or weight.ndim != len(x0.shape) + 1:
        raise Unsupported(f"graphc's conv is 2-D (1-D by a reshape); the weight has shape {list(weight.shape)}")
    x, node2 = _lift_1d(w, node, x0)
    weight = weight.reshape(weight.shape[:2] + (1,) * (4 - weight.ndim) + weight.shape[2:])
    filters, _, kh, kw = weight.shape
    strides = [int(s) for s in node2.attrs.get("strides", [1, 1])]
    x, (ph, pw) = _spatial(w, node2, x, (kh, kw), strides, "conv")
    out_hw = [_out_size(n, k, st, p, False) for n, k, st, p in zip(x.shape[1:], (kh, kw), strides, (ph, pw))]
    _check_size(w, node, (filters, *out_hw) if node2 is node else (filters, out_hw[1]))
    args = [x.name, str(filters), f"kernel={pair((kh, kw))}"]
    if strides != [1, 1]:
        args.append(f"stride={pair(strides)}")
    if ph or pw:
        args.append(f"pad={pair((ph, pw))}")
    weights = {"weight": weight}
    if len(node.inputs) > 2 and node.inputs[2]:
        weights["bias"] = initializer(w, node, 2, "bias")
    else:
        args.append("bias=false")
    hint = w.layer_hint(node, node.inputs[1])
    if groups == 1:
        _emit_layer(w, node, node2 is not node, f"conv({', '.join(args)})", hint, weights)
        return
    # Grouped (depthwise: one channel per group): a conv per group on its slice of the channels, joined.
    per_in, per_out = weight.shape[1], filters // groups
    parts = []
    for g in range(groups):
        part = w.aux(f"{hint}_g{g}", f"conv(slice({x.name}, axis=0, start={g * per_in}, end={(g + 1) * per_in}), "
                                     f"{per_out}, {', '.join(args[2:])})")
        for role, array in weights.items():
            w.weights[f"{part}.{role}"] = array[g * per_out:(g + 1) * per_out]
        parts.append(part)
    _emit_layer(w, node, node2 is not node, f"concat({', '.join(parts)}, axis=0)", f"{hint}_groups")


def pool(kind: str):
    """Return the translation of MaxPool (kind "maxpool") or AveragePool ("avgpool"), 2-D or 1-D."""
    def translate(w, node, index) -> None:
        x0 = w.tensor(node.inputs[0])
        unused_extra_outputs(w, node, "Indices")
        if len(node.attrs["kernel_shape"]) != len(x0.shape) - 1 or len(x0.shape) not in (2, 3):
            raise Unsupported(f"graphc's {kind} is 2-D (1-D by a reshape); kernel_shape is "
                              f"{list(node.attrs['kernel_shape'])}")
        x, node2 = _lift_1d(w, node, x0)
        kernel = [int(k) for k in node2.attrs["kernel_shape"]]
        strides = [int(s) for s in node2.attrs.get("strides", [1, 1])]
        has_pads = any(node2.attrs.get("pads", [0])) or node2.attrs.get("auto_pad", "NOTSET").startswith("SAME")
        valid_only = kind == "avgpool" and has_pads and not node.attrs.get("count_include_pad", 0)
        ones = w.aux(f"{node.outputs[0]}_ones", f"{x.name} * 0.0 + 1.0") if valid_only else None
        # One-sided padding is a pad statement first: zeros, or for maxpool float32's lowest value,
        # which no finite input is below (so it never wins, as -inf).
        x, (ph, pw) = _spatial(w, node2, x, kernel, strides, kind, LOWEST if kind == "maxpool" else 0.0)
        ceil = bool(node.attrs.get("ceil_mode", 0))
        out_hw = [_out_size(n, k, st, p, ceil) for n, k, st, p in zip(x.shape[1:], kernel, strides, (ph, pw))]
        _check_size(w, node, (x.shape[0], *out_hw) if node2 is node else (x.shape[0], out_hw[1]))
        args = [x.name, pair(kernel)]
        if strides != kernel:
            args.append(f"stride={pair(strides)}")
        if ph or pw:
            args.append(f"pad={pair((ph, pw))}")
        if ceil:
            args.append("ceil_mode=true")
        expr = f"{kind}({', '.join(args)})"
        if valid_only:
            # count_include_pad=0: divide by the mean of a ones map padded alike (the valid share).
            padded_ones, _ = _spatial(w, node2, SimpleNamespace(name=ones, shape=x0.shape if node2 is node
                                                                else (x0.shape[0], 1, x0.shape[1])),
                                      kernel, strides, kind, 0.0)
            expr = f"{expr} / {kind}({', '.join([padded_ones.name, *args[1:]])})"
        _emit_layer(w, node, node2 is not node, expr, node.outputs[0])
    return translate


def global_average_pool(w, node, index) -> None:
    """GlobalAveragePool -> `mean` over the spatial axes, keeping them; returns None."""
    x = w.tensor(node.inputs[0])
    axes = list(range(1, len(x.shape)))
    w.emit(node, f"mean({x.name}, axis={axes}, keepdims=true)", hint=node.outputs[0])


def global_max_pool(w, node, index) -> None:
    """GlobalMaxPool -> a `maxpool` whose window is the whole image; returns None."""
    x = w.tensor(node.inputs[0])
    if len(x.shape) != 3:
        raise Unsupported("graphc's maxpool is 2-D: GlobalMaxPool needs input [N, C, H, W]")
    w.emit(node, f"maxpool({x.name}, {pair(x.shape[1:])})", hint=node.outputs[0])


# ---- linear maps -------------------------------------------------------------------------

def _bias_vector(value, units: int, rank: int) -> np.ndarray | None:
    """Return a constant as a [units] bias if it broadcasts like one over [N, ..., units], else None."""
    value = np.asarray(value, np.float32)
    if value.ndim > rank + 1 or any(d != 1 for d in value.shape[:-1]) or \
            (value.ndim and value.shape[-1] not in (1, units)):
        return None
    return np.broadcast_to(value.reshape(-1)[-1:] if value.size == 1 else value.reshape(-1), (units,)).copy()


def gemm(w, node, index) -> None:
    """Gemm with a constant B -> `linear` (alpha, beta and transB folded into the weights); returns None."""
    a = w.tensor(node.inputs[0])
    if node.attrs.get("transA", 0):
        raise Unsupported("transA=1 would move the batch axis (A must be [N, K])")
    if len(a.shape) != 1:
        raise Unsupported(f"A must be [N, K], got per-sample {list(a.shape)}")
    b = w.const(node.inputs[1])
    if b is None:
        raise Unsupported("B must be an initializer (the weight); graphc has no transpose of a batched tensor")
    weight = np.asarray(b, np.float32)
    weight = (weight.T if node.attrs.get("transB", 0) else weight) * np.float32(node.attrs.get("alpha", 1.0))
    units = weight.shape[1]
    beta = np.float32(node.attrs.get("beta", 1.0))
    weights, extra = {"weight": weight}, ""
    c = node.inputs[2] if len(node.inputs) > 2 else ""
    if c and w.const(c) is not None:
        bias = _bias_vector(w.const(c), units, 1)
        if bias is None:
            raise Unsupported(f"C of shape {list(np.shape(w.const(c)))} does not broadcast as a bias over [N, {units}]")
        weights["bias"] = bias * beta
    elif c:
        scale = "" if beta == 1 else f"{arg(beta)} * "
        extra = f" + {scale}{w.tensor(c).name}"
    expr = f"linear({a.name}, {units}{'' if 'bias' in weights else ', bias=false'}){extra}"
    w.emit(node, expr, hint=w.layer_hint(node, node.inputs[1]), weights=weights)


def matmul(w, node, index) -> None:
    """MatMul -> `linear` for a constant matrix (with a following bias Add), else `@`; returns None."""
    left, right = node.inputs[:2]
    const_left, const_right = w.const(left), w.const(right)
    if const_right is not None and const_left is None:
        a = w.tensor(left)
        weight = np.asarray(const_right, np.float32)
        if weight.ndim == 2:
            _linear_from_matmul(w, node, a, weight)
            return
        if weight.ndim > max(len(a.shape), 1):
            raise Unsupported(f"a constant of shape {list(weight.shape)} would broadcast against the batch axis")
        w.emit(node, f"{a.name} @ {w.param(right, weight)}", hint=node.outputs[0])
    elif const_left is not None:
        b = w.tensor(right)
        weight = np.asarray(const_left, np.float32)
        if len(b.shape) < 2 or weight.ndim > len(b.shape):
            raise Unsupported("a constant matrix times a batched tensor needs the tensor to be [N, ..., K, M]")
        w.emit(node, f"{w.param(left, weight)} @ {b.name}", hint=node.outputs[0])
    else:
        a, b = w.tensor(left), w.tensor(right)
        if len(a.shape) != len(b.shape) or len(a.shape) < 2:
            raise Unsupported("MatMul of two batched tensors needs equal per-sample ranks of at least 2")
        w.emit(node, f"{a.name} @ {b.name}", hint=node.outputs[0])


def _linear_from_matmul(w, node, a, weight) -> None:
    """MatMul by a constant matrix -> linear; a following Add of a bias vector joins it."""
    units = weight.shape[1]
    out, weights, output = node.outputs[0], {"weight": weight}, None
    users = w.consumers(out)
    if len(users) == 1 and out not in w.graph_outputs and w.nodes[users[0]].op_type == "Add":
        add = w.nodes[users[0]]
        other = add.inputs[1] if add.inputs[0] == out else add.inputs[0]
        bias = _bias_vector(w.const(other), units, len(a.shape)) if w.const(other) is not None else None
        if bias is not None:
            weights["bias"], output = bias, add.outputs[0]
            w.absorb(users[0])
    expr = f"linear({a.name}, {units}{'' if 'bias' in weights else ', bias=false'})"
    w.emit(node, expr, output=output, hint=w.layer_hint(node, node.inputs[1], output), weights=weights)


# ---- normalisation -----------------------------------------------------------------------

def eps_arg(node, default=1e-5) -> str:
    """Return `, eps=...` when the node's epsilon differs from graphc's 1e-5, else ""."""
    eps = node.attrs.get("epsilon", default)
    return "" if np.float32(eps) == np.float32(1e-5) else f", eps={number(eps)}"


def batchnorm(w, node, index) -> None:
    """BatchNormalization (inference) -> `batchnorm` with its running statistics; returns None."""
    x = w.tensor(node.inputs[0])
    if node.attrs.get("training_mode", 0) or node.attrs.get("spatial", 1) != 1:
        raise Unsupported("training mode (or spatial=0) is not supported; import the inference graph")
    unused_extra_outputs(w, node, "running statistics")
    gamma, beta, mean, var = (initializer(w, node, i, role) for i, role in
                              enumerate(("scale", "bias", "mean", "variance"), start=1))
    momentum = 1.0 - float(node.attrs.get("momentum", 0.9))   # ONNX weighs the running value, graphc the batch
    extra = "" if np.float32(momentum) == np.float32(0.1) else f", momentum={number(momentum)}"
    w.emit(node, f"batchnorm({x.name}{extra}{eps_arg(node)})", hint=w.layer_hint(node, node.inputs[1]),
           weights={"gamma": gamma, "beta": beta, "running_mean": mean, "running_var": var}, shape=x.shape)


def layernorm(w, node, index) -> None:
    """LayerNormalization -> `layernorm` over the whole sample, else gates; returns None."""
    x = w.tensor(node.inputs[0])
    full = len(x.shape) + 1
    first = sample_axis(node.attrs.get("axis", -1), full, "normalisation")
    shape = x.shape[first:]
    gamma = np.broadcast_to(initializer(w, node, 1, "scale"), shape).copy()
    bias = w.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else np.zeros(shape, np.float32)
    beta = np.broadcast_to(np.asarray(bias, np.float32), shape).copy()
    stats = [o for o in node.outputs[1:] if w.used(o)]
    if first == 0 and not stats:
        w.emit(node, f"layernorm({x.name}{eps_arg(node)})", hint=w.layer_hint(node, node.inputs[1]),
               weights={"gamma": gamma, "beta": beta}, shape=x.shape)
        return
    # Over trailing axes only (graphc's layernorm takes the whole sample), or with the Mean and
    # InvStdDev outputs asked for: write the normalisation out with gates.
    axes = list(range(first, len(x.shape)))
    axis = axes[0] if len(axes) == 1 else axes
    hint, eps = node.outputs[0], number(node.attrs.get("epsilon", 1e-5))
    mean_expr = f"mean({x.name}, axis={axis}, keepdims=true)"
    if len(node.outputs) > 1 and w.used(node.outputs[1]):
        mean = w.emit(node, mean_expr, output=node.outputs[1], hint=f"{hint}_mean")
    else:
        mean = w.aux(f"{hint}_mean", mean_expr)
    centred = w.aux(f"{hint}_centred", f"{x.name} - {mean}")
    var = w.aux(f"{hint}_var", f"mean({centred} * {centred}, axis={axis}, keepdims=true)")
    if len(node.outputs) > 2 and w.used(node.outputs[2]):
        w.emit(node, f"1.0 / ({var} + {eps}) ** 0.5", output=node.outputs[2], hint=f"{hint}_inv_std")
    g, b = w.param(f"{hint}_gamma", gamma), w.param(f"{hint}_beta", beta)
    w.emit(node, f"{centred} / ({var} + {eps}) ** 0.5 * {g} + {b}", hint=hint, shape=x.shape)


def instancenorm(w, node, index) -> None:
    """InstanceNormalization -> `instancenorm(affine=true)`; returns None."""
    x = w.tensor(node.inputs[0])
    gamma, beta = initializer(w, node, 1, "scale"), initializer(w, node, 2, "bias")
    w.emit(node, f"instancenorm({x.name}, affine=true{eps_arg(node)})", hint=w.layer_hint(node, node.inputs[1]),
           weights={"gamma": gamma, "beta": beta}, shape=x.shape)


def groupnorm(w, node, index) -> None:
    """GroupNormalization -> `groupnorm` (opset 18 per-group scales repeated per channel); returns None."""
    x = w.tensor(node.inputs[0])
    groups = int(node.attrs["num_groups"])
    gamma, beta = initializer(w, node, 1, "scale"), initializer(w, node, 2, "bias")
    channels = x.shape[0] if x.shape else 0
    if node.opset < 21 and gamma.shape == (groups,) and channels % groups == 0:
        # GroupNormalization-18 scales per group; graphc (and opset 21) per channel.
        gamma, beta = np.repeat(gamma, channels // groups), np.repeat(beta, channels // groups)
    # Shapes stay (ONNX's shape inference leaves GroupNormalization's output unknown).
    w.emit(node, f"groupnorm({x.name}, {groups}{eps_arg(node)})", hint=w.layer_hint(node, node.inputs[1]),
           weights={"gamma": gamma, "beta": beta}, shape=x.shape)


def lrn(w, node, index) -> None:
    """LRN with an odd size -> `lrn`; returns None."""
    x = w.tensor(node.inputs[0])
    size = int(node.attrs["size"])
    if size % 2 == 0:
        raise Unsupported(f"even size {size}: ONNX centres the window differently from graphc (torch)")
    a = node.attrs
    w.emit(node, f"lrn({x.name}, size={size}, alpha={number(a.get('alpha', 1e-4))}, "
                 f"beta={number(a.get('beta', 0.75))}, k={number(a.get('bias', 1.0))})", hint=node.outputs[0],
           shape=x.shape)
