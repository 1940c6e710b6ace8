"""Source files and spans: the only position type in graphc.

Input: the text of a `.nn` file and its path. Output: `SourceFile` (which maps
offsets to 1-based line/column and hands out source lines) and `Span`, a
half-open byte range inside one file that every syntax node, graph node and
diagnostic carries.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field


@dataclass(frozen=True, eq=False)
class SourceFile:
    """A `.nn` file's path and text, with a line index built once."""

    path: str
    text: str = field(repr=False)
    _line_starts: tuple[int, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        starts = [0]
        for i, ch in enumerate(self.text):
            if ch == "\n":
                starts.append(i + 1)
        object.__setattr__(self, "_line_starts", tuple(starts))

    def line_col(self, offset: int) -> tuple[int, int]:
        """Return the 1-based (line, column) of a character offset."""
        offset = max(0, min(offset, len(self.text)))
        line_index = bisect.bisect_right(self._line_starts, offset) - 1
        return line_index + 1, offset - self._line_starts[line_index] + 1

    def offset(self, line: int, col: int) -> int:
        """Return the character offset of a 1-based (line, column)."""
        line = max(1, min(line, len(self._line_starts)))
        return min(self._line_starts[line - 1] + col - 1, len(self.text))

    def line_text(self, line: int) -> str:
        """Return the text of a 1-based line, without its newline."""
        if line < 1 or line > len(self._line_starts):
            return ""
        start = self._line_starts[line - 1]
        end = self.text.find("\n", start)
        return self.text[start:] if end < 0 else self.text[start:end]

    def end_span(self) -> "Span":
        """Return an empty span at the end of the file (for end-of-input errors)."""
        end = len(self.text.rstrip()) if self.text.strip() else 0
        return Span(self, end, end)


@dataclass(frozen=True)
class Span:
    """A half-open character range [start, end) in one source file."""

    source: SourceFile
    start: int
    end: int

    @property
    def line(self) -> int:
        """The 1-based line where the span starts."""
        return self.source.line_col(self.start)[0]

    @property
    def col(self) -> int:
        """The 1-based column where the span starts."""
        return self.source.line_col(self.start)[1]

    @property
    def end_line_col(self) -> tuple[int, int]:
        """The 1-based (line, column) just past the span's last character."""
        return self.source.line_col(self.end)

    @property
    def text(self) -> str:
        """The source text the span covers."""
        return self.source.text[self.start:self.end]

    def to(self, other: "Span") -> "Span":
        """Return the span from the start of this one to the end of `other`."""
        return Span(self.source, min(self.start, other.start), max(self.end, other.end))

    def __str__(self) -> str:
        return f"{self.source.path}:{self.line}:{self.col}"
