"""Build: syntax modules -> graph, with every name and op resolved.

Input: the parsed modules of a program (main file first) and the model to
build. Output: a `Graph` whose nodes are inputs, labels, params, constants and
op calls, with `->` chains desugared and blocks inlined at their use site.
Errors go to the caller's `Diagnostics`; building goes on after an error so
that independent errors are all reported.

Node names (documented in the README): a statement `s = ...` names its final
value `s`; the other calls in it are `s.<op>` (`s.<op>_2` when an op repeats).
A layer's parameters are `<owner>.<role>`, where the owner is `s` when the
statement holds one layer (or block), else the layer's own node name. A block
used in statement `s` prefixes everything it creates with its owner, so
`h = conv_relu_pool(image, 30)` creates `h.conv`, `h.relu` and `h.weight`.
`x -> repeat 3 f(...)` applies f three times, as `s.f.0`, `s.f.1`, `s.f.2`.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from graphc.compiler.graph import Graph
from graphc.diagnostics import Diagnostics, Note
from graphc.language import syntax as S
from graphc.ops import lookup
from graphc.source import Span
from graphc.training.settings import resolve_train

OPERATORS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "@": "matmul", "**": "pow"}
_RESERVED = {"true": True, "false": False}


@dataclass(frozen=True)
class Tensor:
    """A value that is a node of the graph."""
    node: str


@dataclass(frozen=True)
class Const:
    """A compile-time value: a number, a string, a bool or a list of them."""
    value: object
    span: Span


@dataclass(frozen=True)
class Symbol:
    """A bare word bound to nothing (`he`, `mean`): fine as an attribute, an error as a tensor."""
    name: str
    span: Span


POISON = Const(None, None)   # an expression that already produced an error


def build(modules: list[S.Module], diagnostics: Diagnostics, model: str | None = None) -> Graph | None:
    """Return the graph of the chosen model (errors recorded in `diagnostics`), or None if there is no model."""
    blocks = _collect_blocks(modules, diagnostics)
    chosen = _choose_model(modules, model, diagnostics)
    if chosen is None:
        return None
    graph = Graph(chosen.name, model_span=chosen.name_span)
    builder = _Builder(graph, blocks, diagnostics)
    try:
        builder.model(chosen)
    except RecursionError:
        # The parser bounds one expression's depth and `expand` the nesting of blocks, but
        # deep expressions inside many nested blocks could still exhaust Python's stack.
        diagnostics.error(f"model `{chosen.name}` nests blocks and expressions too deeply to build",
                          chosen.name_span, help="split deep expressions into several statements")
        return graph
    train = _train_for(modules[0], chosen, diagnostics)
    if train is not None:
        graph.train = resolve_train(train, diagnostics)
        graph.train_span = train.span
        if not any(getattr(s, "name", None) == "loss" for s in chosen.body):
            diagnostics.error(f"model `{chosen.name}` has a train section but no `loss`", train.span,
                              help="add a statement such as `loss = cross_entropy(logits, label)`")
    return graph


def _collect_blocks(modules, diagnostics) -> dict[str, S.Block]:
    blocks: dict[str, S.Block] = {}
    for module in modules:
        for item in module.items:
            if not isinstance(item, S.Block):
                continue
            if item.name in blocks:
                diagnostics.error(f"block `{item.name}` is defined twice", item.name_span,
                                  notes=[Note("first defined", blocks[item.name].name_span)],
                                  help="rename one of them")
            elif lookup(item.name) is not None:
                diagnostics.error(f"block `{item.name}` has the name of a built-in op", item.name_span,
                                  help="choose another name for the block")
            else:
                blocks[item.name] = item
    return blocks


def _choose_model(modules, wanted, diagnostics) -> S.Model | None:
    main = [i for i in modules[0].items if isinstance(i, S.Model)]
    every = main + [i for m in modules[1:] for i in m.items if isinstance(i, S.Model)]
    seen: dict[str, S.Model] = {}
    for m in every:
        if m.name in seen:
            diagnostics.error(f"model `{m.name}` is defined twice", m.name_span,
                              notes=[Note("first defined", seen[m.name].name_span)], help="rename one of them")
        seen.setdefault(m.name, m)
    main = [m for m in main if seen[m.name] is m]   # a duplicate is reported above, not as a second model
    if wanted is not None:
        if wanted not in seen:
            diagnostics.error(f"no model named `{wanted}` in {modules[0].source.path}",
                              help=_did_you_mean(wanted, seen) or "models here: " + ", ".join(seen))
            return None
        return seen[wanted]
    if len(main) == 1:
        return main[0]
    if not main:
        diagnostics.error(f"{modules[0].source.path} defines no model", modules[0].source.end_span(),
                          help="write `model NAME { input x: [2] ... }`")
        return None
    diagnostics.error(f"{modules[0].source.path} defines several models: " + ", ".join(m.name for m in main),
                      main[1].name_span, help="choose one with --model NAME")
    return None


def _train_for(module, model, diagnostics) -> S.Train | None:
    models = [i for i in module.items if isinstance(i, S.Model)]
    found = None
    for t in (i for i in module.items if isinstance(i, S.Train)):
        if t.model is None and len(models) > 1:
            diagnostics.error("this file has several models; say which one this train section is for",
                              t.span, help="write `train NAME { ... }`")
            continue
        if t.model is not None and t.model not in {m.name for m in models}:
            diagnostics.error(f"train section for unknown model `{t.model}`", t.span,
                              help=_did_you_mean(t.model, [m.name for m in models])
                              or "models in this file: " + (", ".join(m.name for m in models) or "none"))
            continue
        if t.model in (None, model.name):
            if found is not None:
                diagnostics.error(f"model `{model.name}` has two train sections", t.span,
                                  notes=[Note("the first is", found.span)], help="merge them into one")
                continue
            found = t
    return found


def _did_you_mean(name: str, candidates) -> str | None:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None


class _Scope:
    """Names visible in one body (a model, or one use of a block)."""

    def __init__(self, prefix: str, env: dict, trace: tuple, block: str, stack: tuple):
        self.prefix = prefix           # "" at model level, "h." inside the block used by h
        self.env = env
        self.trace = trace             # ((block name, call span), ...) innermost first
        self.block = block
        self.stack = stack             # block names being expanded, for recursion
        self.defined: dict[str, tuple[int, Span]] = {}
        self.refs = _Refs()              # name -> the names its definition mentions
        self.current = 0


class _Refs:
    """The names each definition's expression mentions, worked out only when asked.

    Only a forward reference (a possible cycle) asks, so a body that has none
    never walks its expressions a second time.
    """

    def __init__(self) -> None:
        self.values: dict[str, object] = {}   # name -> its expression (None for declarations)
        self._names: dict[str, set[str]] = {}

    def get(self, name: str, default=None):
        if name not in self.values:
            return default
        names = self._names.get(name)
        if names is None:
            value = self.values[name]
            names = self._names[name] = _names_in(value, set()) if value is not None else set()
        return names


class _StatementNames:
    """Decides the node and parameter names of the calls in one statement."""

    def __init__(self, builder: "_Builder", stmt: str, root_name: str, expr):
        self.stmt, self.root_name = stmt, root_name
        order = []
        _post_order(expr, order)
        seen: dict[str, int] = {}
        self.labels: dict[int, str] = {}
        owners = 0
        for node in order:
            func = _func_name(node)
            seen[func] = seen.get(func, 0) + 1
            self.labels[id(node)] = func if seen[func] == 1 else f"{func}_{seen[func]}"
            call = node.call if isinstance(node, S.Repeat) else node
            if isinstance(call, S.Call) and (call.func in builder.blocks or _has_params(call.func)):
                owners += _repeat_count(node)
        self.single = owners == 1
        self.root = _root_of(expr)

    def node_name(self, syntax, rep: int | None = None, last: bool = True) -> str:
        """Return the node name of a call (rep: its repetition index inside `repeat`)."""
        label = self.labels[id(syntax)] + (f".{rep}" if rep is not None else "")
        if syntax is self.root and last:
            return self.root_name
        return f"{self.stmt}.{label}"

    def owner(self, syntax, rep: int | None = None, last: bool = True) -> str:
        """Return the prefix of a call's parameters (and of a block's nodes).

        With several layers in the statement each owner is `s.<label>`, the last
        one included: its node is `s`, but `h = linear(x, 8) -> relu -> linear(4)`
        names the second layer's weight `h.linear_2.weight` (README), and the last
        copy of a `repeat` is `s.f.2`, like the others.
        """
        if self.single:
            return self.stmt
        return f"{self.stmt}.{self.labels[id(syntax)]}" + (f".{rep}" if rep is not None else "")


def _func_name(node) -> str:
    if isinstance(node, S.BinOp):
        return OPERATORS[node.op]
    if isinstance(node, S.Negate):
        return "neg"
    return node.call.func if isinstance(node, S.Repeat) else node.func


def _has_params(func: str) -> bool:
    op = lookup(func)
    return op is not None and bool(op.params)


def _repeat_count(node) -> int:
    """Return how many owners of parameters a call stands for.

    A `repeat` numbers its copies (`s.f.0`, `s.f.1`, ...) whatever its count, so it
    counts as several even for `repeat 1` or a count that is a block argument.
    """
    if isinstance(node, S.Repeat):
        if isinstance(node.count, S.Number) and isinstance(node.count.value, int):
            return max(node.count.value, 2)
        return 2
    return 1


def _post_order(expr, out: list) -> None:
    """Append the call-like nodes of expr in evaluation order (arguments before calls)."""
    if isinstance(expr, S.Call):
        for a in expr.args:
            _post_order(a, out)
        for k in expr.keywords:
            _post_order(k.value, out)
        out.append(expr)
    elif isinstance(expr, S.Repeat):
        _post_order(expr.call, out)
        out[-1] = expr  # the repeat stands for its call
    elif isinstance(expr, S.BinOp):
        _post_order(expr.left, out)
        _post_order(expr.right, out)
        out.append(expr)
    elif isinstance(expr, S.Negate):
        _post_order(expr.operand, out)
        if not isinstance(expr.operand, S.Number):
            out.append(expr)
    elif isinstance(expr, S.Chain):
        _post_order(expr.head, out)
        for link in expr.links:
            _post_order(link, out)
    elif isinstance(expr, S.ListExpr):
        for i in expr.items:
            _post_order(i, out)


def _root_of(expr):
    if isinstance(expr, S.Chain):
        return expr.links[-1]
    if isinstance(expr, (S.Call, S.BinOp, S.Negate)):
        return expr
    return None


def _names_in(expr, out: set) -> set:
    """Add the names expr mentions to `out`, left to right; return `out`.

    Walked with an explicit stack (children pushed in reverse, so the order is
    that of a recursive walk): it runs deep inside the builder's own recursion.
    """
    stack = [expr]
    while stack:
        e = stack.pop()
        if isinstance(e, S.Name):
            out.add(e.id)
        elif isinstance(e, S.Call):
            stack += reversed([*e.args, *(k.value for k in e.keywords)])
        elif isinstance(e, S.Repeat):
            stack += (e.call, e.count)
        elif isinstance(e, S.BinOp):
            stack += (e.right, e.left)
        elif isinstance(e, S.Negate):
            stack.append(e.operand)
        elif isinstance(e, S.Chain):
            stack += reversed([e.head, *e.links])
        elif isinstance(e, S.ListExpr):
            stack += reversed(e.items)
    return out


from graphc.compiler.builder import _Builder  # noqa: E402  (the statement and expression walker)
