"""Evaluate: the value of an expression, with the one set of rules for constants.

Input: an expression of the syntax tree and the `Scope` it is read in. Output:
its value (`Const`, `Symbol`, `Tensor` or `POISON`), errors recorded once each
in the caller's Diagnostics with notes naming the block call sites.

Arithmetic on numbers folds to a number here, so `0.1 * 2`, `(k - 1) / 2` or a
block argument work wherever a number is expected: in shapes, attributes,
`repeat`, `init=` options and train settings (training/config.py evaluates a
train section with an `Evaluator`). A value that needs a node (an op call) is
the `Builder`'s business: here `call`, `apply` and `repeat` report that a
constant is expected, and compiler/builder.py overrides them.
"""
from __future__ import annotations

import math
from typing import Callable

from graphc.compiler.scope import (
    OPERATORS,
    POISON,
    RESERVED,
    Const,
    Scope,
    StatementNames,
    Symbol,
    Tensor,
    is_number,
    path_back,
    span_of,
)
from graphc.diagnostics import Diagnostic, Diagnostics, Note, did_you_mean
from graphc.language import syntax as S
from graphc.signature import SignatureError


class Evaluator:
    """Computes constants and reports errors (each once); the Builder adds tensors on top."""

    def __init__(self, diagnostics: Diagnostics):
        self.diagnostics = diagnostics
        self._reported: set = set()

    # ---- diagnostics -----------------------------------------------------------
    def error(self, message, span, scope=None, help=None, notes=()):
        """Record an error once, with notes for the block call sites in `scope`."""
        notes = tuple(notes) + (self._trace_notes(scope) if scope is not None else ())
        key = (message, span.start if span else None, span.source.path if span else None)
        if key in self._reported:
            return
        self._reported.add(key)
        self.diagnostics.add(Diagnostic("error", message, span, help, notes))

    @staticmethod
    def _trace_notes(scope) -> tuple:
        return tuple(Note(f"in block `{b}` used here", s) for b, s in scope.trace)

    # ---- constants and expressions -----------------------------------------------
    def constant(self, expr, scope):
        """Return the compile-time value of expr, or None (with an error) if it is not one."""
        value = self.expr(expr, scope, None)
        if isinstance(value, Const) and value is not POISON:
            return value.value
        if isinstance(value, Tensor):
            self.error("expected a number here, got a tensor", span_of(expr), scope)
        elif isinstance(value, Symbol):
            self.undefined(value, scope)
        return None

    def expr(self, e, scope: Scope, names: StatementNames | None):
        """Return the value of an expression: Tensor, Const, Symbol or POISON."""
        if isinstance(e, S.Number):
            return Const(e.value, e.span)
        if isinstance(e, S.String):
            return Const(e.value, e.span)
        if isinstance(e, S.Name):
            return self.name(e, scope)
        if isinstance(e, S.ListExpr):
            items = [self.expr(i, scope, names) for i in e.items]
            if any(v is POISON for v in items):
                return POISON
            if any(not isinstance(v, Const) for v in items):
                self.error("a list holds numbers; to join tensors use concat(a, b)", e.span, scope)
                return POISON
            return Const([v.value for v in items], e.span)
        if isinstance(e, S.Negate):
            v = self.expr(e.operand, scope, names)
            if isinstance(v, Const) and isinstance(v.value, (int, float)) and not isinstance(v.value, bool):
                return Const(-v.value, e.span)
            return self.apply(e, "neg", [(v, span_of(e.operand))], [], scope, names)
        if isinstance(e, S.BinOp):
            left = self.expr(e.left, scope, names)
            right = self.expr(e.right, scope, names)
            if is_number(left) and is_number(right) and e.op != "@":
                # Arithmetic on constants is a constant, as `-k` already is, so that a block
                # can write `pad=(k - 1) / 2`; only an expression with a tensor becomes gates.
                return self.fold(e, left.value, right.value, scope)
            return self.apply(e, OPERATORS[e.op], [(left, span_of(e.left)), (right, span_of(e.right))], [],
                              scope, names)
        if isinstance(e, S.Call):
            return self.call(e, scope, names, None)
        if isinstance(e, S.Chain):
            value = self.expr(e.head, scope, names)
            head_span = span_of(e.head)
            for link in e.links:
                if isinstance(link, S.Repeat):
                    value = self.repeat(link, value, head_span, scope, names)
                else:
                    value = self.call(link, scope, names, (value, head_span))
                head_span = head_span.to(link.span)
            return value
        raise TypeError(f"unknown syntax node {type(e).__name__}")

    def fold(self, e: S.BinOp, a, b, scope: Scope):
        """Return the Const value of `a <op> b` for two numbers, or POISON after an error."""
        whole = isinstance(a, int) and isinstance(b, int)
        try:
            if e.op == "**" and whole and b >= 0 and (abs(a) < 2 or b * math.log2(abs(a)) <= 256):
                value = a ** b
            elif e.op == "**":
                value = float(a) ** float(b)    # floats: `10 ** 10 ** 10` must not build a huge int
                if isinstance(value, complex):
                    raise ValueError("a negative number to a fractional power")
            elif e.op == "/":
                # Whole numbers that divide evenly stay whole, so `[k / 2]` is a valid dimension.
                value = a // b if whole and b != 0 and a % b == 0 else a / b
            else:
                value = {"+": a + b, "-": a - b, "*": a * b}[e.op]
        except ZeroDivisionError:
            self.error("division by zero", e.span, scope)
            return POISON
        except OverflowError:
            self.error("cannot compute this constant: the result is too large", e.span, scope)
            return POISON
        except ValueError as error:
            self.error(f"cannot compute this constant: {error}", e.span, scope)
            return POISON
        return Const(value, e.span)

    def name(self, e: S.Name, scope: Scope):
        """Return what a name stands for here: its value, a reserved constant, or a bare Symbol."""
        if e.id in scope.env:
            return scope.env[e.id]
        if e.id in scope.defined:
            self.forward_reference(e, scope)
            return POISON
        if e.id in RESERVED:
            return Const(RESERVED[e.id], e.span)
        return Symbol(e.id, e.span)

    def forward_reference(self, e: S.Name, scope: Scope) -> None:
        """Report a name used above its definition: a cycle if it leads back, else use-before-definition."""
        order = sorted(scope.defined, key=lambda n: scope.defined[n][0])
        here = next((n for n in order if scope.defined[n][0] == scope.current), None)
        path = path_back(e.id, here, scope.refs) if here is not None else None
        if path is not None:
            self.error("cycle: " + " -> ".join([here, *path]), e.span, scope,
                       help="a value cannot depend on itself; the graph must be acyclic")
        else:
            line = scope.defined[e.id][1].line
            self.error(f"`{e.id}` is used before its definition on line {line}", e.span, scope,
                       help=f"move the definition of `{e.id}` above this line")

    def undefined(self, symbol: Symbol, scope: Scope) -> None:
        """Report a bare word used where a value is needed, suggesting a close name in scope."""
        tensors = [n for n, v in scope.env.items() if isinstance(v, (Tensor, Const))]
        self.error(f"undefined name `{symbol.name}`", symbol.span, scope,
                   help=did_you_mean(symbol.name, tensors) or "define it above with `=`, "
                   "`input`, `label` or `param`")


    def named_call(self, expr, scope: Scope, kind: str,
                   check: Callable[..., dict]) -> tuple[str, dict] | None:
        """Return (name, given keywords) of a named call such as `he` or `normal(std=0.1 * 2)`.

        Arguments are constants evaluated like any other (block arguments and arithmetic
        included); `check(name, args, kwargs)` is the table's signature checker
        (ops/init.check_initialiser, training/optim.check_optimizer, ...). Returns None after
        recording an error at the argument at fault.
        """
        article = "an" if kind[0] in "aeiou" else "a"
        if isinstance(expr, S.Call):
            name = expr.func
            args = [self._argument(a, scope, name) for a in expr.args]
            kwargs = {k.name: self._argument(k.value, scope, name) for k in expr.keywords}
            if any(v is POISON for v in [*args, *kwargs.values()]):
                return None
        else:
            value = self.expr(expr, scope, None)
            if value is POISON:
                return None
            if isinstance(value, Symbol) or (isinstance(value, Const) and isinstance(value.value, str)):
                name, args, kwargs = getattr(value, "name", None) or value.value, [], {}
            else:
                got = "a tensor" if isinstance(value, Tensor) else repr(value.value)
                self.error(f"expected {article} {kind} name, got {got}", span_of(expr), scope,
                           help=f"write {article} {kind} such as `name` or `name(keyword=value)`")
                return None
        try:
            return name, check(name, args, kwargs)
        except SignatureError as error:
            self.error(error.message, self._argument_span(expr, error), scope, help=error.help)
            return None

    def _argument(self, e, scope: Scope, func: str):
        """Return the plain value of one argument of a named call, or POISON after an error."""
        value = self.expr(e, scope, None)
        if isinstance(value, Symbol):
            constants = [n for n, v in scope.env.items() if isinstance(v, Const)]
            self.error(f"undefined name `{value.name}`", value.span, scope,
                       help=did_you_mean(value.name, constants)
                       or f"the arguments of `{func}` are numbers, `true` or `false`")
            return POISON
        if isinstance(value, Tensor):
            self.error("expected a number here, got a tensor", span_of(e), scope)
            return POISON
        return value if value is POISON else value.value

    @staticmethod
    def _argument_span(expr, error: SignatureError):
        """Return where a signature error points: the keyword or argument at fault, else the call."""
        if isinstance(expr, S.Call):
            if isinstance(error.argument, int) and error.argument < len(expr.args):
                return span_of(expr.args[error.argument])
            for k in expr.keywords:
                if k.name == error.argument:
                    return span_of(k.value) if error.at_value else k.name_span
        return span_of(expr)

    # ---- values that need nodes: the Builder's (see compiler/builder.py) -----------
    def call(self, call: S.Call, scope: Scope, names, piped, rep=None):
        """Return POISON after reporting that a call cannot give a constant."""
        self.error(f"`{call.func}` cannot be used here: a constant is expected", call.span, scope)
        return POISON

    def apply(self, syntax, op_name, args, keywords, scope: Scope, names, rep=None, op=None):
        """Return POISON after reporting that an operation on a non-constant cannot give a constant."""
        for value, _ in args:
            if isinstance(value, Symbol):
                self.undefined(value, scope)
                return POISON
        if all(value is not POISON for value, _ in args):
            self.error(f"`{op_name}` cannot be used here: a constant is expected", syntax.span, scope)
        return POISON

    def repeat(self, link: S.Repeat, piped, piped_span, scope: Scope, names):
        """Return POISON after reporting that `repeat` cannot give a constant."""
        self.error("`repeat` cannot be used here: a constant is expected", link.span, scope)
        return POISON
