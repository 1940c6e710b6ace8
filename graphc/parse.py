"""Parsing: `.nn` text -> syntax tree, with syntax errors explained in words.

Input: a SourceFile (and, through `parse_program`, the files it includes).
Output: `syntax.Module` per file. The grammar (grammar/graphc.lark) is loaded
once; lark's parse tree is turned into frozen syntax dataclasses by a separate
Transformer pass (lark gives no positions to a Transformer passed to `Lark`).
"""
from __future__ import annotations

import difflib
import re
from copy import copy
from pathlib import Path

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import syntax as S
from .diagnostics import Diagnostic, Diagnostics, GraphcError, Note
from .source import SourceFile, Span


def grammar_path() -> Path:
    """Return the path of the grammar file (a sibling of the package, or shipped inside it)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "grammar" / "graphc.lark", here.parent / "grammar" / "graphc.lark"):
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
    import tempfile
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(base, "graphc")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return True
    import hashlib

    import lark
    digest = hashlib.sha256(grammar_path().read_bytes()).hexdigest()[:16]
    return os.path.join(folder, f"grammar-{digest}-lark{lark.__version__}.cache") if os.access(folder, os.W_OK) else True


_comments: list[Token] = []
_postlex = _BracketNewlines()
_PARSER = Lark(grammar_path().read_text(), parser="lalr", lexer="contextual", postlex=_postlex,
               propagate_positions=True, maybe_placeholders=True, cache=_cache_path(),
               lexer_callbacks={"COMMENT": _comments.append})

_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "INT_NUMBER": "a whole number", "STRING": "a string",
    "_NL": "a new line", "$END": "the end of the file", "COMMENT": "a comment",
}
for _term in _PARSER.terminals:
    if _term.name not in _WORDS and _term.pattern.type == "str":
        _WORDS[_term.name] = f"`{_term.pattern.value}`"
_ITEM_START = re.compile(r"^(model|block|train|include)\b", re.M)
_MAX_SYNTAX_ERRORS = 20
# The transformer and the builder recurse once (a few frames) per level of the
# tree; past this depth Python's recursion limit would turn a long `a + b + ...`
# or `-(-(-x))` into a crash, so it is a diagnostic instead.
_MAX_DEPTH = 200


def parse(source: SourceFile) -> S.Module:
    """Return the syntax tree of one file; raise GraphcError with every syntax error found.

    After a syntax error the parser skips to the next top-level item
    (`model`, `block`, `train`, `include` at the start of a line), so each
    broken item is reported once.
    """
    text = source.text
    diagnostics = Diagnostics()
    while True:
        _comments.clear()
        try:
            tree = _PARSER.parse(text)
            break
        except UnexpectedInput as error:
            diagnostics.add(_explain(error, source, text))
            if len(diagnostics.items) >= _MAX_SYNTAX_ERRORS:
                break
            text = _blank_item(text, _error_offset(error, source))
            if text is None:
                break
    diagnostics.raise_if_errors()
    deep = _too_deep(tree)
    if deep is not None:
        raise GraphcError(f"expression nested more than {_MAX_DEPTH} levels deep",
                          span=Span(source, deep.meta.start_pos, deep.meta.end_pos),
                          help="split it into several statements")
    comments = tuple(S.Comment(t.value, Span(source, t.start_pos, t.end_pos)) for t in _comments)
    items = _ToSyntax(source).transform(tree)
    return S.Module(source, tuple(items), comments)


def _too_deep(tree: Tree) -> Tree | None:
    """Return the statement holding a subtree deeper than _MAX_DEPTH levels, or None.

    Walked with an explicit stack: recursion is what the limit protects.
    """
    stack = [(tree, 1, tree)]
    while stack:
        node, depth, statement = stack.pop()
        if depth > _MAX_DEPTH:
            return statement
        if node.data in _STATEMENTS:
            statement = node
        stack.extend((child, depth + 1, statement) for child in node.children if isinstance(child, Tree))
    return None


_STATEMENTS = {"assign", "output_decl", "return_stmt", "input_decl", "label_decl", "param_decl",
               "setting", "block_param", "include"}


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


# ---- parse tree -> syntax dataclasses ------------------------------------------------

def _number(text: str) -> int | float:
    lowered = text.lower()
    if lowered.startswith(("0x", "0b", "0o")):
        return int(text, 0)
    if any(c in lowered for c in ".e"):
        return float(text)
    return int(text)


@v_args(meta=True)
class _ToSyntax(Transformer):
    """Builds syntax dataclasses with spans from lark's tree (a pass after parsing)."""

    def __init__(self, source: SourceFile):
        super().__init__()
        self.source = source

    def _span(self, meta) -> Span:
        return Span(self.source, meta.start_pos, meta.end_pos)

    def _tok(self, tok: Token) -> Span:
        return Span(self.source, tok.start_pos, tok.end_pos)

    def start(self, meta, items):
        return [i for i in items if i is not None]

    def include(self, meta, children):
        return S.Include(children[0].value[1:-1], self._span(meta))

    def model(self, meta, children):
        name, *body = children
        return S.Model(name.value, tuple(b for b in body if b is not None), self._span(meta), self._tok(name))

    def block(self, meta, children):
        name = children[0]
        params = tuple(c for c in children[1:] if isinstance(c, S.BlockParam))
        body = tuple(c for c in children[1:] if c is not None and not isinstance(c, S.BlockParam))
        return S.Block(name.value, params, body, self._span(meta), self._tok(name))

    def block_param(self, meta, children):
        name, default = children
        return S.BlockParam(name.value, default, self._span(meta))

    def train(self, meta, children):
        model = children[0].value if children and isinstance(children[0], Token) else None
        settings = tuple(c for c in children if isinstance(c, S.Setting))
        return S.Train(model, settings, self._span(meta))

    def setting(self, meta, children):
        key, value = children
        return S.Setting(key.value, value, self._span(meta), self._tok(key))

    def input_decl(self, meta, children):
        name, shape = children
        return S.InputDecl(name.value, shape, self._span(meta), self._tok(name))

    def label_decl(self, meta, children):
        name, kind = children
        if isinstance(kind, S.ShapeExpr):
            return S.LabelDecl(name.value, kind, None, self._span(meta), self._tok(name))
        return S.LabelDecl(name.value, None, kind, self._span(meta), self._tok(name))

    def class_type(self, meta, children):
        return children[0]

    def param_decl(self, meta, children):
        name, shape, *options = children
        return S.ParamDecl(name.value, shape, tuple(options), self._span(meta), self._tok(name))

    def option(self, meta, children):
        name, value = children
        return S.Keyword(name.value, value, self._span(meta), self._tok(name))

    def output_decl(self, meta, children):
        name, value = children
        return S.OutputDecl(name.value, value, self._span(meta), self._tok(name))

    def assign(self, meta, children):
        name, value = children
        return S.Assign(name.value, value, self._span(meta), self._tok(name))

    def return_stmt(self, meta, children):
        return S.Return(children[0], self._span(meta))

    def shape(self, meta, children):
        return S.ShapeExpr(tuple(c for c in children if c is not None), self._span(meta))

    def chain(self, meta, children):
        head, *links = children
        return S.Chain(head, tuple(links), self._span(meta))

    def _call(self, meta, name: Token, args) -> S.Call:
        args = [a for a in args if a is not None]
        positional = tuple(a for a in args if not isinstance(a, S.Keyword))
        keywords = tuple(a for a in args if isinstance(a, S.Keyword))
        return S.Call(name.value, positional, keywords, self._span(meta), self._tok(name))

    def link(self, meta, children):
        return self._call(meta, children[0], children[1:])

    def repeat_link(self, meta, children):
        count, name, *args = children
        call_meta = type("M", (), {"start_pos": name.start_pos, "end_pos": meta.end_pos})
        return S.Repeat(count, self._call(call_meta, name, args), self._span(meta))

    def repeat_count(self, meta, children):
        tok = children[0]
        if tok.type == "NAME":
            return S.Name(tok.value, self._tok(tok))
        return S.Number(_number(tok.value), tok.value, self._tok(tok))

    def call(self, meta, children):
        return self._call(meta, children[0], children[1:])

    def keyword(self, meta, children):
        name, value = children
        return S.Keyword(name.value, value, self._span(meta), self._tok(name))

    def binary(self, meta, children):
        left, op, right = children
        return S.BinOp(op.value, left, right, self._span(meta), self._tok(op))

    def negate(self, meta, children):
        return S.Negate(children[1], self._span(meta))

    def number(self, meta, children):
        tok = children[0]
        return S.Number(_number(tok.value), tok.value, self._tok(tok))

    def name(self, meta, children):
        return S.Name(children[0].value, self._tok(children[0]))

    def string(self, meta, children):
        return S.String(children[0].value[1:-1], self._tok(children[0]))

    def list(self, meta, children):
        return S.ListExpr(tuple(c for c in children if c is not None), self._span(meta))
