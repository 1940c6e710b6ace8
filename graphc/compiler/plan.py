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

import heapq
from dataclasses import asdict, dataclass, field, replace

import networkx as nx

from graphc.compiler.graph import Graph, Node
from graphc.compiler.rewrite import rewrite, unused_outputs_rewrite
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
    rewrites: list[str] = field(default_factory=list)   # "rewrite: <what> (<why>)" lines (compiler/rewrite.py)
    # The rewritten graph the steps name (None: the graph the plan was made from). Not serialised.
    graph: Graph | None = field(default=None, repr=False, compare=False)

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
        """Return the plan as JSON-ready data (the rewritten graph left out: the rewrites name its changes)."""
        return asdict(replace(self, graph=None))

    @classmethod
    def from_json(cls, data: dict) -> "Plan":
        """Return the plan that `to_json` described."""
        return cls(forward=[Step(**s) for s in data["forward"]],
                   backward=[BackStep(**s) for s in data["backward"]],
                   buffers=[Buffer(**b) for b in data["buffers"]],
                   objective=data["objective"], grad_targets=list(data["grad_targets"]),
                   fan_in=dict(data["fan_in"]), keep=list(data["keep"]),
                   rewrites=list(data.get("rewrites", [])))


def plan(graph: Graph, wanted: list[str], *, backward: bool, input_grads: bool = True) -> Plan:
    """Return the schedule computing `wanted` nodes (and, with backward, the objective's gradients).

    Parameters always get gradients; float inputs only with `input_grads`
    (training never needs the gradient of the data, so it is not computed).
    """
    G = graph.nx
    node = graph.node
    objective = graph.objective if backward else None
    roots = set(wanted) | ({objective} if objective else set())
    needed = set(roots)
    for r in roots:
        needed |= nx.ancestors(G, r)
    topological = graph.topological_order()
    order = [n for n in topological if n in needed and node(n).kind == "op"]

    # Which values carry a gradient: those downstream of a param or float input.
    grad_targets, carries = [], set()
    if objective is not None:
        upstream = nx.ancestors(G, objective) | {objective}
        for n in topological:
            if n not in upstream:
                continue
            a = node(n)
            if (a.kind == "param" or (a.kind == "input" and input_grads)) and a.type.kind != CLASS:
                carries.add(n)
                grad_targets.append(n)
            elif a.kind == "op" and (any(i in carries for i in a.inputs) or a.params):
                carries.add(n)
        grad_targets += [p for n in order if n in carries for p in node(n).params.values()]

    back_steps, fan_in = [], {}
    if objective is not None:
        for n in reversed(order):
            if n not in carries:
                continue
            a = node(n)
            op = a.op
            nondiff = nondiff_inputs(a)
            targets = list(a.inputs) + list(a.params.values())
            needs = [t in carries and t not in nondiff for t in a.inputs]
            needs += [True] * len(a.params)
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

    steps = []
    for i, n in enumerate(order):
        a = node(n)
        steps.append(Step(i, n, a.op.name, list(a.inputs), list(a.params.values()), n, None, list(a.type.shape),
                          a.type.batched))
    buffers = _assign_buffers(graph, steps, back_steps, keep=set(wanted) | ({objective} if objective else set()))
    return Plan(steps, back_steps, buffers, objective, grad_targets, fan_in, sorted(roots))


def nondiff_inputs(node: Node) -> set[str]:
    """Return the names of an op node's inputs that get no gradient (those in a non-differentiable slot)."""
    op = node.op
    names = set()
    for i, name in enumerate(node.inputs):
        slot = op.inputs[min(i, len(op.inputs) - 1)]   # a variadic op's extra inputs share its last slot
        if slot in op.nondiff:
            names.add(name)
    return names


