"""Search spaces in the syntax tree: found, checked, and filled in with chosen values.

Input: the parsed modules of a file. Output: the file's `Space`s (each with the
name a study knows it by, its distribution and its span) and, for a choice of
values, the same syntax with every space replaced by its value (`fill`), which
the compiler then checks like any other program. A space is a call:

    loguniform(LOW, HIGH)            a float, log-uniform in [LOW, HIGH] (LOW > 0)
    uniform(LOW, HIGH[, step=S])     a float, uniform in [LOW, HIGH] (on a grid of S)
    int(LOW, HIGH[, step=S])         a whole number in [LOW, HIGH], both ends included
    choice(A, B, ...)                one of the options: numbers, or names and calls

A space may stand wherever a number or a name is expected in a model's body or
in its train section, and a choice's options may hold spaces of their own
(sampled only when that option is chosen). `uniform(low=..., high=...)`, with
keywords, and `uniform(...)` as the whole value of an `init` setting or option, stay
the initialiser of that name. Spaces live in the main file only,
never in a block (pass the value in as an argument) or an included file, so that
`best.nn` (the main file, filled in) says everything a trial ran.
"""
from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from graphc.diagnostics import Diagnostic, Diagnostics, GraphcError, Note
from graphc.language import syntax as S
from graphc.language.parse import parse
from graphc.source import SourceFile

KINDS = ("loguniform", "uniform", "int", "choice")
_KEYWORDS = {"loguniform": (), "uniform": ("step",), "int": ("step",), "choice": ()}


@dataclass(frozen=True)
class Space:
    """One search space: its study name, distribution and syntax (its span is where diagnostics point).

    `low`, `high`, `step` hold a float/int space's bounds; a choice holds its
    `options` (expressions), their `labels` (the names a study records: `he`,
    `sgd`, `64`) and, per option, the spaces inside it (`nested`).
    """
    name: str
    kind: str
    call: S.Call
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    options: tuple = ()
    labels: tuple[str, ...] = ()
    nested: tuple[tuple["Space", ...], ...] = ()
    link: bool = False     # a link of a chain (`x -> choice(relu, tanh)`): an option is an op or block applied

    @property
    def log(self) -> bool:
        """Return whether the space is sampled on a log scale."""
        return self.kind == "loguniform"

    def describe(self) -> str:
        """Return the space as a short text: `loguniform(1e-06, 0.01)`, `choice(xavier, he)`."""
        if self.kind == "choice":
            return f"choice({', '.join(self.labels)})"
        step = f", step={self.step:g}" if self.step is not None else ""
        return f"{self.kind}({self.low:g}, {self.high:g}{step})"


def is_space(expr) -> bool:
    """Return whether an expression is a search-space call (keyword `uniform(low=, high=)` is the initialiser)."""
    if not isinstance(expr, S.Call) or expr.func not in KINDS:
        return False
    return not (expr.func == "uniform" and any(k.name in ("low", "high") for k in expr.keywords))


def find_spaces(modules: list[S.Module], diagnostics: Diagnostics) -> list[Space]:
    """Return the search spaces of the main module (nested ones inside their choices); errors go to `diagnostics`.

    A space in a block, a search section or an included file is an error; so is a
    malformed one (bounds out of order, a log bound <= 0, options of mixed kinds).
    """
    finder = _Finder(diagnostics)
    main, *included = modules
    for item in main.items:
        if isinstance(item, S.Model):
            for stmt in item.body:
                finder.statement(stmt)
        elif isinstance(item, S.Train):
            for setting in item.settings:
                finder.expr(setting.value, setting.key)
        elif isinstance(item, S.Search):
            for setting in item.settings:
                finder.refuse(setting.value, "a search section's settings are fixed values, not spaces")
        elif isinstance(item, S.Block):
            finder.refuse_block(item)
    for module in included:
        for item in module.items:
            if isinstance(item, (S.Model, S.Block)):
                finder.refuse_block(item, "in an included file; write it in the main file")
            elif isinstance(item, (S.Train, S.Search)):
                for setting in item.settings:
                    finder.refuse(setting.value, "in an included file; write it in the main file")
    return finder.found


def all_spaces(spaces) -> list[Space]:
    """Return every space, nested ones after their choice (depth first)."""
    out = []
    for space in spaces:
        out.append(space)
        for group in space.nested:
            out.extend(all_spaces(group))
    return out


