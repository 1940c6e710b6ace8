"""Tokens -> syntax dataclasses, built while the LALR parser reduces each rule.

Input: the children lark hands an inline transformer for each rule (syntax
nodes, every Token, None for an absent `[...]`). Output: the frozen
`syntax` dataclasses with their spans. lark gives an inline transformer no
positions, so every token is kept (`keep_all_tokens`) and each node's span is
computed from its first and last token, exactly as `propagate_positions`
would (tests/test_parse_spans.py holds the two to parity). Built inline rather
than as a second pass over a lark tree because that pass costs as much as the
parse itself (review 4.8: 1.06 s against 1.87 s on a 10,000-node model).
"""
from __future__ import annotations

from lark import Token

from graphc.diagnostics import GraphcError
from graphc.language import syntax as S
from graphc.source import SourceFile, Span

# The builder and the formatter recurse once (a few frames) per level of the
# tree; past this depth Python's recursion limit would turn a long `a + b + ...`
# or `-(-(-x))` into a crash, so it is a diagnostic instead. A level is a node of
# lark's parse tree (start = 1, an item = 2, a statement = 3; parentheses add none).
MAX_DEPTH = 200


# A number literal longer than this is a diagnostic: Python refuses to convert an integer of
# more than 4,300 digits (a ValueError), and a megabyte literal would be echoed in messages.
MAX_NUMBER_CHARS = 100


def _number(text: str) -> int | float:
    lowered = text.lower()
    if lowered.startswith(("0x", "0b", "0o")):
        return int(text, 0)
    if any(c in lowered for c in ".e"):
        return float(text)
    return int(text)


class _ClassType:
    """`class[K]` on its way to its label_decl: the count, and where the `]` ends."""

    __slots__ = ("count", "end")

    def __init__(self, count, end: int):
        self.count, self.end = count, end


