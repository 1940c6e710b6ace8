"""Tests for graphc.fmt: the canonical layout, comments, idempotency and `graphc fmt`."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from paths import MODEL_FILES, MODELS, REPO
from program_gen import ProgramGen

from graphc.cli import main
from graphc.diagnostics import GraphcError
from graphc.language import syntax as S
from graphc.language.fmt import format_source
from graphc.language.parse import parse
from graphc.source import SourceFile

# ---- helpers ------------------------------------------------------------------------

def fmt(text: str) -> str:
    return format_source(text, "test.nn")


def tree(text: str):
    return parse(SourceFile("test.nn", text))


def shape_of(node):
    """A syntax tree as nested tuples without spans, sources or comment positions.

    Includes are compared first (the formatter moves them to the top of the
    file); every other item keeps its place.
    """
    if isinstance(node, S.Module):
        items = [i for i in node.items if isinstance(i, S.Include)] + \
                [i for i in node.items if not isinstance(i, S.Include)]
        return ("Module", shape_of(items))
    if dataclasses.is_dataclass(node):
        return (type(node).__name__,) + tuple(
            (f.name, shape_of(getattr(node, f.name))) for f in dataclasses.fields(node)
            if f.name != "span" and not f.name.endswith("_span"))
    if isinstance(node, (tuple, list)):
        return tuple(shape_of(n) for n in node)
    return node


def comment_texts(text: str) -> list[str]:
    return [c.text.rstrip() for c in tree(text).comments]


def assert_round_trip(text: str) -> str:
    """Format, then check: idempotent, parses, same tree, every comment kept, one final newline."""
    once = fmt(text)
    assert fmt(once) == once, f"not idempotent:\n{once}\n---\n{fmt(once)}"
    assert shape_of(tree(once)) == shape_of(tree(text))
    for comment in comment_texts(text):
        assert comment in once
    assert sorted(comment_texts(once)) == sorted(comment_texts(text))
    if once:
        assert once.endswith("\n") and not once.endswith("\n\n")
    return once


def in_model(expression: str) -> str:
    return f"model m {{\n  x = {expression}\n}}\n"


# ---- the example programs -------------------------------------------------------------

def test_models_exist():
    assert MODEL_FILES, "no models/*.nn found"


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.name)
def test_model_files_round_trip(path):
    text = path.read_text()
    once = assert_round_trip(text)
    for comment in comment_texts(text):
        assert comment in once


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.name)
def test_model_files_format_in_place_is_stable(path, tmp_path):
    copy = tmp_path / path.name
    copy.write_text(path.read_text())
    assert main(["fmt", "--write", str(copy)]) == 0
    assert main(["fmt", "--check", str(copy)]) == 0


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.name)
def test_shipped_models_are_in_canonical_layout(path, capsys):
    # The examples teach the layout: each is exactly what `graphc fmt` prints.
    assert main(["fmt", "--check", str(path)]) == 0, capsys.readouterr().err


def test_lenet5_train_section_is_aligned():
    out = fmt((MODELS / "lenet5.nn").read_text()) if (MODELS / "lenet5.nn").exists() else None
    if out is None:
        pytest.skip("models/lenet5.nn not present")
    assert "  data      = mnist\n" in out
    assert "  optimizer = sgd(lr=0.01, momentum=0.9)\n" in out


# ---- expressions and parentheses ---------------------------------------------------------

@pytest.mark.parametrize("source, expected", [
    ("(a + b) * c", "(a + b) * c"),
    ("a - (b - c)", "a - (b - c)"),
    ("(a - b) - c", "a - b - c"),
    ("a + (b + c)", "a + (b + c)"),
    ("a + (b * c)", "a + b * c"),
    ("(a * b) / c", "a * b / c"),
    ("a / (b * c)", "a / (b * c)"),
    ("a @ (b @ c)", "a @ (b @ c)"),
    ("(a@b)@c", "a @ b @ c"),
    ("-x ** 2", "-x ** 2"),
    ("-(x ** 2)", "-x ** 2"),
    ("(-x) ** 2", "(-x) ** 2"),
    ("a ** b ** c", "a ** b ** c"),
    ("a ** (b ** c)", "a ** b ** c"),
    ("(a ** b) ** c", "(a ** b) ** c"),
    ("a ** -b", "a ** -b"),
    ("a ** (-b)", "a ** -b"),
    ("2 ** (a + b)", "2 ** (a + b)"),
    ("-(a + b)", "-(a + b)"),
    ("-(a * b)", "-(a * b)"),
    ("(-a) * b", "-a * b"),
    ("- - x", "-(-x)"),
    ("a - -b", "a - -b"),
    ("a - (-b)", "a - -b"),
    ("((a))", "a"),
    ("(x -> f) + 1", "(x -> f) + 1"),
    ("(a -> f) -> g", "(a -> f) -> g"),
    ("-(x -> f)", "-(x -> f)"),
    ("(x + 1) -> f", "x + 1 -> f"),
    ("f((a -> g))", "f(a -> g)"),
    ("x->f()->g(1,k = 2)", "x -> f -> g(1, k=2)"),
    ("x -> repeat 3 f(64) -> repeat n g()", "x -> repeat 3 f(64) -> repeat n g"),
    ("x -> repeat 0x3 f(k=2)", "x -> repeat 0x3 f(k=2)"),
    ("f()", "f()"),
    ("f( a , k=[1,2,] , )", "f(a, k=[1, 2])"),
    ("f(k=1, a)", "f(a, k=1)"),
    ("[ ]", "[]"),
    ('g("abc")', 'g("abc")'),
    ("f(a,\n      b)", "f(a, b)"),
    ("a+b*c-d/e", "a + b * c - d / e"),
    ("(a+b)*(c-d)", "(a + b) * (c - d)"),
])
def test_expression_layout(source, expected):
    out = assert_round_trip(in_model(source))
    assert out == in_model(expected)


@pytest.mark.parametrize("number", ["0x1F", "0XfF", "0b1010", "0o17", "1_000", "1_000.000_1", "1e-3", "2.5E+10",
                                    ".5", "1.", "3e8", "007", "0"])
def test_numbers_are_printed_as_written(number):
    out = assert_round_trip(f"model m {{ x = {number} * y; param w: [{number}] init={number} }}")
    assert f"x = {number} * y" in out
    assert f"param w: [{number}] init={number}" in out


@pytest.mark.parametrize("make", [lambda n: "(" * n + "x" + ")" * n, lambda n: "-" * n + "x",
                                  lambda n: "x" + " ** x" * n, lambda n: "f(" * n + "x" + ")" * n,
                                  lambda n: "[" * n + "1" + "]" * n, lambda n: " - ".join(["x"] * n),
                                  lambda n: "x" + " -> f" * n])
def test_deeply_nested_expressions(make):
    assert_round_trip(in_model(make(150)))


# ---- declarations and items -----------------------------------------------------------

def test_declarations():
    source = ("model   m{\n  input  x :[ 2 ]\n label y:class [ 2 ]\n label t : [3,4,]\n"
              "param W1:[784,100]   init = he  scale=0.1\n output p=softmax( logits )\n}\n")
    assert assert_round_trip(source) == (
        "model m {\n"
        "  input x: [2]\n"
        "  label y: class[2]\n"
        "  label t: [3, 4]\n"
        "  param W1: [784, 100] init=he scale=0.1\n"
        "  output p = softmax(logits)\n"
        "}\n")


def test_semicolon_one_liners_become_lines():
    source = "model m { input x: [2]; y = x;; output p = y }\ntrain { data = mnist; batch = 100 }"
    assert assert_round_trip(source) == (
        "model m {\n"
        "  input x: [2]\n"
        "  y = x\n"
        "  output p = y\n"
        "}\n"
        "\n"
        "train {\n"
        "  data  = mnist\n"
        "  batch = 100\n"
        "}\n")


def test_train_settings_align_per_section():
    source = "train a { x = 1; longer = sgd(lr = 0.1) }\ntrain b {\n  data=mnist\n}\n"
    assert assert_round_trip(source) == (
        "train a {\n"
        "  x      = 1\n"
        "  longer = sgd(lr=0.1)\n"
        "}\n"
        "\n"
        "train b {\n"
        "  data = mnist\n"
        "}\n")


def test_block_with_defaults():
    source = "block b( x,k = 5 , pad=0, ) {return conv(x, 8, kernel=k, pad=pad)->relu}"
    assert assert_round_trip(source) == (
        "block b(x, k=5, pad=0) {\n"
        "  return conv(x, 8, kernel=k, pad=pad) -> relu\n"
        "}\n")


def test_block_without_params_and_multiline_params():
    assert assert_round_trip("block b() { return 1 }") == "block b() {\n  return 1\n}\n"
    assert assert_round_trip("block b(\n  x,\n  k=-1,\n) {\n  return x * k\n}") == (
        "block b(x, k=-1) {\n  return x * k\n}\n")


@pytest.mark.parametrize("source, expected", [
    ("model m { }", "model m {}\n"),
    ("model m {\n\n\n}\n", "model m {}\n"),
    ("model m {}", "model m {}\n"),
    ("train NAME { }", "train NAME {}\n"),
    ("train {\n}", "train {}\n"),
    ("train NAME {\n  data = mnist\n}", "train NAME {\n  data = mnist\n}\n"),
])
def test_empty_bodies_and_named_train(source, expected):
    assert assert_round_trip(source) == expected


def test_items_separated_by_one_blank_line():
    source = "model a {}\n\n\n\nmodel b { x = 1 } model c {}\ntrain c {}"
    assert assert_round_trip(source) == "model a {}\n\nmodel b {\n  x = 1\n}\n\nmodel c {}\n\ntrain c {}\n"


def test_includes_come_first_in_written_order():
    source = 'model m {}\ninclude "b.nn"\nblock k() { return 1 }\ninclude   "a.nn"\n'
    assert assert_round_trip(source) == (
        'include "b.nn"\n'
        'include "a.nn"\n'
        "\n"
        "model m {}\n"
        "\n"
        "block k() {\n"
        "  return 1\n"
        "}\n")


def test_blank_lines_in_bodies_collapse_to_one():
    source = "model m {\n\n\n  a = 1\n  b = 2\n\n\n\n  c = 3\n\n  d = 4\n\n\n}\n"
    assert assert_round_trip(source) == "model m {\n  a = 1\n  b = 2\n\n  c = 3\n\n  d = 4\n}\n"


def test_output_ends_with_one_newline():
    assert fmt("model m {}") == "model m {}\n"
    assert fmt("model m {}\n\n\n\n") == "model m {}\n"
    assert fmt("\n\n# c\n\n\n") == "# c\n"
    assert fmt("") == ""
    assert fmt("\n\n  \n") == ""


def test_crlf_input():
    source = "# top\r\nmodel m {\r\n  x = 1  # one\r\n}\r\n"
    assert assert_round_trip(source) == "# top\nmodel m {\n  x = 1  # one\n}\n"


def test_line_continuation():
    source = "model m {\n  x = a + \\\n      b\n}\n"
    assert assert_round_trip(source) == "model m {\n  x = a + b\n}\n"


# ---- comments ---------------------------------------------------------------------------

COMMENTED = '''\
# file header

include "a.nn"   # trailing include
model m {  # header trailing
  # leading own-line
  input x: [2]   # trailing stmt


  # after blank
  h = f(x,   # inside call
        k=2,  # second inside
        )  # after call
  y = h; z = y  # after one-liner
  # end of block
}  # after close
# before block
block b(x,  # param comment
        k=5) {
  return x
}
train {  # train header
  data = mnist  # the data
  # before batch
  batch = 10
  # end of train
}
# end of file
'''

COMMENTED_FORMATTED = '''\
# file header

include "a.nn"  # trailing include

model m {  # header trailing
  # leading own-line
  input x: [2]  # trailing stmt

  # after blank
  h = f(x, k=2)  # inside call
  # second inside
  # after call
  y = h
  z = y  # after one-liner
  # end of block
}  # after close

# before block
block b(x, k=5) {  # param comment
  return x
}

train {  # train header
  data  = mnist  # the data
  # before batch
  batch = 10
  # end of train
}

# end of file
'''


def test_comments_in_every_position():
    assert assert_round_trip(COMMENTED) == COMMENTED_FORMATTED


def test_comment_text_is_kept_verbatim():
    source = "model m {\n  x = 1 #no space  \n  #! odd ## kinds # of { } ( ) text\n}\n"
    out = assert_round_trip(source)
    assert "  x = 1  #no space\n" in out
    assert "  #! odd ## kinds # of { } ( ) text\n" in out


def test_comment_only_file_and_blank_lines_between_comments():
    source = "# one\n\n\n# two\n# three\n"
    assert assert_round_trip(source) == "# one\n\n# two\n# three\n"


def test_header_comment_stays_above_hoisted_includes():
    source = '# hdr\nmodel m {}\n# about b\ninclude "b.nn"\ninclude "c.nn"\n'
    assert assert_round_trip(source) == '# hdr\n# about b\ninclude "b.nn"\ninclude "c.nn"\n\nmodel m {}\n'
    source = '# hdr\n\nmodel m {}\ninclude "b.nn"\n'
    assert assert_round_trip(source) == '# hdr\n\ninclude "b.nn"\n\nmodel m {}\n'


def test_comment_only_blocks():
    assert assert_round_trip("model m {\n  # todo\n}") == "model m {\n  # todo\n}\n"
    assert assert_round_trip("model m {  # todo\n}") == "model m {  # todo\n}\n"
    assert assert_round_trip("train n {\n\n  # a\n\n  # b\n\n}") == "train n {\n  # a\n\n  # b\n}\n"


def test_trailing_comments_on_one_line_items():
    source = "model m { x = 1 }  # one line\ntrain { data = mnist; batch = 1 }  # also\n"
    assert assert_round_trip(source) == (
        "model m {\n  x = 1\n}  # one line\n\ntrain {\n  data  = mnist\n  batch = 1\n}  # also\n")


def test_comments_inside_expressions_are_not_lost():
    source = ("model m {\n"
              "  y = conv(x,      # input\n"
              "           8,      # filters\n"
              "           kernel=[3,  # height\n"
              "                   3]) -> relu\n"
              "  z = y\n"
              "}\n")
    assert assert_round_trip(source) == (
        "model m {\n"
        "  y = conv(x, 8, kernel=[3, 3]) -> relu  # input\n"
        "  # filters\n"
        "  # height\n"
        "  z = y\n"
        "}\n")


def test_comments_in_a_block_header():
    source = "block b(\n  # the input\n  x,  # still x\n  k=5  # size\n) {\n  return x\n}\n"
    assert assert_round_trip(source) == (
        "block b(x, k=5) {  # the input\n"
        "  # still x\n"
        "  # size\n"
        "  return x\n"
        "}\n")


# ---- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["model m { x = }", "model m {", "train { data mnist }", "input x: [2]",
                                    "model m { x = (a + b }", "model m { x = 1 } junk"])
def test_syntax_error_raises(source):
    with pytest.raises(GraphcError):
        fmt(source)


def test_a_formatter_bug_is_caught_not_written(monkeypatch):
    import graphc.language.fmt as fmt_module
    monkeypatch.setattr(fmt_module, "format_module", lambda module: "model m {}\n")
    with pytest.raises(RuntimeError, match="changed its syntax tree"):
        format_source("model m { x = 1 }", "t.nn")
    monkeypatch.setattr(fmt_module, "format_module", lambda module: "model m {\n  x = 1\n}\n")
    with pytest.raises(RuntimeError, match="comment"):
        format_source("model m { x = 1 }  # note", "t.nn")


# ---- command line ------------------------------------------------------------------------

UNFORMATTED = "model m { input x: [2]; output y = x*2 }\n"
FORMATTED = "model m {\n  input x: [2]\n  output y = x * 2\n}\n"


def test_cli_prints_formatted_text(tmp_path, capsys):
    path = tmp_path / "m.nn"
    path.write_text(UNFORMATTED)
    assert main(["fmt", str(path)]) == 0
    assert capsys.readouterr().out == FORMATTED
    assert path.read_text() == UNFORMATTED


def test_cli_check(tmp_path, capsys):
    path = tmp_path / "m.nn"
    path.write_text(UNFORMATTED)
    assert main(["fmt", "--check", str(path)]) == 1
    captured = capsys.readouterr()
    assert "not formatted" in captured.err and captured.out == ""
    path.write_text(FORMATTED)
    assert main(["fmt", "--check", str(path)]) == 0


def test_cli_write(tmp_path, capsys):
    path = tmp_path / "m.nn"
    path.write_text(UNFORMATTED)
    assert main(["fmt", "--write", str(path)]) == 0
    assert capsys.readouterr().out == ""
    assert path.read_text() == FORMATTED
    assert main(["fmt", "--check", str(path)]) == 0


def test_cli_syntax_error(tmp_path, capsys):
    path = tmp_path / "bad.nn"
    path.write_text("model m {\n  x = \n}\n")
    assert main(["fmt", "--write", str(path)]) == 1
    assert "error" in capsys.readouterr().err
    assert path.read_text() == "model m {\n  x = \n}\n"


def test_cli_missing_file(tmp_path, capsys):
    assert main(["fmt", str(tmp_path / "nope.nn")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_python_dash_m_graphc_fmt(tmp_path):
    path = tmp_path / "m.nn"
    path.write_text(UNFORMATTED)
    done = subprocess.run([sys.executable, "-m", "graphc", "fmt", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == FORMATTED


# ---- random programs -----------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(400))
def test_random_programs_round_trip(seed):
    source = ProgramGen(seed).program()
    try:
        tree(source)
    except GraphcError:
        pytest.skip("generated text is not a valid program")
    assert_round_trip(source)
