"""Fuzzing the front end: no input, however mangled, makes the checker crash.

Random mutations of every example program (models/*.nn and DESIGN.md's
programs) go through `check_source` in-process. Every outcome must be a typed
graph or a GraphcError whose diagnostics point inside the text and render;
any other exception is a bug. The number of examples comes from
GRAPHC_FUZZ_EXAMPLES (default 2000, shared between the two property tests).
"""
from __future__ import annotations

import os
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paths import MODEL_FILES
from test_language import DESIGN_PROGRAMS

from graphc.diagnostics import GraphcError
from graphc.program import check_source
from graphc.tools.summary import render_summary, summary_json

PROGRAMS = [p.read_text() for p in MODEL_FILES] + list(DESIGN_PROGRAMS.values())
# A few more constructs than the examples use, so that mutations reach them too.
PROGRAMS.append("""\
block stage(x, n = 8, k = 1) {
  h = linear(x, n) -> leaky_relu(slope=0.1 * k)
  return h + 0x1_0 * .5e-1
}
model a {
  input x: [4]; label y: class[3]; label t: [3]
  input img: [1, 8, 8]
  param w: [3, 3] init=normal(std=0.1) decay=false
  h = x -> repeat 2 stage(n=3) -> layernorm
  z = concat(h, h, axis=0) -> reshape([2, 3]) -> sum(axis=[0])
  c = conv(img, 2, kernel=[3, 3], stride=1, pad=1) -> maxpool(2) -> flatten -> linear(3)
  loss = cross_entropy(h @ w, y) + mse(z, t) + -mean(exp(c) ** 2)
  output p = softmax(h)
}
train a { optimizer = adam(lr=1e-3); schedule = step(step_size=2, gamma=0.5); validation = 0.1 }
""")

TOTAL = int(os.environ.get("GRAPHC_FUZZ_EXAMPLES", "2000"))
PER_TEST = max(1, -(-TOTAL // 2))   # two property tests share the budget, rounding up

# Tokens as a user sees them: whitespace runs are kept (and left alone) so that a
# mutated program is still laid out like the original.
TOKEN = re.compile(r'\s+|#[^\n]*|"[^"\n]*"?|\.?\d[\w.]*|[A-Za-z_]\w*|->|\*\*|.', re.S)
KEYWORDS = ["model", "block", "train", "include", "input", "label", "param", "output", "return",
            "repeat", "class", "loss", "true", "false", "relu", "linear", "conv", "x"]
PUNCTUATION = ["(", ")", "[", "]", "{", "}", ",", "=", ":", ";", "->", "+", "-", "*", "/", "@", "**",
               "\n", "#", '"', "\\", "0", "1.5", "-1", "1e400", "0x", "1.2.3", "99999999999999999999"]

FUZZ_SETTINGS = settings(
    max_examples=PER_TEST,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def check_outcome(text: str) -> None:
    """Check `text`; only success or a well-formed GraphcError are acceptable."""
    lines = text.count("\n") + 1
    try:
        graph = check_source(text, "fuzz.nn")
    except GraphcError as error:
        assert error.diagnostics, "a GraphcError must carry a diagnostic"
        for d in error.diagnostics:
            assert d.level in ("error", "warning")
            if d.span is not None:
                assert 1 <= d.span.line <= lines + 1, (d.span.line, lines)
                assert d.span.col >= 1
                assert d.render().splitlines()[0].startswith(f"{d.span}: ")
            for note in d.notes:
                if note.span is not None:
                    assert note.span.line >= 1 and note.span.col >= 1
        assert error.render()
        assert str(error)
        return
    # Success: the rest of `graphc check` must work on the graph too.
    for w in graph.warnings:
        assert w.render()
    summary_json(graph)
    render_summary(graph)


@st.composite
def token_mutants(draw) -> str:
    """A program with 1-4 token edits: delete, duplicate, swap neighbours, replace."""
    tokens = TOKEN.findall(draw(st.sampled_from(PROGRAMS)))
    for _ in range(draw(st.integers(1, 4))):
        solid = [i for i, t in enumerate(tokens) if t and not t.isspace()]
        if len(solid) < 2:
            break
        i = draw(st.sampled_from(solid))
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "same-program", "keyword", "punctuation"]))
        if kind == "delete":
            tokens[i] = ""
        elif kind == "duplicate":
            tokens[i] = tokens[i] + " " + tokens[i]
        elif kind == "swap":
            j = solid[(solid.index(i) + 1) % len(solid)]
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif kind == "same-program":
            tokens[i] = tokens[draw(st.sampled_from(solid))]
        elif kind == "keyword":
            tokens[i] = draw(st.sampled_from(KEYWORDS))
        else:
            tokens[i] = draw(st.sampled_from(PUNCTUATION))
    return "".join(tokens)


def _junk():
    return st.one_of(
        st.characters(min_codepoint=32, max_codepoint=126).map(str),           # printable ASCII
        st.text(min_size=1, max_size=4),                                       # any unicode
        st.binary(min_size=1, max_size=6).map(lambda b: b.decode("utf-8", errors="replace")),
        st.sampled_from(["\t", "\r", "\r\n", "\x00", "\x0c", "\u2028", "\ufeff", "é", "→", "\\\n"]),
    )


@st.composite
def char_mutants(draw) -> str:
    """A program with 1-3 character edits: insert junk, delete a character, truncate."""
    text = draw(st.sampled_from(PROGRAMS))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "insert", "delete", "truncate"]))
        if kind == "insert":
            text = text[:at] + draw(_junk()) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + 1:]
        else:
            text = text[:at]
    return text


@FUZZ_SETTINGS
@given(token_mutants())
def test_token_mutations_never_crash(text):
    check_outcome(text)


@FUZZ_SETTINGS
@given(char_mutants())
def test_character_mutations_never_crash(text):
    check_outcome(text)


def test_the_fuzz_budget_is_at_least_the_requested_total():
    assert 2 * PER_TEST >= TOTAL


def test_the_unmutated_programs_check_clean():
    for text in PROGRAMS:
        check_source(text, "fuzz.nn")
        check_outcome(text)


def test_empty_and_blank_programs():
    for text in ["", "\n", "   ", "# only a comment", ";;;", "\ufeff"]:
        check_outcome(text)