class ToSyntax:
    """Builds the syntax dataclasses as the LALR parser reduces each rule (lark's inline transformer).

    Each method receives its rule's children: syntax nodes, lark Tokens (every
    keyword, punctuation mark and newline is kept) and None for an absent `[...]`.
    A node's span runs from the start of its rule's first token to the end of
    its last, as lark's `propagate_positions` computes it. Parentheses make no
    node, but they belong to the enclosing rule's extent: `(a) + b` starts at
    `(`, while `a` keeps its own span; `_outer` remembers, for each
    parenthesised node, where its outermost parentheses start and end.

    Not re-entrant: `start_file` sets the file before each parse.
    """

    def __init__(self) -> None:
        self.source: SourceFile | None = None
        self._outer: dict[int, tuple[object, int, int]] = {}
        self._deep = None

    def start_file(self, source: SourceFile) -> None:
        """Prepare for a parse of `source` (or of a blanked copy of it, after a syntax error)."""
        self.source = source
        self._outer = {}
        self._deep = None

    def end_file(self):
        """Return the last statement nested more than MAX_DEPTH levels deep (or None); forget the file."""
        deep = self._deep
        self.source, self._outer, self._deep = None, {}, None
        return deep

    # ---- positions ---------------------------------------------------------------
    def _start(self, node) -> int:
        """Where an expression's extent starts, its parentheses included."""
        outer = self._outer.get(id(node))
        return node.span.start if outer is None else outer[1]

    def _end(self, node) -> int:
        outer = self._outer.get(id(node))
        return node.span.end if outer is None else outer[2]

    def _tok(self, tok: Token) -> Span:
        return Span(self.source, tok.start_pos, tok.end_pos)

    def _number_node(self, tok: Token) -> S.Number:
        """Return the Number a literal token spells; GraphcError (at the literal) past MAX_NUMBER_CHARS."""
        if len(tok.value) > MAX_NUMBER_CHARS:
            raise GraphcError(f"a number literal of {len(tok.value):,} characters is too long "
                              f"(the limit is {MAX_NUMBER_CHARS})", span=self._tok(tok),
                              help="write large or precise values with an exponent, e.g. 1e30")
        return S.Number(_number(tok.value), tok.value, self._tok(tok))

    def _statement(self, stmt):
        """Note `stmt` if it holds a subtree deeper than MAX_DEPTH levels; return it."""
        # Every level of the tree holds at least one token of its own, so a statement
        # needs at least MAX_DEPTH - 2 characters before it can be too deep.
        if stmt.span.end - stmt.span.start >= MAX_DEPTH - 2 and height(stmt) + 2 > MAX_DEPTH:
            self._deep = stmt
        return stmt

    # ---- items -------------------------------------------------------------------
    def start(self, children):
        return [c for c in children if not isinstance(c, Token)]

    def include(self, children):
        keyword, path = children
        return S.Include(path.value[1:-1], Span(self.source, keyword.start_pos, path.end_pos))

    def model(self, children):
        name = children[1]
        body = tuple(c for c in children[3:-1] if not isinstance(c, Token))
        return S.Model(name.value, body, Span(self.source, children[0].start_pos, children[-1].end_pos),
                       self._tok(name))

    def block(self, children):
        name = children[1]
        params, body = [], []
        for c in children[3:-1]:
            if c is None or isinstance(c, Token):
                continue
            (params if isinstance(c, S.BlockParam) else body).append(c)
        return S.Block(name.value, tuple(params), tuple(body),
                       Span(self.source, children[0].start_pos, children[-1].end_pos), self._tok(name))

    def block_param(self, children):
        name, _, default = children
        end = name.end_pos if default is None else self._end(default)
        return self._statement(S.BlockParam(name.value, default, Span(self.source, name.start_pos, end)))

    def train(self, children):
        model = children[1].value if children[1].type == "NAME" else None
        settings = tuple(c for c in children if isinstance(c, S.Setting))
        return S.Train(model, settings, Span(self.source, children[0].start_pos, children[-1].end_pos))

    def search(self, children):
        model = children[1].value if children[1].type == "NAME" else None
        settings = tuple(c for c in children if isinstance(c, S.Setting))
        return S.Search(model, settings, Span(self.source, children[0].start_pos, children[-1].end_pos))

    def setting(self, children):
        key, _, value = children
        return self._statement(S.Setting(key.value, value, Span(self.source, key.start_pos, self._end(value)),
                                         self._tok(key)))

    # ---- statements ----------------------------------------------------------------
    def input_decl(self, children):
        keyword, name, _, shape = children
        return self._statement(S.InputDecl(name.value, shape, Span(self.source, keyword.start_pos, shape.span.end),
                                           self._tok(name)))

    def label_decl(self, children):
        keyword, name, _, kind = children
        if isinstance(kind, S.ShapeExpr):
            stmt = S.LabelDecl(name.value, kind, None, Span(self.source, keyword.start_pos, kind.span.end),
                               self._tok(name))
        else:
            stmt = S.LabelDecl(name.value, None, kind.count, Span(self.source, keyword.start_pos, kind.end),
                               self._tok(name))
        return self._statement(stmt)

    def class_type(self, children):
        return _ClassType(children[2], children[3].end_pos)

    def param_decl(self, children):
        keyword, name, _, shape, *options = children
        end = options[-1].span.end if options else shape.span.end
        return self._statement(S.ParamDecl(name.value, shape, tuple(options),
                                           Span(self.source, keyword.start_pos, end), self._tok(name)))

    def option(self, children):
        name, _, value = children
        return S.Keyword(name.value, value, Span(self.source, name.start_pos, self._end(value)), self._tok(name))

    def output_decl(self, children):
        keyword, name, _, value = children
        return self._statement(S.OutputDecl(name.value, value, Span(self.source, keyword.start_pos, self._end(value)),
                                            self._tok(name)))

    def assign(self, children):
        name, _, value = children
        return self._statement(S.Assign(name.value, value, Span(self.source, name.start_pos, self._end(value)),
                                        self._tok(name)))

    def return_stmt(self, children):
        keyword, value = children
        return self._statement(S.Return(value, Span(self.source, keyword.start_pos, self._end(value))))

    def shape(self, children):
        dims = tuple(c for c in children[1:-1] if c is not None and not isinstance(c, Token))
        return S.ShapeExpr(dims, Span(self.source, children[0].start_pos, children[-1].end_pos))

    # ---- expressions ---------------------------------------------------------------
    def chain(self, children):
        head = children[0]
        links = tuple(children[2::2])     # head, `->`, link, `->`, link, ...
        return S.Chain(head, links, Span(self.source, self._start(head), links[-1].span.end))

    def _call(self, name: Token, args, start: int, end: int) -> S.Call:
        positional, keywords = [], []
        for a in args:
            if a is None or isinstance(a, Token):
                continue
            (keywords if isinstance(a, S.Keyword) else positional).append(a)
        return S.Call(name.value, tuple(positional), tuple(keywords), Span(self.source, start, end), self._tok(name))

    def link(self, children):
        name = children[0]
        return self._call(name, children[2:-1], name.start_pos, children[-1].end_pos)

    def repeat_link(self, children):
        keyword, count, name = children[:3]
        end = children[-1].end_pos
        return S.Repeat(count, self._call(name, children[4:-1], name.start_pos, end),
                        Span(self.source, keyword.start_pos, end))

    def repeat_count(self, children):
        tok = children[0]
        if tok.type == "NAME":
            return S.Name(tok.value, self._tok(tok))
        return self._number_node(tok)

    def call(self, children):
        name = children[0]
        return self._call(name, children[2:-1], name.start_pos, children[-1].end_pos)

    def keyword(self, children):
        name, _, value = children
        return S.Keyword(name.value, value, Span(self.source, name.start_pos, self._end(value)), self._tok(name))

    def binary(self, children):
        left, op, right = children
        return S.BinOp(op.value, left, right, Span(self.source, self._start(left), self._end(right)), self._tok(op))

    def negate(self, children):
        minus, operand = children
        return S.Negate(operand, Span(self.source, minus.start_pos, self._end(operand)))

    def atom(self, children):
        # `( expr )`, the one `atom` that is not renamed: the parentheses make no node.
        left, inner, right = children
        self._outer[id(inner)] = (inner, left.start_pos, right.end_pos)
        return inner

    def number(self, children):
        tok = children[0]
        return self._number_node(tok)

    def name(self, children):
        tok = children[0]
        return S.Name(tok.value, self._tok(tok))

    def string(self, children):
        tok = children[0]
        return S.String(tok.value[1:-1], self._tok(tok))

    def list(self, children):
        items = tuple(c for c in children[1:-1] if c is not None and not isinstance(c, Token))
        return S.ListExpr(items, Span(self.source, children[0].start_pos, children[-1].end_pos))


