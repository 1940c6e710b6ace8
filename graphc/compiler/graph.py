"""The graph: a networkx DiGraph of typed nodes, plus the model's interface.

Input: nothing (build.py fills it, infer.py types it). Output: `Graph`.

Node attributes (G.nodes[name]):
  kind     "input", "label", "param", "const" or "op"
  op       the OpDef name (kind "op")
  inputs   ordered list of input node names (an op may read one node twice)
  attrs    resolved attributes (kind "op")
  span     where the node was written; trace: the block call sites that made it
  block    the block instance path it belongs to ("" at model level)
  params   role -> parameter name (layers' own parameters)
  declared TensorType written in the source (input, label, param)
  value    the number of a const node
  type     TensorType (set by infer); flops: forward FLOPs per sample
Edges (u, v) carry `slots` (which inputs of v read u) and, after infer, `type`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from graphc.diagnostics import Diagnostic, Note
from graphc.source import Span
from graphc.tensor_type import TensorType


@dataclass
class ParamInfo:
    """A learnable tensor: explicit (`param W: [..]`) or created by a layer."""

    name: str
    shape: tuple[int, ...]
    init: str
    init_args: dict
    fans: tuple[int, int]
    decay: bool
    follows_default: bool   # the train section's `init` applies
    owner: str              # node that reads it
    role: str | None        # None for explicit params
    span: Span


@dataclass
class StateInfo:
    """Non-learnable running state of a node (batchnorm statistics)."""

    name: str
    shape: tuple[int, ...]
    fill: float
    owner: str
    role: str


@dataclass
class Setting:
    """One resolved train-section setting: its value and where it was written."""

    key: str
    value: object
    span: Span | None


@dataclass
class Graph:
    """A compiled model: the DAG and its interface."""

    model: str
    nx: nx.DiGraph = field(default_factory=nx.DiGraph)
    inputs: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)     # output name -> node
    loss: str | None = None
    loss_span: Span | None = None
    params: dict[str, ParamInfo] = field(default_factory=dict)
    state: dict[str, StateInfo] = field(default_factory=dict)
    train: dict[str, Setting] | None = None
    train_span: Span | None = None
    model_span: Span | None = None
    warnings: list[Diagnostic] = field(default_factory=list)

    def node(self, name: str) -> dict:
        """Return the attribute dict of a node."""
        return self.nx.nodes[name]

    def type_of(self, name: str) -> TensorType:
        """Return the inferred type of a node."""
        return self.nx.nodes[name]["type"]

    @property
    def objective(self) -> str | None:
        """The node whose value training minimises: `loss`, else the single output."""
        if self.loss is not None:
            return self.loss
        if len(self.outputs) == 1:
            return next(iter(self.outputs.values()))
        return None

    def op_nodes(self) -> list[str]:
        """Return the op nodes in a topological order."""
        return [n for n in nx.topological_sort(self.nx) if self.nx.nodes[n]["kind"] == "op"]


def trace_notes(attrs: dict) -> tuple[Note, ...]:
    """Return one note per block call site that instantiated a node (innermost first)."""
    return tuple(Note(f"in block `{block}` used here", span) for block, span in attrs.get("trace", ()))
