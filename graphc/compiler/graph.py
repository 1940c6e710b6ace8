"""The graph: a networkx DiGraph of typed nodes, plus the model's interface.

Input: nothing (build.py fills it, infer.py types it). Output: `Graph`.

Every node is a `Node` record (`graph.node(name)`), made by the builder and
completed by infer (`type`, `flops`, `state`). networkx holds the edges:
an edge (u, v) carries `slots` (which inputs of v read u) and, after infer,
`type`. Only the builder looks an op up by name; later stages use `node.op`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from graphc.diagnostics import Diagnostic, Note
from graphc.ops import OpDef
from graphc.source import Span
from graphc.tensor_type import TensorType

NODE_KINDS = ("input", "label", "param", "const", "op")


@dataclass(eq=False, slots=True)
class Node:
    """One node of the graph: made by the builder, completed by infer, read by every later stage.

    Only infer writes to a node after the builder (`type`, `flops`, `state`).
    Not frozen: a frozen record costs ~5 µs to make or `replace` (CPython sets
    each field through `object.__setattr__`), which made checking a
    10,000-node chain 10% slower. `eq=False`: nodes compare by identity.
    """

    name: str
    kind: str                                   # one of NODE_KINDS
    op: OpDef | None = None                     # the resolved op (kind "op")
    inputs: tuple[str, ...] = ()                # input node names in slot order (an op may read one twice)
    attrs: dict = field(default_factory=dict)   # resolved attributes (kind "op")
    span: Span | None = None                    # where the node was written
    trace: tuple = ()                           # ((block name, call span), ...), innermost first
    block: str = ""                             # the block instance path it belongs to ("" at model level)
    params: dict = field(default_factory=dict)  # role -> parameter name (a layer's own parameters)
    arg_spans: dict = field(default_factory=dict)   # input slot or attribute name -> its span (kind "op")
    declared: TensorType | None = None          # the type written in the source (input, label, param, const)
    value: float | None = None                  # the number of a const node
    type: TensorType | None = None              # set by infer (None: not typed, after an error)
    flops: int = 0                              # forward FLOPs per sample, set by infer
    state: dict = field(default_factory=dict)   # role -> running-state name, set by infer

    @property
    def op_name(self) -> str | None:
        """Return the name of the node's op, or None for a node that is not an op."""
        return self.op.name if self.op is not None else None


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
    train: dict[str, Setting] | None = None          # checked settings (training/config.resolve_train)
    train_span: Span | None = None
    train_section: object = None                     # the chosen syntax.Train (build), None without one
    search_section: object = None                    # the chosen syntax.Search (build), None without one
    model_span: Span | None = None
    warnings: list[Diagnostic] = field(default_factory=list)
    # (node, "input" | "label" | "parameter" | "definition", the name's span): what compiler/lint.py checks is used
    definitions: list[tuple[str, str, Span]] = field(default_factory=list)
    # (node and edge count, order): the cached topological order and the graph size it was computed for
    _order: tuple | None = field(default=None, repr=False, compare=False)

    def add(self, node: Node) -> Node:
        """Add a node (without edges) and return it; only the builder adds nodes."""
        self.nx.add_node(node.name, node=node)
        return node

    def node(self, name: str) -> Node:
        """Return the record of the node called `name` (KeyError if there is none)."""
        return self.nx.nodes[name]["node"]

    def nodes(self) -> list[Node]:
        """Return every node record, in the order they were added."""
        return [data["node"] for data in self.nx.nodes.values()]

    def type_of(self, name: str) -> TensorType | None:
        """Return the inferred type of a node (None if infer could not type it)."""
        return self.nx.nodes[name]["node"].type

    def topological_order(self) -> list[str]:
        """Return the node names in `nx.topological_sort`'s order, computed once per graph.

        The one order every stage uses: it decides which error is reported
        first, the order of `graph.params` (and so which random numbers
        initialise which weight) and the order of the plan's steps.
        Raises NetworkXUnfeasible on a cycle.
        """
        G = self.nx
        key = (G.number_of_nodes(), G.number_of_edges())
        if self._order is None or self._order[0] != key:
            self._order = (key, list(nx.topological_sort(G)))
        return self._order[1]

    @property
    def objective(self) -> str | None:
        """The node whose value training minimises: `loss`, else the single output."""
        if self.loss is not None:
            return self.loss
        if len(self.outputs) == 1:
            return next(iter(self.outputs.values()))
        return None

    def op_nodes(self) -> list[str]:
        """Return the names of the op nodes in topological order."""
        nodes = self.nx.nodes
        return [n for n in self.topological_order() if nodes[n]["node"].kind == "op"]


def trace_notes(node: Node) -> tuple[Note, ...]:
    """Return one note per block call site that instantiated a node (innermost first)."""
    return tuple(Note(f"in block `{block}` used here", span) for block, span in node.trace)
