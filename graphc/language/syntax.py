"""The syntax tree: frozen dataclasses, each with the span it came from.

Input: nothing (parse.py builds these). Output: the node types that build.py
and fmt.py read. No behaviour lives here.
"""
from __future__ import annotations

from dataclasses import dataclass

from graphc.source import SourceFile, Span

# ---- expressions ---------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    """A numeric literal (int or float)."""
    value: int | float
    text: str
    span: Span


@dataclass(frozen=True)
class Name:
    """A reference to a tensor, a block argument, or a bare word such as `he`."""
    id: str
    span: Span


@dataclass(frozen=True)
class String:
    """A string literal, without its quotes."""
    value: str
    span: Span


@dataclass(frozen=True)
class ListExpr:
    """`[a, b, c]` in an expression (attribute lists such as kernel=[3, 5])."""
    items: tuple
    span: Span


@dataclass(frozen=True)
class Keyword:
    """`name=value` inside a call."""
    name: str
    value: object
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Call:
    """`func(args, kw=value)`; in a chain the piped value is the implicit first argument."""
    func: str
    args: tuple
    keywords: tuple[Keyword, ...]
    span: Span
    func_span: Span


@dataclass(frozen=True)
class BinOp:
    """`left op right` for op in + - * / @ **."""
    op: str
    left: object
    right: object
    span: Span
    op_span: Span


@dataclass(frozen=True)
class Negate:
    """Unary minus."""
    operand: object
    span: Span


@dataclass(frozen=True)
class Repeat:
    """`repeat N f(args)` inside a chain: f applied N times, each with fresh parameters."""
    count: object      # Number or Name
    call: Call
    span: Span


@dataclass(frozen=True)
class Chain:
    """`head -> link -> link`: each link receives the value on its left as first argument."""
    head: object
    links: tuple       # Call or Repeat
    span: Span


# ---- statements ----------------------------------------------------------------


@dataclass(frozen=True)
class ShapeExpr:
    """A declared per-sample shape such as `[1, 28, 28]`; dims may name block arguments."""
    dims: tuple
    span: Span


@dataclass(frozen=True)
class InputDecl:
    """`input NAME: [shape]`."""
    name: str
    shape: ShapeExpr
    span: Span
    name_span: Span


@dataclass(frozen=True)
class LabelDecl:
    """`label NAME: class[K]` (classes set) or `label NAME: [shape]` (shape set)."""
    name: str
    shape: ShapeExpr | None
    classes: object | None
    span: Span
    name_span: Span


@dataclass(frozen=True)
class ParamDecl:
    """`param NAME: [shape] init=he` — a learnable tensor with options."""
    name: str
    shape: ShapeExpr
    options: tuple[Keyword, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class OutputDecl:
    """`output NAME = expr`."""
    name: str
    value: object
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Assign:
    """`NAME = expr` (`loss = expr` names the objective)."""
    name: str
    value: object
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Return:
    """`return expr` inside a block."""
    value: object
    span: Span


# ---- top level -----------------------------------------------------------------


@dataclass(frozen=True)
class BlockParam:
    """A block's formal argument, with an optional default."""
    name: str
    default: object | None
    span: Span


@dataclass(frozen=True)
class Model:
    """`model NAME { statements }`."""
    name: str
    body: tuple
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Block:
    """`block NAME(params) { statements; return expr }`."""
    name: str
    params: tuple[BlockParam, ...]
    body: tuple
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Setting:
    """`key = value` inside a train section."""
    key: str
    value: object
    span: Span
    key_span: Span


@dataclass(frozen=True)
class Train:
    """`train { settings }` or `train NAME { settings }`."""
    model: str | None
    settings: tuple[Setting, ...]
    span: Span


@dataclass(frozen=True)
class Search:
    """`search { settings }` or `search NAME { settings }`: the study's settings (graphc/search/settings.py)."""
    model: str | None
    settings: tuple[Setting, ...]
    span: Span


@dataclass(frozen=True)
class Include:
    """`include "path.nn"` (relative to the including file)."""
    path: str
    span: Span


@dataclass(frozen=True)
class Comment:
    """A `#` comment, kept for the formatter."""
    text: str
    span: Span


@dataclass(frozen=True)
class Module:
    """One parsed file: its items in source order and its comments."""
    source: SourceFile
    items: tuple
    comments: tuple[Comment, ...]
