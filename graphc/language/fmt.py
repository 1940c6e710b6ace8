"""The formatter: `.nn` text -> the same program in graphc's one canonical layout.

Input: the text of one `.nn` file (and its path, for diagnostics). Output: the
formatted text. The text is parsed (a syntax error raises GraphcError) and the
program is printed again from the syntax tree and `Module.comments`; nothing
is rewritten in place. Before returning, the result is parsed again and
checked to hold the same tree and the same comments, so a formatter bug can
never silently change or lose code (it raises RuntimeError instead).

The canonical layout
--------------------
Items
  * `include "x.nn"` lines come first, in the order written, one per line
    with no blank line between them; every other item keeps its order.
  * Top-level items are separated by exactly one blank line.
  * Comments before the first item (a file header) stay at the top of the
    file, above the includes; comments after the last item stay at the end.
    Own-line comments elsewhere belong to the item that follows them (and
    move with it when it is an include).
  * An empty file (no items, no comments) formats to the empty string;
    otherwise the output ends with exactly one newline.

Bodies (`model`, `block`, `train`)
  * The opening `{` ends the header line; each statement or setting is on
    its own line, indented two spaces; `}` is on its own line. `;`
    separators become newlines; one-line train sections are expanded to one
    setting per line.
  * An empty body prints as `model m {}` / `train {}` / `train m {}`.
  * Blank lines: a run of one or more blank lines between two statements
    (or comments) becomes exactly one; blank lines right after `{` and right
    before `}` are dropped.
  * The `=` of the settings of one train section are aligned in a column
    (`data      = mnist`); nothing else is aligned (param options follow
    the shape after one space).

Declarations and expressions
  * `input x: [2]`, `label y: class[2]`, `label y: [3]`,
    `param W: [784, 100] init=he scale=0.1`, `output p = softmax(logits)`,
    `x = expr`, `return expr`, `block b(x, k=5, pad=0) {`.
  * One space around `=` in statements and settings; none around the `=` of
    options, keyword arguments and block-parameter defaults.
  * Spaces around `+ - * / @ **` and `->`; calls as `f(a, b, kw=v)`
    (positional arguments first, then keywords: the tree keeps them apart);
    lists and shapes as `[1, 2]`; no trailing commas; strings with double
    quotes; numbers exactly as written (`0x1F`, `1_000`, `1e-3`, `.5`).
  * A chain link without arguments prints without parentheses (`x -> relu`,
    never `x -> relu()`); `repeat 3 f(64)`.
  * Parentheses are printed only where precedence requires them. From
    loosest to tightest: `->`, `+ -`, `* / @`, unary `-`, `**`. `+ - * / @`
    associate to the left (`a - (b - c)` keeps its parentheses, `(a - b) - c`
    prints `a - b - c`); `**` associates to the right and binds tighter than
    a unary minus on its left (`-x ** 2` is `-(x ** 2)`; `(-x) ** 2` keeps
    its parentheses). A chain used as an operand or as the head of another
    chain is parenthesized. A double negation prints `-(-x)`, not `--x`.
  * Lines are never wrapped: a call written over several lines is joined.

Comments (their text is kept exactly, minus trailing whitespace)
  * A comment on its own line stays on its own line, before the statement
    or item that followed it, at that statement's indentation; a comment
    at the end of a block stays inside the block, after the last statement.
  * A trailing comment (code before it on the same line) stays trailing,
    two spaces after the code; trailing comments are not aligned. A comment
    after `}` trails the `}`; one after `{` trails the header line.
  * Comments inside a statement (a call written over several lines) or
    inside a block's parameter list: the first becomes the trailing comment
    of the statement (or header) line, the others follow on their own lines
    directly after it, in source order.
"""
from __future__ import annotations

import bisect
import dataclasses

from graphc.language import syntax as S
from graphc.language.parse import parse
from graphc.source import SourceFile

__all__ = ["format_source", "format_module"]

INDENT = "  "


def format_source(text: str, path: str = "<string>") -> str:
    """Return `text` in the canonical layout; raise GraphcError if it does not parse."""
    module = parse(SourceFile(path, text))
    formatted = format_module(module)
    _verify(module, formatted, path)
    return formatted


def format_module(module: S.Module) -> str:
    """Return the canonical text of an already parsed module."""
    lines = _Printer(module).module()
    return "\n".join(lines) + "\n" if lines else ""