def _assign_buffers(graph: Graph, steps: list[Step], back: list[BackStep], keep: set[str]) -> list[Buffer]:
    """Give every non-aliasing step a buffer, reusing buffers whose values are dead; return the buffers."""
    op_of = {s.node: graph.node(s.node).op for s in steps}
    group = _view_groups(steps, op_of)
    last_use = _last_uses(steps, back, keep, group)
    buffers: list[Buffer] = []
    free: list[int] = []
    live: dict[str, int] = {}     # group root -> buffer id
    made: dict[str, int] = {}     # group root -> when it became live (the order `live` had them in)
    # (last use, root) of every live value: finding the dead ones must not walk all live values,
    # since a training plan keeps most of them alive until backward (quadratic on long chains).
    expiring: list[tuple[int, str]] = []
    for s in steps:
        dead = []
        while expiring and expiring[0][0] < s.index:
            root = heapq.heappop(expiring)[1]
            if root in live:      # not if a step overwrote it in place
                dead.append(root)
        # Freed in the order the values became live, so buffer choices do not depend on the heap.
        for root in sorted(dead, key=made.__getitem__):
            free.append(live.pop(root))
        if group[s.output] != s.output:
            continue               # a view: no buffer of its own
        source = s.inputs[0] if s.inputs else None
        if op_of[s.node].inplace and source in live and group[source] == source \
                and last_use[source] == s.index:
            # relu after linear: nothing reads the linear output after this step
            # (its backward reads the linear's inputs, relu's reads relu's output),
            # so relu overwrites it in place.
            s.buffer = live.pop(source)
        else:
            t: TensorType = graph.type_of(s.node)
            s.buffer = _reuse_or_add(buffers, free, max(t.size, 1), t.batched)
        live[s.output], made[s.output] = s.buffer, s.index
        heapq.heappush(expiring, (last_use[s.output], s.output))
    return buffers


def _view_groups(steps: list[Step], op_of: dict) -> dict[str, str]:
    """Return step output -> the value whose buffer holds it: a view's output lives in its first input's."""
    position = {s.output: s.index for s in steps}
    group: dict[str, str] = {}
    for s in steps:
        view = op_of[s.node].returns_view and s.inputs[0] in position
        group[s.output] = group.get(s.inputs[0], s.inputs[0]) if view else s.output
    return group


def _last_uses(steps: list[Step], back: list[BackStep], keep: set[str], group: dict) -> dict[str, int]:
    """Return group root -> the last position (forward steps, then backward steps) that reads it."""
    end = len(steps) + len(back)
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
    return last_use


def _reuse_or_add(buffers: list[Buffer], free: list[int], elements: int, batched: bool) -> int:
    """Return the id of a free buffer for `elements` values (the smallest that fits, else the largest, grown),
    or of a new one; take it off `free`."""
    candidates = [b for b in free if buffers[b].batched == batched]
    fitting = [b for b in candidates if buffers[b].elements >= elements]
    if fitting:
        chosen = min(fitting, key=lambda b: buffers[b].elements)
    elif candidates:
        chosen = max(candidates, key=lambda b: buffers[b].elements)
        buffers[chosen].elements = elements
    else:
        chosen = len(buffers)
        buffers.append(Buffer(chosen, elements, batched))
    if chosen in free:
        free.remove(chosen)
    return chosen


def rewritten_plan(graph: Graph, wanted: list[str], *, backward: bool, input_grads: bool = True) -> Plan:
    """Return the plan of `wanted` after the graph rewrites (compiler/rewrite.py), listed in `rewrites`.

    A training plan (backward without input gradients) computes only the
    objective: outputs nothing downstream reads are left out. A plan that
    reports input gradients (gradcheck, `gradients(intermediates=True)`) is
    never rewritten: its callers read every intermediate gradient.
    """
    if backward and input_grads:
        return plan(graph, wanted, backward=backward, input_grads=input_grads)
    lines = []
    if backward and graph.objective is not None:
        dropped = [w for w in wanted if w != graph.objective and w not in _ancestors_of(graph, graph.objective)]
        wanted = [w for w in wanted if w not in dropped]
        unused = unused_outputs_rewrite(graph, dropped)
        if unused is not None:
            lines.append(unused.line())
    keep = set(wanted) | ({graph.objective} if backward and graph.objective else set())
    rewritten, done = rewrite(graph, keep)
    schedule = plan(rewritten, wanted, backward=backward, input_grads=input_grads)
    schedule.rewrites = lines + [r.line() for r in done]
    schedule.graph = rewritten if rewritten is not graph else None
    return schedule


def _ancestors_of(graph: Graph, name: str) -> set[str]:
    return nx.ancestors(graph.nx, name)


def compiled_plan(graph: Graph, backward: bool = True, rewrites: bool = False) -> Plan:
    """Return the plan `graphc run` would execute (with `rewrites`, after the graph rewrites).

    With a train section that is the training plan (no gradient of the data);
    without one, `run` also reports the gradients of the inputs.
    """
    wanted = list(graph.outputs.values()) + ([graph.loss] if graph.loss else [])
    make = rewritten_plan if rewrites else plan
    return make(graph, wanted, backward=backward and graph.objective is not None,
                input_grads=graph.train is None)
