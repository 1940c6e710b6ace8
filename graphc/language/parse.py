"""Parsing: `.nn` text -> syntax tree, with syntax errors explained in words.

Input: a SourceFile (and, through `parse_program`, the files it includes).
Output: `syntax.Module` per file. The grammar (grammar/graphc.lark) is loaded
once. The LALR parser builds the frozen syntax dataclasses directly, as it
reduces each rule (an inline transformer, `_ToSyntax`): no lark tree is built
and no second pass walks one. lark gives such a transformer no positions, so
it keeps every token (`keep_all_tokens`) and computes each node's span from
its first and last token, exactly as lark's `propagate_positions` would.

`parse` is not re-entrant: the parser, its post-lexer and the transformer hold
per-parse state, so one lock serialises parses across threads.
"""
from __future__ import annotations

import difflib
import re
import threading
from copy import copy
from pathlib import Path

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from graphc.diagnostics import Diagnostic, Diagnostics, GraphcError, Note
from graphc.language import syntax as S
from graphc.source import SourceFile, Span


def grammar_path() -> Path:
    """Return the path of the grammar file (a sibling of the package, or shipped inside it)."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "grammar" / "graphc.lark", package.parent / "grammar" / "graphc.lark"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError("graphc.lark not found next to the graphc package")


class _BracketNewlines:
    """Post-lexer: newlines inside ( ) and [ ] do not end a statement.

    It also remembers the open `{` so that a syntax error can name the brace
    that is never closed (the usual cause of "unexpected end of file").
    """

    always_accept = ("_NL",)

    def __init__(self) -> None:
        self.open: list[Token] = []
        self.braces: list[Token] = []

    def process(self, stream):
        self.open = []
        self.braces = []
        for tok in stream:
            if tok.type in ("LPAR", "LSQB"):
                self.open.append(tok)
            elif tok.type in ("RPAR", "RSQB") and self.open:
                self.open.pop()
            elif tok.type == "_NL" and self.open:
                continue
            elif tok.type == "LBRACE":
                self.braces.append(tok)
            elif tok.type == "RBRACE" and self.braces:
                self.braces.pop()
            yield tok


def _cache_path() -> str | bool:
    """Return where lark may cache its LALR tables (per user), or True for lark's own temp file.

    Building the tables costs ~150 ms per process; the cache makes `graphc check` start fast.
    """
    import os
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(base, "graphc")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return True
    import hashlib

    import lark
    digest = hashlib.sha256(grammar_path().read_bytes() + repr(sorted(_OPTIONS.items())).encode()).hexdigest()[:16]
    return os.path.join(folder, f"grammar-{digest}-lark{lark.__version__}.cache") if os.access(folder, os.W_OK) else True


# Parser options that shape the tables or the callbacks (also part of the cache file's name).
# Positions are not propagated (that costs as much as parsing): `_ToSyntax` computes spans
# from the tokens, which `keep_all_tokens` leaves in every rule's children.
_OPTIONS = {"parser": "lalr", "lexer": "contextual", "maybe_placeholders": True, "keep_all_tokens": True,
            "propagate_positions": False}
_comments: list[Token] = []
_postlex = _BracketNewlines()
_LOCK = threading.Lock()


_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "INT_NUMBER": "a whole number", "STRING": "a string",
    "_NL": "a new line", "$END": "the end of the file", "COMMENT": "a comment",
}   # and every literal terminal, as `text` (filled in at the end of the module, with the parser)
_ITEM_START = re.compile(r"^(model|block|train|include)\b", re.M)
_MAX_SYNTAX_ERRORS = 20
# The builder and the formatter recurse once (a few frames) per level of the
# tree; past this depth Python's recursion limit would turn a long `a + b + ...`
# or `-(-(-x))` into a crash, so it is a diagnostic instead. A level is a node of
# lark's parse tree (start = 1, an item = 2, a statement = 3; parentheses add none).
_MAX_DEPTH = 200


def parse(source: SourceFile) -> S.Module:
    """Return the syntax tree of one file; raise GraphcError with every syntax error found.

    After a syntax error the parser skips to the next top-level item
    (`model`, `block`, `train`, `include` at the start of a line), so each
    broken item is reported once. Not re-entrant; threads take turns (`_LOCK`).
    """
    with _LOCK:
        return _parse(source)


def _parse(source: SourceFile) -> S.Module:
    text = source.text
    diagnostics = Diagnostics()
    while True:
        _comments.clear()
        _TO_SYNTAX.start_file(source)
        try:
            items = _PARSER.parse(text)
            break
        except UnexpectedInput as error:
            diagnostics.add(_explain(error, source, text))
            if len(diagnostics.items) >= _MAX_SYNTAX_ERRORS:
                break
            text = _blank_item(text, _error_offset(error, source))
            if text is None:
                break
        finally:
            deep = _TO_SYNTAX.end_file()
    diagnostics.raise_if_errors()
    if deep is not None:
        raise GraphcError(f"expression nested more than {_MAX_DEPTH} levels deep", span=deep.span,
                          help="split it into several statements")
    comments = tuple(S.Comment(t.value, Span(source, t.start_pos, t.end_pos)) for t in _comments)
    return S.Module(source, tuple(items), comments)


def parse_program(path: str | Path | None = None, *, text: str | None = None,
                  name: str | None = None) -> list[S.Module]:
    """Return the main file's module followed by every module it includes (depth first).

    Include paths are relative to the including file. A missing file or an
    include cycle is a diagnostic at the `include` line.
    """
    if text is None:
        path = Path(path)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise GraphcError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}",
                              help="check the path and that the file is UTF-8 text") from None
        display = str(path)
    else:
        display = name or "<string>"
    main = parse(SourceFile(display, text))
    modules = [main]
    diagnostics = Diagnostics()
    base = Path(path).resolve().parent if path is not None else Path.cwd()
    seen = {str(Path(path).resolve()) if path is not None else display}
    _follow_includes(main, base, [seen.copy().pop()], seen, modules, diagnostics)
    diagnostics.raise_if_errors()
    return modules


def _follow_includes(module, base, stack, seen, modules, diagnostics):
    for item in module.items:
        if not isinstance(item, S.Include):
            continue
        target = (base / item.path).resolve()
        key = str(target)
        if key in stack:
            chain = " -> ".join(Path(p).name for p in [*stack[stack.index(key):], key])
            diagnostics.error(f"include cycle: {chain}", item.span,
                              help="a file may not include itself, directly or through others")
            continue
        if key in seen:
            continue
        try:
            text = target.read_text()
        except (OSError, UnicodeDecodeError):
            diagnostics.error(f"included file `{item.path}` not found (looked at {target})", item.span,
                              help="include paths are relative to the file that includes them")
            continue
        seen.add(key)
        try:
            child = parse(SourceFile(str(Path(module.source.path).parent / item.path), text))
        except GraphcError as error:
            diagnostics.extend(error.diagnostics)
            continue
        modules.append(child)
        _follow_includes(child, target.parent, [*stack, key], seen, modules, diagnostics)


# ---- syntax errors in words ------------------------------------------------------

def _error_offset(error: UnexpectedInput, source: SourceFile) -> int:
    if isinstance(error, UnexpectedToken) and error.token.type == "$END":
        return len(source.text)
    pos = getattr(error, "pos_in_stream", None)
    if pos is None and isinstance(error, UnexpectedToken):
        pos = error.token.start_pos
    return len(source.text) if pos is None or pos < 0 else pos


def _explain(error: UnexpectedInput, source: SourceFile, text: str) -> Diagnostic:
    """Return the diagnostic of one syntax error (`text` is the source as parsed, after recovery)."""
    offset = _error_offset(error, source)
    if isinstance(error, UnexpectedCharacters):
        char = source.text[offset:offset + 1]
        span = Span(source, offset, offset + 1)
        shown = f"`{char}`" if char.isprintable() and char != "`" else repr(char)
        message = f"unexpected character {shown}"
        expected = _accepts(error.state) if error.state is not None else set(error.allowed or ())
        help_text = _expected_help(expected)
        if char == '"':
            end = source.text.find("\n", offset)
            span = Span(source, offset, len(source.text) if end < 0 else end)
            message, help_text = "unterminated string", 'a string ends with `"` on the same line'
        elif _NUMBERISH.match(text, offset):
            return _bad_number(source, text, offset) or Diagnostic("error", message, span, help_text)
        return Diagnostic("error", message, span, help_text, _unclosed_note(source, text, offset))
    if isinstance(error, UnexpectedToken) and error.token.type != "$END":
        tok = error.token
        span = Span(source, tok.start_pos, tok.end_pos if tok.end_pos is not None else tok.start_pos + 1)
        if tok.type in ("NUMBER", "INT_NUMBER") and tok.start_pos > 0 \
                and _GLUED.match(text, tok.start_pos - 1):
            # `1.2.3` lexes as `1.2` then `.3`: report the whole word, not its tail.
            bad = _bad_number(source, text, tok.start_pos)
            if bad is not None:
                return bad
        if tok.type == "_NL":
            span = Span(source, tok.start_pos, tok.start_pos + 1)
            message = "unexpected end of line"
            if _CONTINUES.search(text, 0, tok.start_pos):
                # `x ->` or `a +` at the end of a line: the user meant to go on below.
                help_text = _expected_help(set(error.accepts or error.expected))
                return Diagnostic("error", message, span,
                                  (help_text + "; " if help_text else "")
                                  + "a statement goes on to the next line only inside ( ) or after `\\`")
        else:
            message = f"unexpected {_WORDS.get(tok.type, repr(tok.value))}"
            if tok.type in ("NAME", "NUMBER", "INT_NUMBER"):
                message = f"unexpected {_WORDS[tok.type].split(' ', 1)[1]} `{tok.value}`"
        expected = set(error.accepts or error.expected)
        if tok.type == "NAME":
            # A misspelt keyword (`mdel m {`): suggest the keyword the parser wanted.
            keywords = [_WORDS[t].strip("`") for t in expected if _WORDS.get(t, "")[1:-1].isalpha()]
            close = difflib.get_close_matches(tok.value, keywords, n=1, cutoff=0.6)
            if close:
                return Diagnostic("error", message, span, f"did you mean `{close[0]}`?",
                                  _unclosed_note(source, text, offset))
        previous = _previous_token(error)
        if previous is not None and "EQUAL" in expected and tok.type != "EQUAL":
            # `inpt x: [2]` parses `inpt` as the name of an assignment and stumbles on `x`:
            # blame the misspelt statement keyword, not the name after it.
            close = difflib.get_close_matches(previous.value, _STATEMENT_WORDS, n=1, cutoff=0.6)
            if close:
                return Diagnostic("error", f"`{previous.value}` is not a keyword",
                                  Span(source, previous.start_pos, previous.end_pos),
                                  f"did you mean `{close[0]}`?")
    else:
        span = source.end_span()
        message = "unexpected end of file"
        expected = set(getattr(error, "accepts", None) or getattr(error, "expected", ()) or ())
    return Diagnostic("error", message, span, _expected_help(expected), _unclosed_note(source, text, offset))


_CONTINUES = re.compile(r"(->|[-+*/@,=(\[])[ \t\f]*(#[^\n]*)?\Z")
_STATEMENT_WORDS = ("input", "label", "param", "output", "return")


def _previous_token(error: UnexpectedToken) -> Token | None:
    """Return the name token the parser took just before the unexpected one, if it was a name."""
    values = getattr(getattr(error, "state", None), "value_stack", None) or []
    last = values[-1] if values else None
    return last if isinstance(last, Token) and last.type == "NAME" else None


def _accepts(state) -> set[str]:
    """Return the terminals the parser can really take next in `state`.

    LALR merges states, so the raw table of a state over-approximates (it may
    list `)` where no `(` is open); feeding each candidate to a copy of the
    parser, as lark does for UnexpectedToken.accepts, gives the true set.
    """
    conf = copy(state.parse_conf)
    conf.callbacks = {}
    accepted = set()
    for name in state.parse_conf.states[state.position]:
        if not name.isupper() or name == "$END":
            continue
        trial = state.copy(deepcopy_values=False)
        trial.parse_conf = conf
        try:
            trial.feed_token(Token(name, ""))
        except UnexpectedToken:
            continue
        accepted.add(name)
    return accepted


_NUMBERISH = re.compile(r"\.?\d")
_GLUED = re.compile(r"[\w.]")
_WORD = re.compile(r"[\w.]*(?:[eE][+-][\w.]*)?")
_NUMBER_HELP = "numbers are written like 3, 0.5, .5, 5., 1e-3, 1_000 or 0x10"


def _bad_number(source: SourceFile, text: str, offset: int) -> Diagnostic | None:
    """Return a diagnostic for the malformed number around `offset` (`1.2.3`, `1_000_`, `0x`), or None."""
    begin = offset
    while begin > 0 and _GLUED.match(text, begin - 1):
        begin -= 1
    if not _NUMBERISH.match(text, begin):
        return None
    end = _WORD.match(text, begin).end()
    word = text[begin:end]
    return Diagnostic("error", f"malformed number `{word}`", Span(source, begin, end), _NUMBER_HELP)


_CLOSERS = {"(": ")", "[": "]", "{": "}"}
_STRING_END = re.compile(r'["\n]')


def _unclosed_note(source: SourceFile, text: str, offset: int) -> tuple[Note, ...]:
    """Return a note naming the innermost bracket open at the error that is never closed, if any.

    The post-lexer knows which brackets are open where the parser stopped; a
    bracket closed further on (the error was something else inside it) is not
    blamed.
    """
    for opener in [*reversed(_postlex.open), *reversed(_postlex.braces)]:
        if opener.start_pos < offset and not _closed_later(text, opener.start_pos):
            return (Note(f"`{opener.value}` opened here is never closed",
                         Span(source, opener.start_pos, opener.end_pos)),)
    return ()


def _closed_later(text: str, start: int) -> bool:
    """True when the bracket at `start` has a matching closer (comments and strings skipped)."""
    stack, i, n = [], start, len(text)
    while i < n:
        ch = text[i]
        if ch == "#":
            i = text.find("\n", i)
            if i < 0:
                break
        elif ch == '"':
            # A string ends at its quote or, unterminated, at the end of its line.
            close = _STRING_END.search(text, i + 1)
            i = n if close is None else close.start()
        elif ch in _CLOSERS:
            stack.append(_CLOSERS[ch])
        elif ch in ")]}" and ch in stack:
            # A closer of an outer bracket also ends the unclosed ones inside it; a
            # closer that matches nothing open is stray and says nothing about ours.
            while stack.pop() != ch:
                pass
            if not stack:
                return True
        i += 1
    return False


_PREFERRED = ["`=`", "`:`", "`)`", "`]`", "`}`", "`{`", "`(`", "`,`", "`->`", "a name", "a number"]


def _expected_help(expected) -> str | None:
    words = sorted({_WORDS.get(name, name) for name in expected if name not in ("COMMENT",)},
                   key=lambda w: (_PREFERRED.index(w) if w in _PREFERRED else 99, w))
    words = [w for w in words if not w.startswith("__")]
    if not words:
        return None
    if len(words) > 6:
        words = words[:6] + ["…"]
    if len(words) == 1:
        return f"expected {words[0]}"
    return "expected " + ", ".join(words[:-1]) + " or " + words[-1]


def _blank_item(text: str, offset: int) -> str | None:
    """Return text with the top-level item containing `offset` blanked out (newlines kept), or None."""
    starts = [m.start() for m in _ITEM_START.finditer(text)]
    begin = max([s for s in starts if s <= offset], default=None)
    after = [s for s in starts if s > offset]
    if begin == offset and begin > 0:
        # The parser stopped on the keyword that starts an item (`model n {` after a model
        # whose `}` is missing): the broken item is the one before; keep this one.
        begin, after = max([s for s in starts if s < offset], default=0), [offset]
    if begin is None:
        begin = 0
    end = after[0] if after else len(text)
    if not after and begin == 0 and offset >= len(text.rstrip()):
        return None
    blanked = re.sub(r"[^\n]", " ", text[begin:end])
    new_text = text[:begin] + blanked + text[end:]
    return None if new_text == text else new_text


# ---- tokens -> syntax dataclasses, while parsing ------------------------------------

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


class _ToSyntax:
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
        """Return the last statement nested more than _MAX_DEPTH levels deep (or None); forget the file."""
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

    def _statement(self, stmt):
        """Note `stmt` if it holds a subtree deeper than _MAX_DEPTH levels; return it."""
        # Every level of the tree holds at least one token of its own, so a statement
        # needs at least _MAX_DEPTH - 2 characters before it can be too deep.
        if stmt.span.end - stmt.span.start >= _MAX_DEPTH - 2 and _height(stmt) + 2 > _MAX_DEPTH:
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
        return S.Number(_number(tok.value), tok.value, self._tok(tok))

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
        return S.Number(_number(tok.value), tok.value, self._tok(tok))

    def name(self, children):
        tok = children[0]
        return S.Name(tok.value, self._tok(tok))

    def string(self, children):
        tok = children[0]
        return S.String(tok.value[1:-1], self._tok(tok))

    def list(self, children):
        items = tuple(c for c in children[1:-1] if c is not None and not isinstance(c, Token))
        return S.ListExpr(items, Span(self.source, children[0].start_pos, children[-1].end_pos))


def _height(stmt) -> int:
    """Return the height of a statement's subtree in lark's parse tree (a leaf is 1).

    Mirrors the tree, not the dataclasses: `class[K]` is a level of its own, the
    call inside a `repeat` is not. Walked with an explicit stack: recursion is
    what the depth limit protects.
    """
    best = 0
    stack = [(stmt, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > best:
            best = depth
        depth += 1
        kind = type(node)
        if kind is S.BinOp:
            push((node.left, depth))
            push((node.right, depth))
        elif kind is S.Call:
            for a in node.args:
                push((a, depth))
            for k in node.keywords:
                push((k, depth))
        elif kind is S.Chain:
            push((node.head, depth))
            for link in node.links:
                push((link, depth))
        elif kind is S.Repeat:
            push((node.count, depth))
            for a in node.call.args:
                push((a, depth))
            for k in node.call.keywords:
                push((k, depth))
        elif kind is S.Negate:
            push((node.operand, depth))
        elif kind is S.ListExpr:
            for i in node.items:
                push((i, depth))
        elif kind is S.ShapeExpr:
            for d in node.dims:
                push((d, depth))
        elif kind in (S.Keyword, S.Assign, S.OutputDecl, S.Return, S.Setting):
            push((node.value, depth))
        elif kind is S.BlockParam:
            if node.default is not None:
                push((node.default, depth))
        elif kind is S.InputDecl:
            push((node.shape, depth))
        elif kind is S.LabelDecl:
            if node.shape is not None:
                push((node.shape, depth))
            else:
                push((node.classes, depth + 1))     # label_decl -> class_type -> the count
        elif kind is S.ParamDecl:
            push((node.shape, depth))
            for o in node.options:
                push((o, depth))
    return best


_TO_SYNTAX = _ToSyntax()
_PARSER = Lark(grammar_path().read_text(), **_OPTIONS, postlex=_postlex, transformer=_TO_SYNTAX,
               cache=_cache_path(), lexer_callbacks={"COMMENT": _comments.append})
for _term in _PARSER.terminals:
    if _term.name not in _WORDS and _term.pattern.type == "str":
        _WORDS[_term.name] = f"`{_term.pattern.value}`"
