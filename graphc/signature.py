"""Signatures: the keywords an initialiser, optimizer or schedule takes, and the one checker.

Input: a table name -> `Signature` (each keyword with its default and the
values it accepts) and a call as written: a name, positional values and
keyword values. Output: the given arguments by keyword name, every one
checked, or a `SignatureError` saying what is wrong and which argument.

The compiler checks `init=` and train settings with `check_call` and turns a
`SignatureError` into a diagnostic with a span; the run-time constructors
(`initialise`, `make_optimizer`, `make_schedule`) call the same function, so a
mistake made through the Python API gets the same message.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable, Mapping

from graphc.diagnostics import did_you_mean


class _Required:
    """Marker for a keyword (or an op attribute) that has no default and must be given."""

    def __repr__(self) -> str:
        return "<required>"


REQUIRED = _Required()


@dataclass(frozen=True)
class Accepts:
    """The values a keyword accepts: a test and the words a message uses for it."""

    test: Callable[[object], bool]
    words: str   # completes "must be ...": "a number >= 0"


def _real(value) -> bool:
    """True for a finite int or float (not a bool: `true` is not the number 1)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


ANY_NUMBER = Accepts(_real, "a finite number")
NON_NEGATIVE = Accepts(lambda v: _real(v) and v >= 0, "a number >= 0")
POSITIVE = Accepts(lambda v: _real(v) and v > 0, "a number > 0")
FRACTION = Accepts(lambda v: _real(v) and 0 <= v <= 1, "a number in [0, 1]")
BELOW_ONE = Accepts(lambda v: _real(v) and 0 <= v < 1, "a number in [0, 1)")
WHOLE = Accepts(lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "a whole number >= 1")
FLAG = Accepts(lambda v: isinstance(v, bool), "true or false")


@dataclass(frozen=True)
class Keyword:
    """One keyword: its name, its default (REQUIRED: none) and the values it accepts."""

    name: str
    default: object
    accepts: Accepts


@dataclass(frozen=True)
class Signature:
    """What a named call takes. `rule` checks keywords together (e.g. low <= high) on the
    complete values and returns (message, help) for a violation, else None; `hints` maps a
    keyword people try by habit (torch's `betas`) to the help that says what to write instead."""

    name: str
    keywords: tuple[Keyword, ...]
    rule: Callable[[dict], tuple[str, str] | None] | None = None
    hints: Mapping[str, str] | None = None

    @property
    def defaults(self) -> dict[str, object]:
        """Return keyword name -> default (REQUIRED for keywords that must be given)."""
        return {k.name: k.default for k in self.keywords}

    def keyword(self, name: str) -> Keyword | None:
        """Return the keyword called `name`, or None."""
        return next((k for k in self.keywords if k.name == name), None)

    def complete(self, given: Mapping[str, object]) -> dict[str, object]:
        """Return every keyword's value: the given ones, defaults for the rest (given was checked)."""
        return {**self.defaults, **given}


class SignatureError(Exception):
    """A call that does not fit its signature. `argument`: the keyword name (or positional
    index) at fault, None for the call as a whole; `at_value`: the fault is its value, not
    its name. The compiler points its diagnostic's span there."""

    def __init__(self, message: str, help: str | None = None, argument: str | int | None = None,
                 at_value: bool = False):
        super().__init__(message)
        self.message, self.help, self.argument, self.at_value = message, help, argument, at_value


def check_call(kind: str, table: Mapping[str, Signature], name: str, args=(), kwargs=None) -> dict[str, object]:
    """Return the given arguments of `name(*args, **kwargs)` by keyword name, all checked.

    `kind` names the table in messages ("initialiser", "optimizer", "schedule").
    Raises SignatureError for an unknown name or keyword, too many arguments, one
    given twice, a missing required one, a value the keyword does not accept, or a
    violated rule.
    """
    kwargs = dict(kwargs or {})
    if name not in table:
        raise SignatureError(f"unknown {kind} `{name}`",
                             _joined(did_you_mean(name, table), "choose one of: " + ", ".join(table)))
    signature = table[name]
    order = [k.name for k in signature.keywords]
    listed = f"its arguments: {', '.join(order) or 'none'}"
    if len(args) > len(order):
        raise SignatureError(f"`{name}` takes at most {len(order)} argument{'s' * (len(order) != 1)}, "
                             f"got {len(args)}", listed)
    given = dict(zip(order, args))
    positional = {key: index for index, key in enumerate(given)}
    for key, value in kwargs.items():
        if key not in order:
            hint = (signature.hints or {}).get(key)
            raise SignatureError(f"`{name}` has no argument `{key}`",
                                 hint or _joined(did_you_mean(key, order), listed), key)
        if key in given:
            raise SignatureError(f"`{key}` is given twice", listed, key)
        given[key] = value
    missing = [k.name for k in signature.keywords if k.default is REQUIRED and k.name not in given]
    if missing:
        raise SignatureError(f"{kind} `{name}` needs {', '.join(missing)}",
                             "give " + ", ".join(f"{k}=..." for k in missing))
    for key, value in given.items():
        keyword = signature.keyword(key)
        if not keyword.accepts.test(value):
            example = f"e.g. {key}={_literal(keyword.default)}" if keyword.default not in (REQUIRED, None) else None
            raise SignatureError(f"`{key}` of `{name}` must be {keyword.accepts.words}, got {_literal(value)}",
                                 example, positional.get(key, key), at_value=True)
    if signature.rule is not None:
        broken = signature.rule(signature.complete(given))
        if broken is not None:
            raise SignatureError(*broken)
    return given


def _literal(value) -> str:
    """Return a value as the language writes it: `true`, `0.5`, `[1, 2]`, a bare word in backticks."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return str(value)


def _joined(first: str | None, second: str) -> str:
    return f"{first} {second}" if first else second
