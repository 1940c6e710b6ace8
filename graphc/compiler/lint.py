"""Lint: the warnings a typed graph earns. Read top-down, it is the list of checks.

Input: a Graph that build and infer finished without errors. Output: a list of
`warning` Diagnostics in source order (program.check_modules appends them to
`graph.warnings`; library code never prints them). Each check is one pass over
the graph:

1. unused: an input, label, parameter or statement that nothing reads;
2. dead code: one that is read, but only by values that reach neither the loss
   nor any output (the statement is named; what reads it is in the help);
3. no gradient: a parameter upstream of the objective whose every path to it
   passes an op input that carries no gradient. Which inputs do is the
   registry's business (`OpDef.zero_grad`: `step` is zero everywhere;
   `OpDef.nondiff`: a loss's target), so no op is named here. The warning
   points at the op that blocks the gradient and names the parameters.
   With a `loss`, a parameter that feeds only outputs is also never trained.

One warning per span: a block used twice makes its mistake once.
"""
from __future__ import annotations

from graphc.compiler.graph import Graph, trace_notes
from graphc.diagnostics import Diagnostic, Note
from graphc.source import Span

FIX_UNUSED = "use it, make it an `output`, or delete it"


def lint(graph: Graph) -> list[Diagnostic]:
    """Return the warnings of a typed graph (unused and dead names, parameters no gradient reaches), in source order."""
    found = _Warnings()
    records = {node.name: node for node in graph.nodes()}
    objective = graph.objective
    trained = _upstream(records, [objective], set()) if objective is not None else set()
    roots = [*graph.outputs.values(), *([graph.loss] if graph.loss else [])]
    live = _upstream(records, roots, set(trained)) if roots else None
    _unused(graph, live, found)
    if objective is not None:
        _no_gradient(graph, records, trained, live, found)
    return sorted(found.items, key=lambda d: (d.span.source.path, d.span.start) if d.span else ("", 0))


# ---- 1 and 2: unused names and dead statements ------------------------------------

def _unused(graph: Graph, live: set[str] | None, found: "_Warnings") -> None:
    """Warn about every definition that nothing reads, or only values that reach no output or loss.

    `live` holds the nodes the outputs and the loss depend on; None when the
    model has neither, and then only names nothing reads at all are reported.
    """
    G = graph.nx
    for node, what, span in graph.definitions:
        if node not in G or (live is not None and node in live):
            continue
        readers = sorted(G.succ[node])
        trace = graph.node(node).trace
        # Inside a block, name the statement as written there: every use of the block has the same mistake.
        named = f"{what} `{span.text}` in block `{trace[0][0]}`" if trace and span is not None else f"{what} `{node}`"
        notes = trace_notes(graph.node(node))
        if not readers:
            found.add(f"{named} is never used", span, FIX_UNUSED, notes)
        elif live is not None:
            shown = ", ".join(f"`{r}`" for r in readers[:3]) + (" ..." if len(readers) > 3 else "")
            found.add(f"{named} reaches neither the loss nor any output", span,
                      f"only unused values read it ({shown}); {FIX_UNUSED}", notes)


# ---- 3: parameters no gradient reaches ---------------------------------------------

def _no_gradient(graph: Graph, records: dict, trained: set[str], live: set[str], found: "_Warnings") -> None:
    """Warn about every parameter that feeds the objective but receives no gradient from it.

    `trained`: the objective and the nodes it depends on; `live`: those of the
    outputs and the loss too (the other nodes are dead code, reported by `_unused`).
    """
    receives, blocked = _gradient_flow(graph, records, graph.objective)
    # A parameter behind a blocked input: walk upstream from the blocked edge through the nodes
    # that receive no gradient. Blocks nearest the objective come first and claim their parameters.
    seen = set()
    behind: dict[tuple, list] = {}   # blocker (node, input index) -> [(parameter, its span), ...]
    for block in blocked:
        stack = [block[2]]
        while stack:
            name = stack.pop()
            if name in receives or name in seen:
                continue
            seen.add(name)
            behind.setdefault(block[:2], []).extend(_params_of(graph, records[name]))
            stack.extend(records[name].inputs)
    for (blocker, index), params in behind.items():
        if params:
            _warn_blocked(graph, blocker, index, params, found)
    if graph.loss is None:
        return
    # With a loss, a parameter that feeds only outputs is never trained.
    for name in sorted(live - trained):
        params = _params_of(graph, records[name])
        if params:
            found.add(f"{_parameters(params)} {'do' if len(params) > 1 else 'does'} not reach the loss, "
                      "so training never changes " + ("them" if len(params) > 1 else "it"), params[0][1],
                      "training changes only what the loss depends on; compute the loss from this output "
                      "too if it should learn")


