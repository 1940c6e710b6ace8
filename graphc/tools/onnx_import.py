"""ONNX import: an ONNX model -> readable `.nn` text plus its weights.

Input: an `onnx.ModelProto` (or a `.onnx` file). Output: `.nn` text whose
statements are graphc layers where a pattern fits (Conv+bias -> `conv`,
Gemm or MatMul+Add -> `linear`, BatchNormalization -> `batchnorm`, ...) and
gates otherwise, and a dict of arrays under the graphc parameter names that
text compiles to (a weights `.npz` for `graphc run --weights`). Shapes are
per sample: axis 0 of every graph input is the batch. Nodes whose inputs are
all constants (Constant, Shape arithmetic, a transposed initializer) are
evaluated here with onnx's reference implementation. An op or attribute
graphc cannot express is a GraphcError naming the ONNX node and its op type;
every such node is reported, not only the first.

The per-op translations live in onnx_import_ops.IMPORTERS. onnx is an
optional dependency (the `onnx` extra), imported only when a model is read.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graphc.diagnostics import Diagnostic, GraphcError
from graphc.program import check_source
from graphc.tensor_type import format_shape
from graphc.tools.onnx_export import require_onnx
from graphc.tools.onnx_import_ops import IMPORTERS, Unsupported, number
from graphc.training.checkpoint import atomic_write, save_arrays

# Words the language reserves (grammar/graphc.lark) and the literals true/false.
KEYWORDS = {"model", "block", "train", "include", "input", "label", "param", "output", "return",
            "class", "repeat", "true", "false"}


@dataclass
class OnnxNode:
    """One ONNX node as plain data: the op type, tensor names, attributes (Python values)."""

    op_type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict
    opset: int


@dataclass
class Tensor:
    """A batched value of the `.nn` program: the name that holds it and its per-sample shape."""

    name: str
    shape: tuple[int, ...]


@dataclass
class Label:
    """An integer graph input: a class label once a loss tells its number of classes."""

    name: str
    classes: int | None = None


@dataclass
class Imported:
    """The result of an import: `.nn` text and the arrays its parameters and state load from."""

    text: str
    weights: dict[str, np.ndarray]
    model: str
    names: dict[str, str]        # ONNX graph input/output name -> its `.nn` name


def import_file(path: str | Path, out: str | Path | None = None) -> tuple[Path, Path]:
    """Import `path` (.onnx); write `out` (default: the file with suffix .nn) and the weights
    next to it (same stem, .npz), both atomically; return the two paths."""
    onnx = require_onnx()
    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as e:
        # OSError: unreadable; protobuf's DecodeError (google.protobuf.message): not a model file.
        if not isinstance(e, (OSError, ValueError)) and not type(e).__module__.startswith("google.protobuf"):
            raise
        raise GraphcError(f"cannot read {path} as an ONNX model: {e}",
                          help="give a .onnx file written by an ONNX exporter") from None
    result = import_model(model, name=path.stem, source=path.name)
    nn_path = Path(out) if out is not None else path.with_suffix(".nn")
    npz_path = nn_path.with_suffix(".npz")
    text = result.text.replace("by `graphc import`\n", f"by `graphc import`; weights: {npz_path.name}\n", 1)
    atomic_write(nn_path, lambda f: f.write(text.encode()))
    save_arrays(npz_path, result.weights, {"model": result.model, "source": path.name})
    return nn_path, npz_path


def import_model(model, *, name: str | None = None, source: str = "an ONNX model") -> Imported:
    """Return the `.nn` text and weights of an ONNX ModelProto (GraphcError lists every problem)."""
    onnx = require_onnx()
    numpy_helper, shape_inference = onnx.numpy_helper, onnx.shape_inference

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except shape_inference.InferenceError as e:
        raise GraphcError(f"the ONNX model fails ONNX's own shape inference: {e}",
                          help="check it with onnx.checker.check_model(model, full_check=True)") from None
    graph = inferred.graph
    shapes = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        if info.type.HasField("tensor_type"):
            tt = info.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                         for d in tt.shape.dim) if tt.HasField("shape") else None
            shapes[info.name] = (tt.elem_type, dims)
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes = [_plain(n, opset) for n in graph.node]
    writer = Writer(_identifier(name or graph.name or "imported", set()), shapes, consts,
                    [o.name for o in graph.output], nodes)
    writer.source = source
    for info in graph.input:
        if info.name not in consts:
            writer.declare_input(info.name)
    writer.translate()
    return writer.finish()


def _plain(node, opset: int) -> OnnxNode:
    """Return an ONNX NodeProto as an OnnxNode (attribute values as Python/NumPy values)."""
    onnx = require_onnx()
    attrs = {}
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode()
        elif hasattr(value, "dims"):          # a TensorProto (Constant's value)
            value = onnx.numpy_helper.to_array(value)
        attrs[a.name] = value
    domain = node.domain if node.domain not in ("", "ai.onnx") else ""
    return OnnxNode(node.op_type if not domain else f"{domain}.{node.op_type}", node.name,
                    list(node.input), list(node.output), attrs, opset)


def fold(node: OnnxNode, values: list[np.ndarray]) -> list[np.ndarray]:
    """Return the outputs of a node whose inputs are all constants, from onnx's reference runtime."""
    onnx = require_onnx()
    # onnx.reference is not loaded by `import onnx`; it is onnx's own NumPy runtime.
    from onnx.reference import ReferenceEvaluator

    helper = onnx.helper
    attrs = {k: onnx.numpy_helper.from_array(v) if isinstance(v, np.ndarray) else v for k, v in node.attrs.items()}
    proto = helper.make_node(node.op_type, node.inputs, node.outputs, **attrs)
    feeds = {name: np.asarray(v) for name, v in zip(node.inputs, values) if name}
    # A one-node model, so that the node runs with its own opset's semantics (Unsqueeze-11 takes
    # `axes` as an attribute, Unsqueeze-13 as an input).
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
              for n, v in feeds.items()]
    outputs = [helper.make_empty_tensor_value_info(n) for n in node.outputs if n]
    model = helper.make_model(helper.make_graph([proto], "fold", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", node.opset)])
    return [np.asarray(v) for v in ReferenceEvaluator(model).run(None, feeds)]


def readable(name: str, *, layer: bool = False) -> str:
    """Return a tensor name without exporter noise: `/b1/conv1/Conv_output_0` -> `b1/conv1` for a
    layer (the module path names it), `/b1/Relu_1_output_0` -> `b1/relu_1` otherwise."""
    name = re.sub(r"_output_\d+$", "", name)
    parts = [p for p in name.split("/") if p]
    if len(parts) >= 2 and re.fullmatch(r"[A-Z][A-Za-z]*(_\d+)?", parts[-1]):
        if layer and "_" not in parts[-1]:
            parts.pop()
        else:
            parts[-1] = parts[-1].lower()
    elif len(parts) == 1 and name.startswith("/"):
        parts[0] = parts[0].lower()
    return "/".join(parts) or name


def _identifier(text: str, taken: set[str]) -> str:
    """Return `text` made a `.nn` name: letters, digits and _, not a keyword, not in `taken`."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_") or "t"
    name = re.sub(r"_+", "_", name)
    if name[0].isdigit():
        name = "t_" + name
    if name in KEYWORDS:
        name += "_"
    base, k = name, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


@dataclass
class Writer:
    """Builds the `.nn` statements while the ONNX nodes are translated in order."""

    model: str
    shapes: dict                     # tensor name -> (elem_type, full shape with None/str for unknown)
    consts: dict                     # tensor name -> constant array
    graph_outputs: list[str]
    nodes: list[OnnxNode]
    values: dict = field(default_factory=dict)       # tensor name -> Tensor | Label
    names: set = field(default_factory=set)          # .nn names in use
    inputs: list = field(default_factory=list)       # declaration lines
    params: list = field(default_factory=list)
    statements: list = field(default_factory=list)
    weights: dict = field(default_factory=dict)
    absorbed: set = field(default_factory=set)       # node indices folded into an earlier statement
    errors: list = field(default_factory=list)
    declared: set = field(default_factory=set)       # .nn names of the declared inputs
    written_outputs: set = field(default_factory=set)   # graph outputs given an `output` statement
    source: str = "an ONNX model"
    readers: dict = field(default_factory=dict)      # tensor name -> indices of the nodes that read it
    const_params: dict = field(default_factory=dict)  # (tensor, shape) -> the param holding it

    def __post_init__(self):
        for i, node in enumerate(self.nodes):
            for name in node.inputs:
                self.readers.setdefault(name, []).append(i)

    # ---- used by the translations ----------------------------------------------------
    def tensor(self, name: str) -> Tensor:
        """Return the batched value `name` (Unsupported if it is missing or a constant)."""
        value = self.values.get(name)
        if isinstance(value, Tensor):
            return value
        raise Unsupported(f"input `{name}` must be computed from the graph inputs")

    def const(self, name: str) -> np.ndarray | None:
        """Return the constant `name`, or None when it is a computed tensor or absent."""
        return self.consts.get(name) if name else None

    def per_sample(self, name: str) -> tuple[int, ...]:
        """Return the per-sample shape ONNX's shape inference gives tensor `name` (batch dropped)."""
        _, dims = self.shapes.get(name, (None, None))
        if dims is None or not dims or any(not isinstance(d, int) for d in dims[1:]):
            raise Unsupported(f"the shape of `{name}` is not known after the batch axis",
                              help="export the model with fixed sizes for every axis but the batch")
        return tuple(dims[1:])

    def batch_dim(self, name: str):
        """Return the batch entry of a tensor's inferred full shape (an int, a symbol or None)."""
        _, dims = self.shapes.get(name, (None, None))
        return dims[0] if dims else None

    def consumers(self, tensor: str) -> list[int]:
        """Return the indices of the nodes that read `tensor`."""
        return list(dict.fromkeys(self.readers.get(tensor, ())))

    def absorb(self, index: int) -> None:
        """Mark node `index` as translated together with the current one."""
        self.absorbed.add(index)

    def fresh(self, hint: str) -> str:
        """Return an unused `.nn` name derived from `hint`."""
        name = _identifier(hint, self.names)
        self.names.add(name)
        return name

    def param(self, hint: str, array: np.ndarray) -> str:
        """Declare `param NAME: [shape]` holding `array` (loaded from the weights file); return NAME."""
        name = self.fresh(hint)
        self.params.append(f"param {name}: {format_shape(array.shape)} init=zeros")
        self.weights[name] = np.asarray(array, np.float32)
        return name

    def operand(self, tensor: str, rank: int, hint: str, like: tuple | None = None) -> str:
        """Return the `.nn` spelling of an elementwise operand: a name, a number or a new param.

        `rank` is the per-sample rank of the batched operand it meets (shape `like`); a constant
        with one more axis than that must have a leading 1 there (ONNX would broadcast the batch).
        """
        value = self.const(tensor)
        if value is None:
            return self.tensor(tensor).name
        value = np.asarray(value)
        if value.dtype.kind not in "fiu":
            raise Unsupported(f"constant `{tensor}` has type {value.dtype}")
        while value.ndim > rank:
            if value.shape[0] != 1:
                raise Unsupported(f"constant `{tensor}` of shape {format_shape(value.shape)} would broadcast "
                                  "along the batch axis")
            value = value[0]
        if like is not None:
            try:
                np.broadcast_shapes(value.shape, like)
            except ValueError:
                raise Unsupported(f"constant `{tensor}` of shape {format_shape(value.shape)} does not broadcast "
                                  f"with the per-sample shape {format_shape(like)}") from None
        if value.size == 1:
            return number(value.reshape(()))
        key = (tensor, value.shape)
        if key not in self.const_params:   # one param per constant, however many nodes read it
            self.const_params[key] = self.param(hint, value)
        return self.const_params[key]

    def aux(self, hint: str, expr: str) -> str:
        """Write an intermediate statement `NAME = expr` of a multi-statement translation; return NAME."""
        name = self.fresh(readable(hint))
        self.statements.append(f"{name} = {expr}")
        return name

    def used(self, tensor: str) -> bool:
        """Return True when a node or the graph outputs read `tensor`."""
        return bool(tensor) and (tensor in self.graph_outputs or bool(self.consumers(tensor)))

    def emit(self, node: OnnxNode, expr: str, *, output: str | None = None, hint: str | None = None,
             weights: dict | None = None, as_output: bool = True, shape: tuple | None = None) -> str:
        """Write `NAME = expr` for the node's output (`output NAME = ...` for a graph output).

        `weights` maps a layer's roles to arrays, stored as NAME.role. Returns NAME.
        """
        out = output or node.outputs[0]
        is_output = out in self.graph_outputs and as_output
        name = self.fresh(out if is_output or hint is None else readable(hint))
        self.statements.append(f"{'output ' if is_output else ''}{name} = {expr}")
        if out in self.graph_outputs:
            self.written_outputs.add(out)
        for role, array in (weights or {}).items():
            self.weights[f"{name}.{role}"] = np.asarray(array, np.float32)
        self.values[out] = Tensor(name, self.per_sample(out) if shape is None else shape)
        return name

    def layer_hint(self, node: OnnxNode, weight: str, output: str | None = None) -> str:
        """Return a name for a layer: its weight's prefix (`conv1.weight` -> conv1) when no tensor has
        that name, else its output tensor's name (`output`, default the node's first)."""
        prefix = re.sub(r"[._](weight|W|kernel)$", "", weight)
        tensors = {t for n in self.nodes for t in n.outputs} | set(self.shapes)
        if prefix != weight and prefix not in tensors and _identifier(prefix, set()) not in self.names:
            return prefix
        return readable(output or node.outputs[0], layer=True)

    def label(self, tensor: str, classes: int) -> str:
        """Return the label name of an integer input, fixing its number of classes."""
        value = self.values.get(tensor)
        if not isinstance(value, Label):
            raise Unsupported(f"`{tensor}` must be an integer graph input (the class labels)")
        value.classes = classes
        return value.name

    # ---- the driver --------------------------------------------------------------------
    def declare_input(self, name: str) -> None:
        """Declare a graph input: `input x: [per-sample shape]`, or a label if it holds integers."""
        elem, dims = self.shapes[name]
        nn_name = self.fresh(name)
        if elem in (6, 7):   # INT32, INT64: class labels
            self.values[name] = Label(nn_name)
            return
        if elem != 1:
            self.errors.append(Diagnostic("error", f"graph input `{name}` has ONNX element type {elem}; "
                                          "graphc imports float32 inputs and int64 labels", None, None))
            return
        if dims is None or not dims or any(not isinstance(d, int) for d in dims[1:]):
            self.errors.append(Diagnostic(
                "error", f"graph input `{name}` needs a batch axis and fixed sizes after it, got "
                f"{list(dims) if dims else dims}", None, "graphc reads axis 0 of every input as the batch"))
            return
        self.values[name] = Tensor(nn_name, tuple(dims[1:]))
        self.declared.add(nn_name)
        self.inputs.append(f"input {nn_name}: {format_shape(dims[1:])}")

    def translate(self) -> None:
        """Translate every node in order, recording one diagnostic per node that cannot be."""
        for index, node in enumerate(self.nodes):
            if index in self.absorbed:
                continue
            ins = [i for i in node.inputs if i]
            if all(i in self.consts for i in ins) and node.op_type not in ("Shape",):
                try:
                    for out, value in zip(node.outputs, fold(node, [self.consts[i] for i in node.inputs if i])):
                        self.consts[out] = value
                except Exception as e:   # the reference runtime's own error: name the node
                    self._fail(node, f"could not evaluate this constant node: {e}")
                continue
            if any(i not in self.values and i not in self.consts for i in ins):
                continue   # an input failed earlier: its node is already reported
            translate = IMPORTERS.get(node.op_type)
            if translate is None:
                self._fail(node, "graphc has no equivalent of this op",
                           "supported: " + ", ".join(sorted(IMPORTERS)))
                continue
            try:
                translate(self, node, index)
            except Unsupported as e:
                self._fail(node, e.message, e.help)

    def _fail(self, node: OnnxNode, message: str, help: str | None = None) -> None:
        self.errors.append(Diagnostic("error", f"ONNX node `{node.name or node.outputs[0]}` ({node.op_type}): "
                                      f"{message}", None, help))

    def finish(self) -> Imported:
        """Return the text and weights; raise GraphcError with every problem found."""
        for out in self.graph_outputs:
            if out not in self.values and not self.errors:
                self.errors.append(Diagnostic("error", f"graph output `{out}` is not computed from the inputs",
                                              None, "graphc outputs must depend on the batched inputs"))
        for out in self.graph_outputs:
            value = self.values.get(out)
            if isinstance(value, Tensor) and out not in self.written_outputs:   # an input passed through
                name = self.fresh(out)
                self.statements.append(f"output {name} = identity({value.name})")
                self.values[out] = Tensor(name, value.shape)
        labels = [v for v in self.values.values() if isinstance(v, Label)]
        for label in labels:
            if label.classes is None:
                self.errors.append(Diagnostic("error", f"integer input `{label.name}` is not a class label of "
                                              "a supported loss", None, None))
        if self.errors:
            raise GraphcError(self.errors)
        decls = self.inputs + [f"label {v.name}: class[{v.classes}]" for v in labels]
        body = decls + self.params + self.statements
        text = (f"# Imported from {self.source} by `graphc import`\n"
                f"model {self.model} {{\n" + "".join(f"  {line}\n" for line in body) + "}\n")
        self._check(text)
        names = {onnx: v.name for onnx, v in self.values.items()
                 if onnx in self.graph_outputs or isinstance(v, Label) or v.name in self.declared}
        return Imported(text, self.weights, self.model, names)

    def _check(self, text: str) -> None:
        """Compile the text: its parameters and state must be exactly the weights written (else a bug)."""
        graph = check_source(text, f"{self.model}.nn")
        expected = {**{n: p.shape for n, p in graph.params.items()}, **{n: s.shape for n, s in graph.state.items()}}
        got = {n: tuple(a.shape) for n, a in self.weights.items()}
        if expected != got:
            raise AssertionError(f"imported text and weights disagree: {expected} vs {got}")
