"""ONNX export: a typed graph and its weights -> an `onnx.ModelProto`.

Input: a `Graph` (compile_file/compile_source), its parameters and running
state. Output: an ONNX model with inference semantics (batchnorm's running
statistics, dropout as the identity, softmax with an explicit axis): the
`.nn` inputs, labels and outputs by name with a symbolic batch axis "N",
parameters and running statistics as initializers under their graphc names
(`c1.weight`), opset 17 (21 when groupnorm is used). Every registry op has an
entry in onnx_export_ops.EXPORTERS; an op or attribute value ONNX cannot
express is a GraphcError at the node's source span. The result passes
`onnx.checker.check_model(full_check=True)`.

onnx is an optional dependency (the `onnx` extra): it is imported only when a
model is built, so importing this module (and `graphc check`) never loads it.
"""
from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np

from graphc.diagnostics import Diagnostic, GraphcError
from graphc.program import compile_file
from graphc.tensor_type import CLASS
from graphc.tools.onnx_export_ops import EXPORTERS, ExportError, OpView
from graphc.training.checkpoint import atomic_write, load_weights

DEFAULT_OPSET = 17
GROUPNORM_OPSET = 21          # GroupNormalization-21 scales per channel, as graphc (18 scales per group)
BATCH_DIM = "N"


def require_onnx():
    """Return the onnx module, or raise GraphcError saying how to install it."""
    try:
        # onnx is an optional dependency (the `onnx` extra), loaded only to export or import a model.
        import onnx
    except ImportError:
        raise GraphcError("ONNX export and import need the onnx package",
                          help="install it with: pip install 'graphc[onnx]'") from None
    return onnx


def export_file(path: str | Path, *, model: str | None = None, weights: str | Path | None = None,
                out: str | Path | None = None, opset: int | None = None, loss: bool | None = None) -> Path:
    """Compile a `.nn` file, load `weights` (a weights.npz or checkpoint) if given, write the ONNX
    model atomically to `out` (default: the file with suffix .onnx) and return that path."""
    program = compile_file(path, model=model)
    if weights is not None:
        load_weights(program, weights)
    proto = export_graph(program.graph, program.params, program.state, opset=opset, loss=loss)
    target = Path(out) if out is not None else Path(path).with_suffix(".onnx")
    data = proto.SerializeToString()
    atomic_write(target, lambda f: f.write(data))
    return target


def export_program(program, *, opset: int | None = None, loss: bool | None = None):
    """Return the ONNX model of a compiled Program with its current parameters and state."""
    return export_graph(program.graph, program.params, program.state, opset=opset, loss=loss)


def export_graph(graph, params: dict, state: dict, *, opset: int | None = None, loss: bool | None = None):
    """Return the ONNX ModelProto of a typed graph with the given parameter and state arrays.

    The graph outputs are the model's `output`s; the loss (with the labels as
    int64 or float inputs) is added when `loss` is true, or when it is None and
    the model declares no output. Raises GraphcError for anything ONNX cannot express.
    """
    nodes = {node.name: node for node in graph.nodes()}
    opset = _choose_opset(nodes, opset)
    outputs = dict(graph.outputs)
    if graph.loss is not None and (loss or (loss is None and not outputs)):
        outputs[graph.loss] = graph.loss
    if not outputs:
        raise GraphcError(f"model `{graph.model}` has no output to export", span=graph.model_span,
                          help="declare one, e.g. `output probs = softmax(logits)`, or add a loss")
    needed = set(outputs.values())
    for target in list(needed):
        needed |= nx.ancestors(graph.nx, target)
    em = Emitter(opset)
    em.reserve([*graph.nx.nodes, *outputs])   # helper tensors ("const", "c1/Reshape") never take a graphc name
    errors, inputs, initializers = [], [], {}
    for name in graph.topological_order():
        if name not in needed:
            continue
        node = nodes[name]
        if node.kind in ("input", "label"):
            inputs.append((name, node.declared))
        elif node.kind == "param":
            initializers[name] = params[name]
        elif node.kind == "const":
            em.add("Constant", [], name, hint=name, value=np.asarray(node.value, np.float32))
        else:
            try:
                _export_op(em, graph, node, params, state, initializers)
            except ExportError as e:
                errors.append(Diagnostic("error", e.message, node.span, e.help))
    if errors:
        raise GraphcError(errors)
    for out_name, node_name in outputs.items():
        if out_name != node_name or nodes[node_name].kind != "op":
            em.add("Identity", [node_name], out_name, hint=out_name)
    out_types = {out: graph.type_of(node_name) for out, node_name in outputs.items()}
    return em.to_proto(graph.model, inputs, out_types, initializers)