def height(stmt) -> int:
    """Return the height of a statement's subtree in lark's parse tree (a leaf is 1).

    Mirrors the tree, not the dataclasses: `class[K]` is a level of its own, the
    call inside a `repeat` is not. Walked with an explicit stack: recursion is
    what the depth limit protects.
    """
    best = 0
    stack = [(stmt, 1)]
    pop, extend = stack.pop, stack.extend
    while stack:
        node, depth = pop()
        if depth > best:
            best = depth
        kind = type(node)
        if kind is S.LabelDecl and node.shape is None:
            extend([(node.classes, depth + 2)])     # label_decl -> class_type -> the count
            continue
        children = _TREE_CHILDREN.get(kind)
        if children is not None:
            extend((child, depth + 1) for child in children(node) if child is not None)
    return best


# The children each syntax node has in lark's tree (a node missing here is a leaf).
_TREE_CHILDREN = {
    S.BinOp: lambda n: (n.left, n.right),
    S.Call: lambda n: (*n.args, *n.keywords),
    S.Chain: lambda n: (n.head, *n.links),
    S.Repeat: lambda n: (n.count, *n.call.args, *n.call.keywords),
    S.Negate: lambda n: (n.operand,),
    S.ListExpr: lambda n: n.items,
    S.ShapeExpr: lambda n: n.dims,
    S.Keyword: lambda n: (n.value,),
    S.Assign: lambda n: (n.value,),
    S.OutputDecl: lambda n: (n.value,),
    S.Return: lambda n: (n.value,),
    S.Setting: lambda n: (n.value,),
    S.BlockParam: lambda n: (n.default,),
    S.InputDecl: lambda n: (n.shape,),
    S.LabelDecl: lambda n: (n.shape,),
    S.ParamDecl: lambda n: (n.shape, *n.options),
}
