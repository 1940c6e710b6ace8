"""Diagnostics: what graphc tells a user about their program or data.

Input: problems found by any stage. Output: `Diagnostic` records, a
`Diagnostics` collector (so that independent errors are all reported), and the
compiler-style rendering

    models/bad.nn:6:8: warning: conv never reads input row 13 and column 13
        6 |   c3 = conv(s2, 16, kernel=5, stride=2)
          |        ^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
      help: floor((14 + 2*0 - 5) / 2) + 1 = 5 windows cover rows 0..12; pad=1 reads them all

`did_you_mean` is the one suggestion helper every stage uses for a misspelt name.
`GraphcError` is the one exception that the command line turns into exit
status 1 without a traceback; anything else is a bug.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from graphc.source import Span


@dataclass(frozen=True)
class Note:
    """A secondary message, optionally pointing at another place in the source."""

    message: str
    span: Span | None = None


@dataclass(frozen=True)
class Diagnostic:
    """One error or warning: level, where, what, and how to fix it."""

    level: str  # "error" or "warning"
    message: str
    span: Span | None = None
    help: str | None = None
    notes: tuple[Note, ...] = ()

    def render(self) -> str:
        """Return the diagnostic as compiler-style text (no trailing newline)."""
        if self.span is None:
            lines = [f"graphc: {self.level}: {self.message}"]
        else:
            lines = [f"{self.span}: {self.level}: {self.message}"]
            lines += _snippet(self.span)
        for note in self.notes:
            if note.span is not None:
                lines.append(f"  note: {note.message} at {note.span}")
                lines += _snippet(note.span)
            else:
                lines.append(f"  note: {note.message}")
        if self.help:
            lines.append(f"  help: {self.help}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


def did_you_mean(name: str, candidates) -> str | None:
    """Return "did you mean `X`?" for the candidate closest to a misspelt `name`, or None if none is close."""
    close = difflib.get_close_matches(name, [str(c) for c in candidates], n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None


def _snippet(span: Span) -> list[str]:
    """Return the source line of a span and a caret line underneath it."""
    line, col = span.line, span.col
    text = span.source.line_text(line).replace("\t", " ")
    end_line, end_col = span.end_line_col
    if end_line != line:
        end_col = len(text) + 1
    width = max(1, end_col - col)
    if len(text) > _SHOWN_CHARS:
        # A long line (a generated model, a minified file) is shown as a window around the caret.
        start = max(0, min(col - 1 - _SHOWN_CHARS // 3, len(text) - _SHOWN_CHARS))
        shown = text[start:start + _SHOWN_CHARS]
        prefix = "…" if start > 0 else ""
        text = prefix + shown + ("…" if start + _SHOWN_CHARS < len(text) else "")
        col = col - start + len(prefix)
        width = max(1, min(width, len(prefix) + len(shown) + 1 - col))
    return [
        f"{line:>5} | {text}",
        f"      | {' ' * (col - 1)}^{'~' * (width - 1)}",
    ]


_SHOWN_CHARS = 200      # of a source line in a snippet; longer lines are cut around the caret


class GraphcError(Exception):
    """A problem with the user's program, data or files: shown without a traceback.

    Carries one or more diagnostics; `str()` renders them all.
    """

    def __init__(self, message: "str | Diagnostic | list[Diagnostic]", *, span: Span | None = None,
                 help: str | None = None, notes: tuple[Note, ...] = ()):
        if isinstance(message, Diagnostic):
            diagnostics = [message]
        elif isinstance(message, list):
            diagnostics = list(message)
        else:
            diagnostics = [Diagnostic("error", message, span, help, tuple(notes))]
        self.diagnostics = diagnostics
        super().__init__(self.render())

    @property
    def errors(self) -> list[Diagnostic]:
        """The error-level diagnostics carried."""
        return [d for d in self.diagnostics if d.level == "error"]

    def render(self) -> str:
        """Return every diagnostic rendered, separated by blank lines."""
        return "\n\n".join(d.render() for d in self.diagnostics)


@dataclass
class Diagnostics:
    """Collects diagnostics from a stage so that independent errors are all reported."""

    items: list[Diagnostic] = field(default_factory=list)

    def error(self, message: str, span: Span | None = None, help: str | None = None,
              notes: tuple[Note, ...] | list[Note] = ()) -> None:
        """Record an error."""
        self.items.append(Diagnostic("error", message, span, help, tuple(notes)))

    def warning(self, message: str, span: Span | None = None, help: str | None = None,
                notes: tuple[Note, ...] | list[Note] = ()) -> None:
        """Record a warning."""
        self.items.append(Diagnostic("warning", message, span, help, tuple(notes)))

    def add(self, diagnostic: Diagnostic) -> None:
        """Record an already-built diagnostic."""
        self.items.append(diagnostic)

    def extend(self, diagnostics: list[Diagnostic]) -> None:
        """Record several diagnostics."""
        self.items.extend(diagnostics)

    @property
    def has_errors(self) -> bool:
        """True when at least one error has been recorded."""
        return any(d.level == "error" for d in self.items)

    @property
    def warnings(self) -> list[Diagnostic]:
        """The warnings recorded so far."""
        return [d for d in self.items if d.level == "warning"]

    def raise_if_errors(self) -> None:
        """Raise GraphcError carrying everything recorded, if any error was recorded."""
        if self.has_errors:
            errors = sorted((d for d in self.items if d.level == "error"), key=_position)
            raise GraphcError(errors)


def _position(diagnostic: Diagnostic) -> tuple:
    span = diagnostic.span
    if span is None:
        return ("", 0)
    return (span.source.path, span.start)