def _gradient_flow(graph: Graph, records: dict, objective: str) -> tuple[set[str], list[tuple[str, int, str]]]:
    """Return (the nodes the objective's gradient reaches, the blocked edges as (op node, input index, source)).

    Blocked edges are listed nearest the objective first.
    """
    receives, blocked = {objective}, []
    for name in reversed(graph.topological_order()):
        if name not in receives:
            continue
        node = records[name]
        if node.kind != "op":
            continue
        op = node.op
        for i, source in enumerate(node.inputs):
            slot = op.inputs[min(i, len(op.inputs) - 1)]   # a variadic op's extra inputs share its last slot
            if slot in op.zero_grad or slot in op.nondiff:
                blocked.append((name, i, source))
            else:
                receives.add(source)
    return receives, blocked


def _warn_blocked(graph: Graph, blocker: str, index: int, params: list[tuple[str, Span]], found) -> None:
    """Record the warning at the op that keeps the gradient from `params` (at its input `index`)."""
    node = graph.node(blocker)
    op = node.op
    slot = op.inputs[min(index, len(op.inputs) - 1)]
    if slot in op.zero_grad:
        reason = f"`{op.name}` has zero gradient everywhere"
        if len(op.inputs) > 1:
            reason += f" with respect to `{slot}`"
    else:
        reason = f"`{op.name}` passes no gradient to its input `{slot}`"
    plural = len(params) > 1
    by_span: dict = {}   # a layer's weight and bias share the layer's span: one note for both
    for param, span in params:
        if span is not None:
            by_span.setdefault((span.source.path, span.start), (span, []))[1].append((param, span))
    notes = [Note(f"{_parameters(named)} {'are' if len(named) > 1 else 'is'} made here", span)
             for span, named in list(by_span.values())[:3]]
    found.add(f"{reason}, so no gradient reaches {_parameters(params)}",
              node.span if slot in op.zero_grad else node.arg_spans.get(index, node.span),
              f"training leaves {'them' if plural else 'it'} at {'their' if plural else 'its'} initial "
              f"value{'s' * plural}: gradient descent needs an op with a nonzero gradient here",
              [*trace_notes(node), *notes])


# ---- helpers -------------------------------------------------------------------------

def _upstream(records: dict, roots: list[str], seen: set[str]) -> set[str]:
    """Return `seen` plus the roots and every node they depend on (one walk, however many roots).

    The walk does not enter the nodes already in `seen` (their own inputs are taken to be there).
    """
    stack = [r for r in roots if r not in seen]
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(records[name].inputs)
    return seen


def _params_of(graph: Graph, node) -> list[tuple[str, Span | None]]:
    """Return the parameters a node is or owns (an explicit `param`, or a layer's weights), with their spans."""
    names = [node.name] if node.kind == "param" else list(node.params.values())
    return [(p, graph.params[p].span if p in graph.params else node.span) for p in names]


def _parameters(params: list[tuple[str, Span | None]]) -> str:
    """Return "parameter `a`" or "parameters `a`, `b` and `c`" for (name, span) pairs."""
    names = [f"`{p}`" for p, _ in params]
    if len(names) == 1:
        return f"parameter {names[0]}"
    return "parameters " + ", ".join(names[:-1]) + " and " + names[-1]


class _Warnings:
    """The warnings found so far, at most one per span."""

    def __init__(self):
        self.items: list[Diagnostic] = []
        self._spans: set = set()

    def add(self, message: str, span: Span | None, help: str, notes=()) -> None:
        """Record a warning unless one was already recorded at this span."""
        key = (span.source.path, span.start) if span is not None else message
        if key not in self._spans:
            self._spans.add(key)
            self.items.append(Diagnostic("warning", message, span, help, tuple(notes)))