# ---- expressions -------------------------------------------------------------------

_CHAIN, _SUM, _PRODUCT, _UNARY, _POWER, _ATOM = range(1, 7)
_BINARY_PRECEDENCE = {"+": _SUM, "-": _SUM, "*": _PRODUCT, "/": _PRODUCT, "@": _PRODUCT, "**": _POWER}


def _precedence(node) -> int:
    if isinstance(node, S.Chain):
        return _CHAIN
    if isinstance(node, S.BinOp):
        return _BINARY_PRECEDENCE[node.op]
    if isinstance(node, S.Negate):
        return _UNARY
    return _ATOM


def expr(node, minimum: int = _CHAIN) -> str:
    """Return an expression's text, parenthesized if it binds looser than `minimum`."""
    text = _expr(node)
    return f"({text})" if _precedence(node) < minimum else text


def _expr(node) -> str:
    if isinstance(node, S.Number):
        return node.text
    if isinstance(node, S.Name):
        return node.id
    if isinstance(node, S.String):
        return f'"{node.value}"'
    if isinstance(node, S.ListExpr):
        return "[" + ", ".join(expr(item) for item in node.items) + "]"
    if isinstance(node, S.Call):
        return _call(node)
    if isinstance(node, S.BinOp):
        if node.op == "**":      # power: atom ** unary (right-associative)
            left, right = expr(node.left, _ATOM), expr(node.right, _UNARY)
        else:                    # left-associative: the right operand must bind tighter
            level = _BINARY_PRECEDENCE[node.op]
            left, right = expr(node.left, level), expr(node.right, level + 1)
        return f"{left} {node.op} {right}"
    if isinstance(node, S.Negate):
        operand = expr(node.operand, _UNARY)
        return f"-({operand})" if operand.startswith("-") else f"-{operand}"
    if isinstance(node, S.Chain):
        return " -> ".join([expr(node.head, _SUM), *(_link(link) for link in node.links)])
    raise TypeError(f"fmt: unknown expression node {type(node).__name__}")


def _call(call: S.Call) -> str:
    args = [expr(a) for a in call.args] + [_keyword(k) for k in call.keywords]
    return f"{call.func}({', '.join(args)})"


def _keyword(keyword: S.Keyword) -> str:
    return f"{keyword.name}={expr(keyword.value)}"


def _link(link) -> str:
    if isinstance(link, S.Repeat):
        return f"repeat {expr(link.count)} {_link(link.call)}"
    if not link.args and not link.keywords:
        return link.func
    return _call(link)


def _shape(shape: S.ShapeExpr) -> str:
    return "[" + ", ".join(expr(d) for d in shape.dims) + "]"


def statement(node) -> str:
    """Return one statement (model or block body) on one line, without comments."""
    if isinstance(node, S.InputDecl):
        return f"input {node.name}: {_shape(node.shape)}"
    if isinstance(node, S.LabelDecl):
        kind = _shape(node.shape) if node.shape is not None else f"class[{expr(node.classes)}]"
        return f"label {node.name}: {kind}"
    if isinstance(node, S.ParamDecl):
        return " ".join([f"param {node.name}: {_shape(node.shape)}", *(_keyword(o) for o in node.options)])
    if isinstance(node, S.OutputDecl):
        return f"output {node.name} = {expr(node.value)}"
    if isinstance(node, S.Assign):
        return f"{node.name} = {expr(node.value)}"
    if isinstance(node, S.Return):
        return f"return {expr(node.value)}"
    raise TypeError(f"fmt: unknown statement node {type(node).__name__}")


# ---- layout and comments -------------------------------------------------------------