def fill(modules: list[S.Module], spaces: list[Space], choose: Callable[[Space], object]) -> list[S.Module]:
    """Return the modules with every space replaced by what `choose(space)` returns.

    `choose` returns a number (float/int spaces), an option's index (a choice),
    or any syntax expression (a value written by the user, `--set units=100`).
    Nested spaces are asked for only inside the chosen option. The replacement
    keeps the space's span, so a later diagnostic points at the space.
    """
    replacements: dict[int, object] = {}

    def visit(group):
        for space in group:
            value = choose(space)
            if space.kind == "choice" and isinstance(value, int) and not isinstance(value, bool):
                option = space.options[value]
                if space.link and isinstance(option, S.Name):   # `-> relu`: a link is a call
                    option = S.Call(option.id, (), (), option.span, option.span)
                replacements[id(space.call)] = option
                visit(space.nested[value])
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                replacements[id(space.call)] = number(value, space.call.span)
            else:
                replacements[id(space.call)] = value
    visit(spaces)
    return [_replace(modules[0], replacements), *modules[1:]]


def number(value: int | float, span) -> S.Number:
    """Return the Number literal of a value, written so that it reads back exactly (repr of a float)."""
    return S.Number(value, repr(value) if isinstance(value, float) else str(value), span)


# ---- finding -----------------------------------------------------------------------


class _Finder:
    """Walks statements and expressions, naming and checking each space it meets."""

    def __init__(self, diagnostics: Diagnostics):
        self.diagnostics = diagnostics
        self.found: list[Space] = []
        self.names: set[str] = set()

    def statement(self, stmt) -> None:
        if isinstance(stmt, (S.Assign, S.OutputDecl)):
            self.expr(stmt.value, stmt.name)
        elif isinstance(stmt, S.ParamDecl):
            for dim in stmt.shape.dims:
                self.expr(dim, f"{stmt.name}.shape")
            for option in stmt.options:
                self.expr(option.value, f"{stmt.name}.{option.name}")
        elif isinstance(stmt, (S.InputDecl, S.LabelDecl)):
            for dim in (stmt.shape.dims if stmt.shape is not None else ()):
                self.expr(dim, f"{stmt.name}.shape")
            if getattr(stmt, "classes", None) is not None:
                self.expr(stmt.classes, f"{stmt.name}.classes")
        elif isinstance(stmt, S.Return):
            self.refuse(stmt.value, "in a block; pass the value in as an argument")

    def expr(self, expr, prefix: str, into: list | None = None) -> None:
        """Record the spaces of `expr` in `into` (default: the top-level list), named from `prefix`."""
        into = self.found if into is None else into
        if is_space(expr) and not (expr.func == "uniform" and prefix.rpartition(".")[2] == "init"):
            # (`init = uniform(-1, 1)` / `init=uniform(-1, 1)` is the initialiser, written positionally.)
            space = self.space(expr, prefix)
            if space is not None:
                into.append(space)
            return
        if isinstance(expr, S.Call):
            for i, arg in enumerate(expr.args):
                self.expr(arg, f"{prefix}.{expr.func}" if len(expr.args) == 1 else f"{prefix}.{expr.func}.{i}",
                          into)
            for kw in expr.keywords:
                self.expr(kw.value, f"{prefix}.{kw.name}", into)
        elif isinstance(expr, S.Chain):
            self.expr(expr.head, prefix, into)
            for link in expr.links:
                if is_space(link):
                    space = self.space(link, prefix)
                    if space is not None:
                        into.append(_as_link(space))
                    continue
                self.expr(link.call if isinstance(link, S.Repeat) else link, prefix, into)
        elif isinstance(expr, S.BinOp):
            self.expr(expr.left, prefix, into)
            self.expr(expr.right, prefix, into)
        elif isinstance(expr, S.Negate):
            self.expr(expr.operand, prefix, into)
        elif isinstance(expr, S.ListExpr):
            for i, item in enumerate(expr.items):
                self.expr(item, f"{prefix}.{i}", into)

    def space(self, call: S.Call, name: str) -> Space | None:
        """Return the checked Space of a space call named `name`, or None after recording its errors."""
        name = self._unique(name)
        for kw in call.keywords:
            if kw.name not in _KEYWORDS[call.func]:
                allowed = ", ".join(f"`{k}`" for k in _KEYWORDS[call.func]) or "none"
                return self._error(f"`{call.func}` takes no keyword `{kw.name}`", kw.name_span,
                                   f"its keywords: {allowed}")
        if call.func == "choice":
            return self._choice(call, name)
        if len(call.args) != 2:
            return self._error(f"`{call.func}` takes two bounds, got {len(call.args)}", call.span,
                               f"write `{call.func}(LOW, HIGH)`")
        low, high = (_constant(a) for a in call.args)
        step_kw = next((k for k in call.keywords if k.name == "step"), None)
        step = _constant(step_kw.value) if step_kw is not None else None
        for value, expr in ((low, call.args[0]), (high, call.args[1]),
                            *(((step, step_kw.value),) if step_kw is not None else ())):
            if value is None:
                return self._error(f"a bound of `{call.func}` must be a number", _span_of(expr),
                                   "write a number such as 1e-3 (names and spaces cannot bound a space)")
            if not _finite(value):   # inf, or an int past float range: no sampler or `{:g}` can take it
                return self._error(f"a bound of `{call.func}` must be a finite number below 1.8e308",
                                   _span_of(expr), "write a smaller number")
        if call.func == "int" and not all(isinstance(v, int) for v in (low, high, step or 1)):
            return self._error("`int` takes whole-number bounds and step", call.span,
                               "write e.g. int(50, 200, step=50); for fractions use uniform")
        if not low < high:
            return self._error(f"`{call.func}` needs LOW < HIGH, got {low:g} and {high:g}", call.span,
                               "swap the bounds" if low > high else "a single value needs no search: write it")
        if call.func == "loguniform" and low <= 0:
            return self._error(f"`loguniform` needs LOW > 0, got {low:g}", _span_of(call.args[0]),
                               "a log scale has no zero: e.g. loguniform(1e-8, 1e-4)")
        if step is not None and step <= 0:
            return self._error(f"`step` must be > 0, got {step:g}", _span_of(step_kw.value))
        if call.func == "int" and step is not None and (high - low) % step:
            return self._error(f"int({low}, {high}, step={step}): {high} is not reached from {low} in steps of {step}",
                               call.span, f"make HIGH {low + (high - low) // step * step} or change the step")
        return Space(name, call.func, call, low, high, step)

    def _choice(self, call: S.Call, name: str) -> Space | None:
        if not call.args:
            return self._error("`choice` needs at least one option", call.span, "write e.g. choice(xavier, he)")
        kinds = ["number" if _constant(a) is not None else "name" if isinstance(a, (S.Name, S.Call, S.String))
                 else "other" for a in call.args]
        for arg, kind in zip(call.args, kinds):
            if kind == "other" or kind != kinds[0]:
                return self._error("the options of a `choice` must all be numbers, or all names or calls",
                                   _span_of(arg), f"the first option is a {kinds[0]}")
        labels = tuple(_label(a) for a in call.args)
        if len(set(labels)) < len(labels):
            counts = Counter(labels)   # (labels.count per option is quadratic: a choice of 10,000 options hung)
            labels = tuple(f"{label}#{i}" if counts[label] > 1 else label for i, label in enumerate(labels))
        nested = []
        for arg, label in zip(call.args, labels):
            group: list[Space] = []
            if is_space(arg):   # `choice(relu, choice(tanh, elu))`: the option is itself a space
                self.expr(arg, f"{name}.{label}", group)
            elif isinstance(arg, S.Call):
                for kw in arg.keywords:
                    self.expr(kw.value, f"{name}.{label}.{kw.name}", group)
                for i, a in enumerate(arg.args):
                    self.expr(a, f"{name}.{label}.{i}", group)
            nested.append(tuple(group))
        return Space(name, "choice", call, options=tuple(call.args), labels=labels, nested=tuple(nested))

    def refuse(self, expr, why: str) -> None:
        """Record an error at every space inside `expr`: spaces may not stand there (`why`)."""
        for call in _space_calls(expr):
            self.diagnostics.error(f"a search space may not stand here: {why}", call.span,
                                   help="spaces go in a model's body or its train section")

    def refuse_block(self, block, why: str = "in a block; pass the value in as an argument") -> None:
        for stmt in block.body:
            for value in _statement_exprs(stmt):
                self.refuse(value, why)
        for param in getattr(block, "params", ()):
            if param.default is not None:
                self.refuse(param.default, why)

    def _unique(self, name: str) -> str:
        base, n = name, 2
        while name in self.names:
            name, n = f"{base}#{n}", n + 1
        self.names.add(name)
        return name

    def _error(self, message: str, span, help: str | None = None) -> None:
        self.diagnostics.error(message, span, help=help)
        return None


