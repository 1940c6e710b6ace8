"""Op attributes: checking and normalising the values a call gives, and printing them back.

Input: an OpDef and the attribute values of one call (from the builder).
Output: every attribute with defaults filled in and values normalised
(`resolve_attrs`), or an `AttrError` naming the attribute; and `literal`,
the one printer that writes a value in the language's syntax (`[3, 3]`,
`true`, `none`) for usage lines, viz labels and generated programs.
"""
from __future__ import annotations

from graphc.ops.registry import REQUIRED, Attr, OpDef


class AttrError(ValueError):
    """A bad attribute value: which attribute and what is wrong."""

    def __init__(self, name: str, message: str, help: str | None = None):
        super().__init__(message)
        self.name = name
        self.message = message
        self.help = help


def literal(value, *, short: bool = False) -> str:
    """Return `value` written in the language's syntax: `true`, `none`, `[3, 3]`, `0.1`, `batchmean`.

    With `short`, a pair of equal integers is written as the one integer (`kernel=5`
    means `[5, 5]` in the language) and floats with at most 6 significant digits.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        if short and len(value) == 2 and value[0] == value[1] and not isinstance(value[0], bool):
            return literal(value[0], short=True)
        return "[" + ", ".join(literal(v, short=short) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}" if short else repr(value)
    return str(value)


def resolve_attrs(op: OpDef, given: dict) -> dict:
    """Return every attribute of `op` with defaults filled in and values normalised.

    `pair` becomes a 2-tuple, `ints` a tuple, `bool` a bool. Raises AttrError
    for an unknown or missing attribute or a value of the wrong kind.
    """
    if given:
        for name in given:
            if op.attr(name) is None:
                raise AttrError(name, f"`{op.name}` has no argument `{name}`")
    resolved = {}
    for a in op.attrs:
        if a.name in given:
            resolved[a.name] = _normalise(op, a, given[a.name])
        elif a.default is REQUIRED:
            raise AttrError(a.name, f"`{op.name}` needs the argument `{a.name}`")
        else:
            resolved[a.name] = a.default if a.default is None else _normalise(op, a, a.default)
    # Attributes that depend on each other (pad=same needs the kernel): the op's own rule.
    return op.resolve(resolved) if op.resolve is not None else resolved


def _bad(op: OpDef, a: Attr, value, expected: str) -> AttrError:
    return AttrError(a.name, f"`{a.name}` of `{op.name}` must be {expected}, got {value!r}")


def _number(op: OpDef, a: Attr, value, v, integer: bool):
    """Return `v` (an item of `value`) as an int or float, checked against the attribute's minimum."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _bad(op, a, value, "an integer" if integer else "a number")
    if integer and not (isinstance(v, int) or float(v).is_integer()):
        raise _bad(op, a, value, "an integer")
    v = int(v) if integer else float(v)
    if a.minimum is not None and v < a.minimum:
        raise AttrError(a.name, f"`{a.name}` of `{op.name}` must be at least {a.minimum:g}, got {v}")
    return v


def _integers(op: OpDef, a: Attr, value, expected: str) -> tuple:
    """Return a list or tuple of ints as a tuple; raise AttrError for anything else in it."""
    if any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        raise _bad(op, a, value, expected)
    return tuple(value)


def _normalise(op: OpDef, a: Attr, value):
    """Return one attribute value checked against its kind and normalised (see resolve_attrs)."""
    kind = a.kind
    if kind == "int":
        return _number(op, a, value, value, True)
    if kind == "float":
        return _number(op, a, value, value, False)
    if kind == "number":
        return value if isinstance(value, int) and not isinstance(value, bool) else _number(op, a, value, value, False)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise _bad(op, a, value, "true or false")
    if kind == "str":
        if not isinstance(value, str):
            raise _bad(op, a, value, "a name")
        if a.choices and value not in a.choices:
            raise AttrError(a.name, f"`{a.name}` of `{op.name}` must be one of "
                            + ", ".join(a.choices) + f"; got `{value}`")
        return value
    if kind == "pair":
        if isinstance(value, str) and value in a.choices:
            return value     # a name the op's `resolve` turns into numbers (pad=same)
        items = list(value) if isinstance(value, (list, tuple)) else [value, value]
        if len(items) != 2 or isinstance(value, str):
            raise _bad(op, a, value, "one integer or a list of two" + "".join(f" or `{c}`" for c in a.choices))
        return tuple(_number(op, a, value, v, True) for v in items)
    if kind == "ints":
        return _integers(op, a, value if isinstance(value, (list, tuple)) else [value], "a list of integers")
    if kind == "axis":
        return _axis(op, a, value)
    raise _bad(op, a, value, kind)


def _axis(op: OpDef, a: Attr, value):
    """Return an axis attribute: None, an int, or a tuple of ints."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return _integers(op, a, value, "an integer or a list of integers")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(op, a, value, "an integer or a list of integers")
    return value
