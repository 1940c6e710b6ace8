"""Plan: typed graph -> forward and backward schedules with planned buffers.

Input: a typed Graph, the nodes wanted, and whether gradients are wanted.
Output: a `Plan` — plain data that prints and serialises: forward steps in a
topological order, backward steps in reverse (each naming the gate rule that
makes its gradients), the fan-in of every gradient (summed, the add gate
reversed), and buffer assignments: every op output gets a buffer allocated
once per batch size and reused by later steps once no forward or backward
step reads it any more.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import networkx as nx

from graphc.compiler.graph import Graph
from graphc.ops import lookup
from graphc.tensor_type import CLASS, TensorType, num_elements


@dataclass
class Step:
    """One forward step: `output = op(inputs..., params...)` written into `buffer`."""

    index: int
    node: str
    op: str
    inputs: list[str]
    params: list[str]
    output: str
    buffer: int | None          # None: a view of its first input (reshape, flatten)
    shape: list[int]            # per-sample output shape
    batched: bool


@dataclass
class BackStep:
    """One backward step: the gradient of `node` flows to the inputs and params marked in `needs`."""

    index: int
    node: str
    op: str
    rule: str
    targets: list[str]          # input then param names, in the op's argument order
    needs: list[bool]           # which of them receive a gradient
    reads: list[str]            # forward values this step reads (kept alive until it runs)


@dataclass
class Buffer:
    """A planned array: `elements` per sample if batched, else in total."""

    id: int
    elements: int
    batched: bool


@dataclass
class Plan:
    """Forward and backward schedules, gradient fan-in and buffers of one compiled model."""

    forward: list[Step]
    backward: list[BackStep]
    buffers: list[Buffer]
    objective: str | None
    grad_targets: list[str]                 # params and float inputs that receive gradients
    fan_in: dict[str, int] = field(default_factory=dict)
    keep: list[str] = field(default_factory=list)   # values the caller wants back

    def peak_bytes(self, batch: int, itemsize: int = 4) -> int:
        """Return the bytes all planned buffers take at a batch size."""
        return sum(b.elements * (batch if b.batched else 1) for b in self.buffers) * itemsize

    def activation_bytes(self, batch: int, itemsize: int = 4) -> int:
        """Return the bytes every step's output would take without buffer reuse."""
        total = 0
        for s in self.forward:
            if s.buffer is not None:
                total += num_elements(s.shape) * (batch if s.batched else 1)
        return total * itemsize

    def without_reuse(self) -> "Plan":
        """Return a copy in which every non-view step has a buffer of its own.

        Used to find the first node that produced NaN: with reuse, an early
        node's buffer may hold a later node's values after a full pass.
        """
        forward, buffers = [], []
        for s in self.forward:
            if s.buffer is None:
                forward.append(s)
                continue
            buffers.append(Buffer(len(buffers), max(num_elements(s.shape), 1), s.batched))
            forward.append(replace(s, buffer=buffers[-1].id))
        return replace(self, forward=forward, buffers=buffers)

    def to_json(self) -> dict:
        """Return the plan as JSON-ready data."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Plan":
        """Return the plan that `to_json` described."""
        return cls(forward=[Step(**s) for s in data["forward"]],
                   backward=[BackStep(**s) for s in data["backward"]],
                   buffers=[Buffer(**b) for b in data["buffers"]],
                   objective=data["objective"], grad_targets=list(data["grad_targets"]),
                   fan_in=dict(data["fan_in"]), keep=list(data["keep"]))


def plan(graph: Graph, wanted: list[str], *, backward: bool, input_grads: bool = True) -> Plan:
    """Return the schedule computing `wanted` nodes (and, with backward, the objective's gradients).

    Parameters always get gradients; float inputs only with `input_grads`
    (training never needs the gradient of the data, so it is not computed).
    """
    G = graph.nx
    objective = graph.objective if backward else None
    roots = set(wanted) | ({objective} if objective else set())
    needed = set(roots)
    for r in roots:
        needed |= nx.ancestors(G, r)
    order = [n for n in nx.topological_sort(G) if n in needed and G.nodes[n]["kind"] == "op"]

    # Which values carry a gradient: those downstream of a param or float input.
    grad_targets, carries = [], set()
    if objective is not None:
        upstream = nx.ancestors(G, objective) | {objective}
        for n in nx.topological_sort(G):
            if n not in upstream:
                continue
            a = G.nodes[n]
            if (a["kind"] == "param" or (a["kind"] == "input" and input_grads)) and a["type"].kind != CLASS:
                carries.add(n)
                grad_targets.append(n)
            elif a["kind"] == "op" and (any(i in carries for i in a["inputs"]) or a["params"]):
                carries.add(n)
        grad_targets += [p for n in order if n in carries for p in G.nodes[n]["params"].values()]

    back_steps, fan_in = [], {}
    if objective is not None:
        for n in reversed(order):
            if n not in carries:
                continue
            a = G.nodes[n]
            op = lookup(a["op"])
            targets = list(a["inputs"]) + list(a["params"].values())
            needs = [t in carries and t not in op_nondiff(op, a, i) for i, t in enumerate(a["inputs"])]
            needs += [True] * len(a["params"])
            reads = []
            if op.saves in ("inputs", "both"):
                reads += targets
            if op.saves in ("output", "both"):
                reads.append(n)
            for t, need in zip(targets, needs):
                if need:
                    fan_in[t] = fan_in.get(t, 0) + 1
            back_steps.append(BackStep(len(back_steps), n, op.name, op.grad_rule, targets, needs,
                                       list(dict.fromkeys(reads))))

    steps = [Step(i, n, G.nodes[n]["op"], list(G.nodes[n]["inputs"]), list(G.nodes[n]["params"].values()),
                  n, None, list(G.nodes[n]["type"].shape), G.nodes[n]["type"].batched)
             for i, n in enumerate(order)]
    buffers = _assign_buffers(graph, steps, back_steps, keep=set(wanted) | ({objective} if objective else set()))
    return Plan(steps, back_steps, buffers, objective, grad_targets, fan_in, sorted(roots))


def op_nondiff(op, attrs, index) -> set:
    """Return the set of input names of a node that get no gradient (labels)."""
    names = set()
    for i, name in enumerate(attrs["inputs"]):
        slot = op.inputs[min(i, len(op.inputs) - 1)]
        if slot in op.nondiff:
            names.add(name)
    return names


def _assign_buffers(graph: Graph, steps: list[Step], back: list[BackStep], keep: set[str]) -> list[Buffer]:
    """Give every non-aliasing step a buffer, reusing buffers whose values are dead."""
    G = graph.nx
    position = {s.output: s.index for s in steps}
    end = len(steps) + len(back)
    # An aliasing step's output lives in its first input's buffer: group them.
    group = {}
    for s in steps:
        op = lookup(s.op)
        group[s.output] = group.get(s.inputs[0], s.inputs[0]) if op.aliases and s.inputs[0] in position else s.output
    last_use: dict[str, int] = {}

    def use(value: str, at: int) -> None:
        root = group.get(value)
        if root is not None:
            last_use[root] = max(last_use.get(root, -1), at)

    for s in steps:
        use(s.output, s.index)
        for i in s.inputs:
            use(i, s.index)
    for b in back:
        for r in b.reads:
            use(r, len(steps) + b.index)
    for k in keep:
        use(k, end)

    buffers: list[Buffer] = []
    free: list[int] = []
    live: dict[str, int] = {}     # group root -> buffer id
    for s in steps:
        for root, buf in list(live.items()):
            if last_use[root] < s.index:
                free.append(buf)
                del live[root]
        if group[s.output] != s.output:
            continue               # a view: no buffer of its own
        source = s.inputs[0] if s.inputs else None
        if lookup(s.op).inplace and source in live and group[source] == source \
                and last_use[source] == s.index:
            # relu after linear: nothing reads the linear output after this step
            # (its backward reads the linear's inputs, relu's reads relu's output),
            # so relu overwrites it in place.
            s.buffer = live.pop(source)
            live[s.output] = s.buffer
            continue
        t: TensorType = G.nodes[s.node]["type"]
        elements = max(t.size, 1)
        candidates = [b for b in free if buffers[b].batched == t.batched]
        fitting = [b for b in candidates if buffers[b].elements >= elements]
        if fitting:
            chosen = min(fitting, key=lambda b: buffers[b].elements)
        elif candidates:
            chosen = max(candidates, key=lambda b: buffers[b].elements)
            buffers[chosen].elements = elements
        else:
            chosen = len(buffers)
            buffers.append(Buffer(chosen, elements, t.batched))
        if chosen in free:
            free.remove(chosen)
        s.buffer = chosen
        live[s.output] = chosen
    return buffers

def compiled_plan(graph: Graph, backward: bool = True) -> Plan:
    """Return the plan `graphc run` would execute.

    With a train section that is the training plan (no gradient of the data);
    without one, `run` also reports the gradients of the inputs.
    """
    wanted = list(graph.outputs.values()) + ([graph.loss] if graph.loss else [])
    return plan(graph, wanted, backward=backward and graph.objective is not None,
                input_grads=graph.train is None)