class _Printer:
    """Places every comment relative to the items and statements, then prints lines."""

    def __init__(self, module: S.Module):
        self.source = module.source
        self.text = module.source.text
        self.module_node = module
        self.comments = sorted(module.comments, key=lambda c: c.span.start)
        self.comment_ends = {c.span.start: c.span.end for c in self.comments}

    # -- positions

    def _line(self, offset: int) -> int:
        return self.source.line_col(offset)[0]

    def _own_line(self, comment: S.Comment) -> bool:
        """True when only blanks (or `;`) precede the comment on its line."""
        start = self.text.rfind("\n", 0, comment.span.start) + 1
        return self.text[start:comment.span.start].strip(" \t\f\r\v;") == ""

    def _blank_between(self, end: int, start: int) -> bool:
        return self.text.count("\n", end, start) >= 2

    def _open_brace(self, item) -> int:
        """Offset of the `{` that opens an item's body (skipping comments in a block's header)."""
        if isinstance(item, S.Block):
            i = max([item.name_span.end, *(p.span.end for p in item.params)])
        elif isinstance(item, S.Model):
            i = item.name_span.end
        else:
            i = item.span.start
        while i < item.span.end:
            if i in self.comment_ends:
                i = self.comment_ends[i]
                continue
            if self.text[i] == "{":
                return i
            i += 1
        raise AssertionError("fmt: no `{` in an item's span")  # the grammar guarantees one

    def _place(self, nodes, starts, comment: S.Comment):
        """Return (node containing the comment, node ending on its line before it); either may be None.

        `nodes` do not overlap and are sorted by start; `starts` are their starts.
        """
        index = bisect.bisect_right(starts, comment.span.start) - 1
        if index < 0:
            return None, None
        node = nodes[index]
        if comment.span.start < node.span.end:
            return node, None
        if self._line(node.span.end) == self._line(comment.span.start):
            return None, node
        return None, None

    # -- the file

    def module(self) -> list[str]:
        """Return the file's lines: header comments, includes first, then items, each with its comments."""
        items = list(self.module_node.items)
        inside, trailing, loose = self._assign_comments(items)
        entities = sorted([*loose, *items], key=lambda n: n.span.start)
        blank = self._blank_before(entities, trailing)
        header, ordered, tail = _group(entities)

        lines: list[str] = []
        previous = None
        for c in header:
            if previous is not None and blank[id(c)]:
                lines.append("")
            lines.append(_comment(c))
            previous = c
        # The header's blank line is the one before the first item in the source (which may not print first).
        first_item = next((e for e in entities if not isinstance(e, S.Comment)), None)
        after_header = blank[id(first_item)] if header and first_item is not None else False
        sequence = [(e, item) for leading, item in ordered for e in (*leading, item)] + [(c, None) for c in tail]
        for n, (e, target) in enumerate(sequence):
            if previous is None:
                separate = False
            elif n == 0:
                separate = after_header
            elif isinstance(previous, S.Comment) or (isinstance(previous, S.Include) and isinstance(target, S.Include)):
                separate = blank[id(e)]
            else:
                separate = True
            if separate:
                lines.append("")
            if isinstance(e, S.Comment):
                lines.append(_comment(e))
            else:
                item_lines = self.item(e, inside[id(e)])
                for c in trailing[id(e)]:  # at most one: a comment runs to the end of its line
                    item_lines[-1] += "  " + _comment(c)
                lines.extend(item_lines)
            previous = e
        return lines

    def _assign_comments(self, items):
        """Return each comment's place: inside an item, trailing an item's last line, or loose (by id of item)."""
        inside = {id(i): [] for i in items}
        trailing = {id(i): [] for i in items}
        loose = []
        starts = [i.span.start for i in items]
        for c in self.comments:
            item, target = self._place(items, starts, c)
            if item is not None:
                inside[id(item)].append(c)
            elif target is not None and not self._own_line(c):
                trailing[id(target)].append(c)
            else:
                loose.append(c)
        return inside, trailing, loose

    def _blank_before(self, entities, trailing) -> dict[int, bool]:
        """Return, by id, whether a blank line precedes each entity (comment or item) in the source."""
        blank = {}
        previous_end = None
        for e in entities:
            blank[id(e)] = previous_end is not None and self._blank_between(previous_end, e.span.start)
            previous_end = max([e.span.end, *(c.span.end for c in trailing.get(id(e), ()))])
        return blank

    # -- items

    def item(self, item, comments: list[S.Comment]) -> list[str]:
        if isinstance(item, S.Include):
            return [f'include "{item.path}"'] + [_comment(c) for c in comments]  # (none fit inside)
        if isinstance(item, S.Model):
            return self.body(item, f"model {item.name}", item.body, statement, comments)
        if isinstance(item, S.Block):
            params = ", ".join(p.name if p.default is None else f"{p.name}={expr(p.default)}"
                               for p in item.params)
            return self.body(item, f"block {item.name}({params})", item.body, statement, comments)
        if isinstance(item, (S.Train, S.Search)):
            width = max((len(s.key) for s in item.settings), default=0)

            def setting(s: S.Setting) -> str:
                return f"{s.key.ljust(width)} = {expr(s.value)}"
            word = "train" if isinstance(item, S.Train) else "search"
            header = word if item.model is None else f"{word} {item.model}"
            return self.body(item, header, item.settings, setting, comments)
        raise TypeError(f"fmt: unknown item {type(item).__name__}")

    def body(self, item, header: str, children, show, comments: list[S.Comment]) -> list[str]:
        """Lines of `header { children }` with the item's comments in their places."""
        brace = self._open_brace(item)
        brace_line = self._line(brace)
        children = list(children)
        in_header: list[S.Comment] = []
        attached = {id(ch): [] for ch in children}
        loose: list[S.Comment] = []
        starts = [ch.span.start for ch in children]
        for c in comments:
            if c.span.start < brace:
                in_header.append(c)
                continue
            child, target = self._place(children, starts, c)
            if child is not None:
                attached[id(child)].append(c)
                continue
            if not self._own_line(c):
                if target is not None:
                    attached[id(target)].append(c)
                    continue
                if self._line(c.span.start) == brace_line:
                    in_header.append(c)
                    continue
            loose.append(c)

        entities = sorted([*loose, *children], key=lambda n: n.span.start)
        head = f"{header} {{"
        if in_header:
            head += "  " + _comment(in_header[0])
        out = [INDENT + _comment(c) for c in in_header[1:]]
        previous_end = None
        for e in entities:
            if previous_end is not None and out and self._blank_between(previous_end, e.span.start):
                out.append("")
            if isinstance(e, S.Comment):
                out.append(INDENT + _comment(e))
                previous_end = e.span.end
                continue
            notes = attached[id(e)]
            line = INDENT + show(e)
            if notes:
                line += "  " + _comment(notes[0])
            out.append(line)
            out.extend(INDENT + _comment(c) for c in notes[1:])
            previous_end = max([e.span.end, *(c.span.end for c in notes)])
        if not out and not in_header:
            return [f"{header} {{}}"]
        return [head, *out, "}"]