def _as_link(space: Space) -> Space:
    """Return a chain link's space marked as a link, with the choices that are its options marked too."""
    nested = tuple(tuple(_as_link(s) if s.call is option else s for s in group)
                   for option, group in zip(space.options, space.nested))
    return dataclasses.replace(space, link=True, nested=nested)


def _finite(value) -> bool:
    """Return whether a number is finite as a float (a whole number past 1.8e308 is not)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _statement_exprs(stmt) -> list:
    if isinstance(stmt, (S.Assign, S.OutputDecl, S.Return)):
        return [stmt.value]
    if isinstance(stmt, S.ParamDecl):
        return [*stmt.shape.dims, *(o.value for o in stmt.options)]
    if isinstance(stmt, (S.InputDecl, S.LabelDecl)):
        return [*(stmt.shape.dims if stmt.shape is not None else ()), *([stmt.classes] if getattr(stmt, "classes", None) else [])]
    return []


def _space_calls(node) -> list[S.Call]:
    """Return every space call inside a syntax node."""
    if is_space(node):
        return [node]
    out = []
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            out.extend(_space_calls(getattr(node, f.name)))
    elif isinstance(node, tuple):
        for item in node:
            out.extend(_space_calls(item))
    return out


def _constant(expr) -> int | float | None:
    """Return the value of a numeric constant expression (literals, unary minus, + - * / **), else None."""
    if isinstance(expr, S.Number):
        return expr.value
    if isinstance(expr, S.Negate):
        v = _constant(expr.operand)
        return None if v is None else -v
    if isinstance(expr, S.BinOp) and expr.op in ("+", "-", "*", "/", "**"):
        a, b = _constant(expr.left), _constant(expr.right)
        if a is None or b is None:
            return None
        try:
            v = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b,
                 "**": lambda: a ** b if abs(b) <= 64 else None}[expr.op]()
        except (ZeroDivisionError, OverflowError):
            return None
        return v if isinstance(v, (int, float)) else None
    return None


def _label(expr) -> str:
    """Return the name a study records for a choice's option: `he`, `sgd`, `64`, `"a.npz"`."""
    if isinstance(expr, S.Name):
        return expr.id
    if isinstance(expr, S.Call):
        return expr.func
    if isinstance(expr, S.String):
        return expr.value
    v = _constant(expr)
    return f"{v:g}" if isinstance(v, float) else str(v)


