"""Scope: what names stand for while a body is built, and how its nodes are named.

Input: syntax from language/syntax.py. Output: the value types an expression
evaluates to (`Tensor`, `Const`, `Symbol`, `POISON`), the `Scope` of one body
(a model, or one use of a block), `StatementNames` (the node and parameter
names of the calls in one statement) and the walks over expressions both need.
Used by compiler/evaluate.py and compiler/builder.py; builds nothing itself.
"""
from __future__ import annotations

from dataclasses import dataclass

from graphc.language import syntax as S
from graphc.ops import find
from graphc.source import Span

OPERATORS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "@": "matmul", "**": "pow"}
RESERVED = {"true": True, "false": False}   # words that are constants wherever they appear


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


class Scope:
    """Names visible in one body (a model, or one use of a block)."""

    def __init__(self, prefix: str, env: dict, trace: tuple, block: str, stack: tuple):
        self.prefix = prefix           # "" at model level, "h." inside the block used by h
        self.env = env
        self.trace = trace             # ((block name, call span), ...) innermost first
        self.block = block
        self.stack = stack             # block names being expanded, for recursion
        self.defined: dict[str, tuple[int, Span]] = {}
        self.refs = Refs()              # name -> the names its definition mentions
        self.current = 0


class Refs:
    """The names each definition's expression mentions, worked out only when asked.

    Only a forward reference (a possible cycle) asks, so a body that has none
    never walks its expressions a second time.
    """

    def __init__(self) -> None:
        self.values: dict[str, object] = {}   # name -> its expression (None for declarations)
        self._names: dict[str, set[str]] = {}

    def get(self, name: str, default=None):
        """Return the names `name`'s definition mentions (`default` if it has no definition here)."""
        if name not in self.values:
            return default
        names = self._names.get(name)
        if names is None:
            value = self.values[name]
            names = self._names[name] = names_in(value, set()) if value is not None else set()
        return names


class StatementNames:
    """Decides the node and parameter names of the calls in one statement."""

    def __init__(self, blocks, stmt: str, root_name: str, expr):
        self.stmt, self.root_name = stmt, root_name
        order = []
        post_order(expr, order)
        seen: dict[str, int] = {}
        self.labels: dict[int, str] = {}
        owners = 0
        for node in order:
            func = func_name(node)
            seen[func] = seen.get(func, 0) + 1
            self.labels[id(node)] = func if seen[func] == 1 else f"{func}_{seen[func]}"
            call = node.call if isinstance(node, S.Repeat) else node
            if isinstance(call, S.Call) and (call.func in blocks or has_params(call.func)):
                owners += repeat_count(node)
        self.single = owners == 1
        self.root = root_of(expr)

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


def func_name(node) -> str:
    """Return the op or block name a call-like node stands for (`add` for `+`, `neg` for `-x`)."""
    if isinstance(node, S.BinOp):
        return OPERATORS[node.op]
    if isinstance(node, S.Negate):
        return "neg"
    return node.call.func if isinstance(node, S.Repeat) else node.func


def has_params(func: str) -> bool:
    """True when `func` is an op that owns parameters (a layer)."""
    op = find(func)
    return op is not None and bool(op.params)


def repeat_count(node) -> int:
    """Return how many owners of parameters a call stands for.

    A `repeat` numbers its copies (`s.f.0`, `s.f.1`, ...) whatever its count, so it
    counts as several even for `repeat 1` or a count that is a block argument.
    """
    if isinstance(node, S.Repeat):
        if isinstance(node.count, S.Number) and isinstance(node.count.value, int):
            return max(node.count.value, 2)
        return 2
    return 1


def post_order(expr, out: list) -> None:
    """Append the call-like nodes of expr in evaluation order (arguments before calls)."""
    if isinstance(expr, S.Call):
        for a in expr.args:
            post_order(a, out)
        for k in expr.keywords:
            post_order(k.value, out)
        out.append(expr)
    elif isinstance(expr, S.Repeat):
        post_order(expr.call, out)
        out[-1] = expr  # the repeat stands for its call
    elif isinstance(expr, S.BinOp):
        post_order(expr.left, out)
        post_order(expr.right, out)
        out.append(expr)
    elif isinstance(expr, S.Negate):
        post_order(expr.operand, out)
        if not isinstance(expr.operand, S.Number):
            out.append(expr)
    elif isinstance(expr, S.Chain):
        post_order(expr.head, out)
        for link in expr.links:
            post_order(link, out)
    elif isinstance(expr, S.ListExpr):
        for i in expr.items:
            post_order(i, out)


def root_of(expr):
    """Return the call-like node whose value a statement's expression is, or None (a name, a number)."""
    if isinstance(expr, S.Chain):
        return expr.links[-1]
    if isinstance(expr, (S.Call, S.BinOp, S.Negate)):
        return expr
    return None


def names_in(expr, out: set) -> set:
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


def span_of(expr):
    """Return an expression's span (None for values built without one)."""
    return getattr(expr, "span", None)


def is_number(value) -> bool:
    """True for a Const holding an int or float (not a bool, list or string)."""
    return isinstance(value, Const) and isinstance(value.value, (int, float)) and not isinstance(value.value, bool)


def path_back(start: str, goal: str, refs: dict) -> list[str] | None:
    """Return the names leading from `start` back to `goal` through references, or None."""
    stack, seen = [(start, [start])], set()
    while stack:
        name, path = stack.pop()
        if name == goal:
            return path
        if name in seen:
            continue
        seen.add(name)
        for nxt in refs.get(name, ()):
            stack.append((nxt, path + [nxt]))
    return None


def nodes_at_least(block, blocks: dict, memo: dict, open_blocks: frozenset = frozenset()) -> int:
    """Return a lower bound on the op nodes one use of `block` adds: each op call counts 1, each
    block call its own bound, times a `repeat`'s written count (1 when the count is an argument).

    The builder compares it with its node budget before inlining, so a block that doubles per
    level is refused at once instead of after minutes of building. Memoised in `memo` by name;
    a block that uses itself counts 0 there (the builder reports the cycle).
    """
    if block.name in memo:
        return memo[block.name]
    calls: list = []
    for stmt in block.body:
        value = getattr(stmt, "value", None)
        if value is not None:
            post_order(value, calls)
    total = 0
    for call in calls:
        func = func_name(call)
        each = 1
        if func in blocks:
            inner = blocks[func]
            each = 0 if inner.name in open_blocks else nodes_at_least(inner, blocks, memo, open_blocks | {block.name})
        count = 1
        if isinstance(call, S.Repeat) and isinstance(call.count, S.Number) and isinstance(call.count.value, int):
            count = max(call.count.value, 1)
        total += count * each
    memo[block.name] = total
    return total