def _group(entities):
    """Return (header comments, [(leading comments, item)] with includes first, end-of-file comments)."""
    header, groups, pending = [], [], []
    for e in entities:
        if isinstance(e, S.Comment):
            pending.append(e)
        elif not groups and not header and pending:
            header, pending = pending, []
            groups.append(([], e))
        else:
            groups.append((pending, e))
            pending = []
    tail = pending
    if not groups:
        header, tail = tail, []
    ordered = ([g for g in groups if isinstance(g[1], S.Include)]
               + [g for g in groups if not isinstance(g[1], S.Include)])
    return header, ordered, tail


def _comment(comment: S.Comment) -> str:
    return comment.text.rstrip()


# ---- self-check ------------------------------------------------------------------------

def _syntax_key(node):
    """A comparable form of a syntax tree: spans and sources dropped, includes first.

    Two modules with equal keys are the same program as far as the formatter
    may change it (layout, parentheses, include order).
    """
    if isinstance(node, S.Module):
        includes = [_syntax_key(i) for i in node.items if isinstance(i, S.Include)]
        others = [_syntax_key(i) for i in node.items if not isinstance(i, S.Include)]
        return ("Module", tuple(includes), tuple(others))
    if dataclasses.is_dataclass(node):
        return (type(node).__name__, *(
            (f.name, _syntax_key(getattr(node, f.name))) for f in dataclasses.fields(node)
            if f.name != "span" and not f.name.endswith("_span")))
    if isinstance(node, (tuple, list)):
        return tuple(_syntax_key(n) for n in node)
    return node


def _verify(module: S.Module, formatted: str, path: str) -> None:
    """Raise RuntimeError if `formatted` is not the same program with the same comments."""
    try:
        again = parse(SourceFile(path, formatted))
    except Exception as error:  # noqa: BLE001 - any failure here is a formatter bug
        raise RuntimeError(f"graphc fmt bug: the formatted {path} does not parse:\n{error}") from error
    if _syntax_key(again) != _syntax_key(module):
        raise RuntimeError(f"graphc fmt bug: formatting {path} changed its syntax tree")
    if sorted(_comment(c) for c in again.comments) != sorted(_comment(c) for c in module.comments):
        raise RuntimeError(f"graphc fmt bug: formatting {path} lost or changed a comment")
