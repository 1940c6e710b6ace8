"""Syntax errors in words: lark's exceptions -> Diagnostics with spans.

Input: an `UnexpectedInput` raised while parsing one SourceFile, plus what the
parser knew when it stopped (the terminals' names, the open brackets).
Output: one `Diagnostic` naming what was found, what was expected, and the
bracket that is never closed. `blank_item` lets the parser skip a broken
top-level item and go on, so that each broken item is reported once.
"""
from __future__ import annotations

import re
from copy import copy

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from graphc.diagnostics import Diagnostic, Note, did_you_mean
from graphc.source import SourceFile, Span

# What a syntax error calls each terminal; `terminal_words` adds every literal one as `text`.
_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "INT_NUMBER": "a whole number", "STRING": "a string",
    "_NL": "a new line", "$END": "the end of the file", "COMMENT": "a comment",
}
_ITEM_START = re.compile(r"^(model|block|train|search|include)\b", re.M)


def terminal_words(terminals) -> dict[str, str]:
    """Return the words naming each of a parser's terminals (`a name`, `` `->` ``) in a syntax error."""
    words = dict(_WORDS)
    for term in terminals:
        if term.name not in words and term.pattern.type == "str":
            words[term.name] = f"`{term.pattern.value}`"
    return words


def _shown(text: str, limit: int = 40) -> str:
    """Return `text` cut to `limit` characters with an ellipsis: a message never echoes a whole huge token."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def error_offset(error: UnexpectedInput, source: SourceFile) -> int:
    """Return the character offset where the parser stopped (the end of the file for end-of-input errors)."""
    # lark reports the end of input as line/column -1 (or as a `$END` token): both mean the end.
    if isinstance(error, UnexpectedToken) and error.token.type == "$END":
        return len(source.text)
    pos = getattr(error, "pos_in_stream", None)
    if pos is None and isinstance(error, UnexpectedToken):
        pos = error.token.start_pos
    return len(source.text) if pos is None or pos < 0 else pos


def explain(error: UnexpectedInput, source: SourceFile, text: str, words: dict[str, str],
            open_brackets: list[Token]) -> Diagnostic:
    """Return the diagnostic of one syntax error.

    `text` is the source as parsed (after recovery blanked broken items); `words`
    names each terminal (`terminal_words`); `open_brackets` are the brackets the
    post-lexer saw opened and not closed, innermost first.
    """
    offset = error_offset(error, source)
    if isinstance(error, UnexpectedCharacters):
        char = source.text[offset:offset + 1]
        span = Span(source, offset, offset + 1)
        shown = f"`{char}`" if char.isprintable() and char != "`" else repr(char)
        message = f"unexpected character {shown}"
        expected = _accepts(error.state) if error.state is not None else set(error.allowed or ())
        help_text = _expected_help(expected, words)
        if char == '"':
            end = source.text.find("\n", offset)
            span = Span(source, offset, len(source.text) if end < 0 else end)
            message, help_text = "unterminated string", 'a string ends with `"` on the same line'
        elif _NUMBERISH.match(text, offset):
            return _bad_number(source, text, offset) or Diagnostic("error", message, span, help_text)
        return Diagnostic("error", message, span, help_text, _unclosed_note(source, text, offset, open_brackets))
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
                help_text = _expected_help(set(error.accepts or error.expected), words)
                return Diagnostic("error", message, span,
                                  (help_text + "; " if help_text else "")
                                  + "a statement goes on to the next line only inside ( ) or after `\\`")
        else:
            message = f"unexpected {words.get(tok.type, repr(_shown(tok.value)))}"
            if tok.type in ("NAME", "NUMBER", "INT_NUMBER"):
                message = f"unexpected {words[tok.type].split(' ', 1)[1]} `{_shown(tok.value)}`"
        expected = set(error.accepts or error.expected)
        if tok.type == "COMMA" and open_brackets and open_brackets[0].value == "(":
            # A comma inside a grouping `(`: a Python tuple such as `kernel=(3, 5)`.
            return _tuple(source, text, open_brackets[0].start_pos, span)
        if tok.type == "NAME":
            # A misspelt keyword (`mdel m {`): suggest the keyword the parser wanted.
            keywords = [words[t].strip("`") for t in expected if words.get(t, "")[1:-1].isalpha()]
            suggestion = did_you_mean(tok.value, keywords)
            if suggestion:
                return Diagnostic("error", message, span, suggestion,
                                  _unclosed_note(source, text, offset, open_brackets))
        previous = _previous_token(error)
        if previous is not None and "EQUAL" in expected and tok.type != "EQUAL":
            # `inpt x: [2]` parses `inpt` as the name of an assignment and stumbles on `x`:
            # blame the misspelt statement keyword, not the name after it.
            suggestion = did_you_mean(previous.value, _STATEMENT_WORDS)
            if suggestion:
                return Diagnostic("error", f"`{_shown(previous.value)}` is not a keyword",
                                  Span(source, previous.start_pos, previous.end_pos), suggestion)
    else:
        span = source.end_span()
        message = "unexpected end of file"
        expected = set(getattr(error, "accepts", None) or getattr(error, "expected", ()) or ())
    return Diagnostic("error", message, span, _expected_help(expected, words),
                      _unclosed_note(source, text, offset, open_brackets))


def _tuple(source: SourceFile, text: str, start: int, comma: Span) -> Diagnostic:
    """Return the diagnostic of a tuple `(3, 5)` (the language has lists): the help shows it as a list."""
    depth, end = 0, None
    for i in range(start, len(text)):
        if text[i] in "([{":
            depth += 1
        elif text[i] in ")]}":
            depth -= 1
            if depth == 0:
                end = i if text[i] == ")" else None
                break
        elif text[i] == "\n":
            break
    if end is None:
        return Diagnostic("error", "unexpected `,` inside `( )`", comma,
                          "there are no tuples: a list of values is written in [ ], e.g. [3, 5]")
    written = _shown(text[start:end + 1])
    return Diagnostic("error", f"`{written}` is a tuple; the language has lists, not tuples", Span(source, start, end + 1),
                      f"write a list: `{_shown('[' + text[start + 1:end] + ']')}`")


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
    return Diagnostic("error", f"malformed number `{_shown(word)}`", Span(source, begin, end), _NUMBER_HELP)


_CLOSERS = {"(": ")", "[": "]", "{": "}"}
_STRING_END = re.compile(r'["\n]')


def _unclosed_note(source: SourceFile, text: str, offset: int,
                   open_brackets: list[Token]) -> tuple[Note, ...]:
    """Return a note naming the innermost bracket open at the error that is never closed, if any.

    The post-lexer knows which brackets are open where the parser stopped; a
    bracket closed further on (the error was something else inside it) is not
    blamed.
    """
    for opener in open_brackets:
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


def _expected_help(expected, words: dict[str, str]) -> str | None:
    """Return `expected a, b or c` for the terminals the parser could take, or None."""
    named = sorted({words.get(name, name) for name in expected if name not in ("COMMENT",)},
                   key=lambda w: (_PREFERRED.index(w) if w in _PREFERRED else 99, w))
    named = [w for w in named if not w.startswith("__")]
    if not named:
        return None
    if len(named) > 6:
        named = named[:6] + ["…"]
    if len(named) == 1:
        return f"expected {named[0]}"
    return "expected " + ", ".join(named[:-1]) + " or " + named[-1]


def blank_item(text: str, offset: int) -> str | None:
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