def _export_op(em, graph, node, params, state, initializers) -> None:
    """Append the ONNX nodes of one op node (and its initializers); raise ExportError if impossible."""
    export = EXPORTERS.get(node.op.name)
    if export is None:
        raise ExportError(f"`{node.op.name}` has no ONNX export", help="see graphc/tools/onnx_export_ops.py")
    roles = [spec.role for spec in node.op.active_params(node.attrs)]
    param_names = [node.params[role] for role in roles]
    for p in param_names:
        initializers[p] = params[p]
    state_names = dict(node.state)
    for s in state_names.values():
        initializers[s] = state[s]
    view = OpView(name=node.name, out=node.name, inputs=list(node.inputs),
                  in_types=[graph.type_of(i) for i in node.inputs], out_type=graph.type_of(node.name),
                  attrs=dict(node.attrs), params=param_names, state=state_names, span=node.span)
    export(em, view)


def _choose_opset(nodes: dict, opset: int | None) -> int:
    """Return the opset to write: the one asked for, else 17 (21 with groupnorm)."""
    uses_groupnorm = any(n.kind == "op" and n.op.name == "groupnorm" for n in nodes.values())
    if opset is None:
        return GROUPNORM_OPSET if uses_groupnorm else DEFAULT_OPSET
    if opset < DEFAULT_OPSET:
        raise GraphcError(f"ONNX opset {opset} is not supported", help=f"use opset {DEFAULT_OPSET} or later")
    return opset


class Emitter:
    """Collects ONNX nodes as plain records; `to_proto` turns them into a checked ModelProto."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes: list[tuple[str, list[str], str, str, dict]] = []   # op, inputs, output, node name, attrs
        self._used: set[str] = set()          # tensor names
        self._reserved: set[str] = set()      # tensor names only the graph's own nodes may take
        self._node_names: set[str] = set()    # node names (a separate namespace in ONNX)
        self._constants: dict[tuple, str] = {}

    def reserve(self, names) -> None:
        """Keep `names` (the graph's own tensors) from being given to helper tensors."""
        self._reserved.update(names)

    def fresh(self, hint: str, used: set | None = None) -> str:
        """Return a tensor name (or a name new to `used`) not taken before, derived from `hint`."""
        used = self._used if used is None else used
        name, k = hint, 0
        while name in used or (used is self._used and name in self._reserved):
            k += 1
            name = f"{hint}/{k}"
        used.add(name)
        return name

    def add(self, op_type: str, inputs: list[str], out: str | None = None, *, hint: str, **attrs) -> str:
        """Append one node; return the name of its (single) output tensor."""
        if out is None:
            out = self.fresh(f"{hint}/{op_type}")
        else:
            self._used.add(out)
        node_name = self.fresh(hint if out == hint else f"{hint}/{op_type}", self._node_names)
        self.nodes.append((op_type, list(inputs), out, node_name, attrs))
        return out

    def const(self, value: np.ndarray) -> str:
        """Return the name of a Constant holding `value` (one per distinct value)."""
        key = (value.dtype.str, value.shape, value.tobytes())
        if key not in self._constants:
            self._constants[key] = self.add("Constant", [], hint="const", value=value)
        return self._constants[key]

    def ints(self, values) -> str:
        """Return a 1-D int64 Constant (shapes, axes, pads)."""
        return self.const(np.asarray(list(values), np.int64))

    def scalar(self, value: float) -> str:
        """Return a float32 scalar Constant."""
        return self.const(np.asarray(value, np.float32))

    def reduce(self, op_type: str, x: str, axes, *, keepdims: bool, out: str | None = None, hint: str) -> str:
        """Append a Reduce* over `axes` (None: every axis); axes are an input from opset 18 (13 for ReduceSum)."""
        if axes is None:
            return self.add(op_type, [x], out, hint=hint, keepdims=int(keepdims))
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.add(op_type, [x, self.ints(axes)], out, hint=hint, keepdims=int(keepdims))
        return self.add(op_type, [x], out, hint=hint, axes=list(axes), keepdims=int(keepdims))

    def to_proto(self, model_name: str, inputs: list, out_types: dict, initializers: dict):
        """Return the checked ModelProto of the collected nodes."""
        onnx = require_onnx()
        TensorProto, helper, numpy_helper = onnx.TensorProto, onnx.helper, onnx.numpy_helper

        def value_info(name, t):
            if t.kind == CLASS:
                return helper.make_tensor_value_info(name, TensorProto.INT64, [BATCH_DIM] if t.batched else [])
            shape = ([BATCH_DIM] if t.batched else []) + list(t.shape)
            return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

        nodes = []
        for op_type, ins, out, node_name, attrs in self.nodes:
            if op_type == "Constant":
                attrs = {"value": numpy_helper.from_array(attrs["value"], out)}
            nodes.append(helper.make_node(op_type, ins, [out], name=node_name, **attrs))
        graph = helper.make_graph(
            nodes, model_name, [value_info(n, t) for n, t in inputs],
            [value_info(n, t) for n, t in out_types.items()],
            initializer=[numpy_helper.from_array(np.asarray(a, np.float32), n) for n, a in initializers.items()])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name="graphc")
        # The oldest IR version that knows this opset: runtimes refuse IR versions newer than theirs.
        model.ir_version = next(row[1] for row in helper.VERSION_TABLE if row[2] >= self.opset)
        onnx.checker.check_model(model, full_check=True)
        return model