def _span_of(expr):
    return expr.span


def _replace(node, replacements: dict[int, object]):
    """Return `node` rebuilt with the nodes whose id is in `replacements` swapped (frozen dataclasses, tuples)."""
    if id(node) in replacements and replacements[id(node)] is not node:
        return _replace(replacements[id(node)], replacements)
    if isinstance(node, tuple):
        items = tuple(_replace(item, replacements) for item in node)
        return node if all(a is b for a, b in zip(items, node)) else items
    if dataclasses.is_dataclass(node) and not isinstance(node, type) and not isinstance(node, S.Comment):
        changes = {}
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            if isinstance(value, (tuple, S.Call, S.Chain, S.BinOp, S.Negate, S.ListExpr, S.Keyword, S.Repeat,
                                  S.Model, S.Train, S.Setting, S.Assign, S.OutputDecl, S.ParamDecl, S.ShapeExpr,
                                  S.InputDecl, S.LabelDecl)):
                new = _replace(value, replacements)
                if new is not value:
                    changes[f.name] = new
        return dataclasses.replace(node, **changes) if changes else node
    return node


# ---- values written by the user (`graphc run --set NAME=VALUE`) ------------------------


def fill_written(modules: list[S.Module], spaces: list[Space], written: dict[str, str]) -> list[S.Module]:
    """Return the modules with every space replaced by the value `written[name]` gives (its text).

    A choice's value may name one of its options (`he`: that option, with its own
    spaces to fill) or be any expression. GraphcError lists the spaces left without a
    value (with the commands that fill them) and any value that does not parse.
    """
    missing: list[Space] = []

    def choose(space: Space):
        if space.name not in written:
            missing.append(space)
            return space.call     # left in place; reported below
        text = written[space.name].strip()
        if space.kind == "choice" and text in space.labels:
            return space.labels.index(text)
        return parse_value(space.name, text, space.call.span)
    filled = fill(modules, spaces, choose)
    if missing:
        raise unfilled_error(missing)
    return filled


def parse_value(name: str, text: str, span) -> object:
    """Return the expression `text` spells, with `span` (the space it fills); GraphcError when it does not parse."""
    try:
        module = parse(SourceFile(f"--set {name}", f"train {{ v = {text} }}\n"))
        [value] = [s.value for item in module.items if isinstance(item, S.Train) for s in item.settings]
    except (GraphcError, ValueError):
        raise GraphcError(f"--set {name}: cannot read the value `{text[:60]}`",
                          help="write a number, a name or a call, e.g. --set units=100") from None
    return value


def unfilled_error(spaces: list[Space]) -> GraphcError:
    """Return the error for spaces that have no value: say what they are and how to search or fix them."""
    listed = ", ".join(f"`{s.name}` = {s.describe()}" for s in spaces[:6]) + (" ..." if len(spaces) > 6 else "")
    example = " ".join(f"--set {s.name}={_example(s)}" for s in spaces[:3])
    return GraphcError(
        [Diagnostic("error", f"this model has search spaces without a value: {listed}", spaces[0].call.span,
                    f"search them with `graphc search {spaces[0].call.span.source.path}`, "
                    f"or fix each one: graphc run ... {example}",
                    tuple(Note(f"`{s.name}` is this space", s.call.span) for s in spaces[1:6]))])


def _example(space: Space) -> str:
    if space.kind == "choice":
        return space.labels[0]
    return f"{space.low:g}"
