"""Parsing: `.nn` text -> syntax tree, with syntax errors explained in words.

Input: a SourceFile (and, through `parse_program`, the files it includes).
Output: `syntax.Module` per file. The grammar (grammar/graphc.lark) is loaded
and its LALR parser built on first use, not at import (its tables cached per
user by grammar_cache). The parser builds the syntax dataclasses as it reduces
each rule (to_syntax.ToSyntax); a syntax error becomes words in syntax_errors.

`parse` is not re-entrant: the parser, its post-lexer and the transformer hold
per-parse state, so one lock serialises parses across threads.
"""
from __future__ import annotations

import functools
import threading
from pathlib import Path

from lark import Token
from lark.exceptions import UnexpectedInput

from graphc.diagnostics import Diagnostics, GraphcError
from graphc.language import syntax as S
from graphc.language.files import UnreadableSource, read_source
from graphc.language.grammar_cache import build_parser
from graphc.language.syntax_errors import blank_item, error_offset, explain, terminal_words
from graphc.language.to_syntax import MAX_DEPTH, ToSyntax
from graphc.source import SourceFile, Span

# Parser options that shape the tables or the callbacks (also part of the cache file's name).
# Positions are not propagated (that costs as much as parsing): ToSyntax computes spans
# from the tokens, which `keep_all_tokens` leaves in every rule's children.
PARSER_OPTIONS = {"parser": "lalr", "lexer": "contextual", "maybe_placeholders": True, "keep_all_tokens": True,
                  "propagate_positions": False}
MAX_SYNTAX_ERRORS = 20
# An include chain longer than this is a diagnostic (a cycle is caught earlier; this bounds
# what a generated or symlinked tree of distinct files can make the parser recurse through).
MAX_INCLUDE_DEPTH = 64
_LOCK = threading.Lock()


def parse(source: SourceFile) -> S.Module:
    """Return the syntax tree of one file; raise GraphcError with every syntax error found.

    After a syntax error the parser skips to the next top-level item
    (`model`, `block`, `train`, `search`, `include` at the start of a line), so each
    broken item is reported once. Not re-entrant; threads take turns (`_LOCK`).
    """
    with _LOCK:
        return _parser().parse(source)


def parse_program(path: str | Path | None = None, *, text: str | None = None,
                  name: str | None = None) -> list[S.Module]:
    """Return the main file's module followed by every module it includes (depth first).

    Include paths are relative to the including file. A missing or unreadable
    file, an include cycle or a chain deeper than MAX_INCLUDE_DEPTH is a
    diagnostic at the `include` line.
    """
    if text is None:
        path = Path(path)
        try:
            text = read_source(path)
        except UnreadableSource as error:
            raise GraphcError(f"cannot read {path}: {error.reason}", help=error.help) from None
        display = str(path)
    else:
        display = name or "<string>"
    main = parse(SourceFile(display, text.removeprefix("\ufeff")))
    modules = [main]
    diagnostics = Diagnostics()
    base = Path(path).resolve().parent if path is not None else Path.cwd()
    key = str(Path(path).resolve()) if path is not None else display
    _follow_includes(main, base, [key], {key}, modules, diagnostics)
    diagnostics.raise_if_errors()
    return modules


def grammar_path() -> Path:
    """Return the path of the grammar file (a sibling of the package, or shipped inside it)."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "grammar" / "graphc.lark", package.parent / "grammar" / "graphc.lark"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError("graphc.lark not found next to the graphc package")


def _follow_includes(module, base, stack, seen, modules, diagnostics):
    """Parse the files `module` includes (and theirs), appending them to `modules`; errors go to `diagnostics`."""
    for item in module.items:
        if not isinstance(item, S.Include):
            continue
        try:
            target = (base / item.path).resolve()
        except (OSError, RuntimeError):
            # Path.resolve raises RuntimeError (Python < 3.13) or OSError on a symlink loop.
            diagnostics.error(f"included file `{item.path}` is a symbolic link loop", item.span,
                              help="an include names a file, through at most a few symbolic links")
            continue
        key = str(target)
        if key in stack:
            chain = " -> ".join(Path(p).name for p in [*stack[stack.index(key):], key])
            diagnostics.error(f"include cycle: {chain}", item.span,
                              help="a file may not include itself, directly or through others")
            continue
        if key in seen:
            continue
        if len(stack) > MAX_INCLUDE_DEPTH:
            diagnostics.error(f"includes nested more than {MAX_INCLUDE_DEPTH} files deep", item.span,
                              help="include the shared files from the main file instead of through a chain")
            continue
        try:
            text = read_source(target)
        except UnreadableSource as error:
            where = f"looked at {target}" if error.reason == "not found" else str(target)
            diagnostics.error(f"included file `{item.path}` {error.reason} ({where})", item.span,
                              help="include paths are relative to the file that includes them"
                              if error.reason == "not found" else error.help)
            continue
        seen.add(key)
        try:
            child = parse(SourceFile(str(Path(module.source.path).parent / item.path), text))
        except GraphcError as error:
            diagnostics.extend(error.diagnostics)
            continue
        modules.append(child)
        _follow_includes(child, target.parent, [*stack, key], seen, modules, diagnostics)


@functools.cache
def _parser() -> _Parser:
    """Return the one parser, built on first use (called under `_LOCK`)."""
    return _Parser()


class _Parser:
    """The LALR parser and the per-parse state it drives: post-lexer, transformer, comments."""

    def __init__(self) -> None:
        self.comments: list[Token] = []
        self.postlex = _BracketNewlines()
        self.to_syntax = ToSyntax()
        self.lark = build_parser(grammar_path().read_text(), PARSER_OPTIONS, postlex=self.postlex,
                                 transformer=self.to_syntax, lexer_callbacks={"COMMENT": self.comments.append})
        self.words = terminal_words(self.lark.terminals)

    def parse(self, source: SourceFile) -> S.Module:
        """Return the syntax tree of `source`; raise GraphcError with its syntax errors (see `parse`)."""
        text = source.text
        diagnostics = Diagnostics()
        while True:
            self.comments.clear()
            self.to_syntax.start_file(source)
            try:
                items = self.lark.parse(text)
                break
            except UnexpectedInput as error:
                open_brackets = [*reversed(self.postlex.open), *reversed(self.postlex.braces)]
                diagnostics.add(explain(error, source, text, self.words, open_brackets))
                if len(diagnostics.items) >= MAX_SYNTAX_ERRORS:
                    break
                text = blank_item(text, error_offset(error, source))
                if text is None:
                    break
            finally:
                deep = self.to_syntax.end_file()
        diagnostics.raise_if_errors()
        if deep is not None:
            raise GraphcError(f"expression nested more than {MAX_DEPTH} levels deep", span=deep.span,
                              help="split it into several statements")
        comments = tuple(S.Comment(t.value, Span(source, t.start_pos, t.end_pos)) for t in self.comments)
        return S.Module(source, tuple(items), comments)


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
