"""The fast front end builds exactly what the slow one did.

parse.py builds the syntax dataclasses while lark parses (an inline
transformer) and computes every span from the tokens, because lark gives such
a transformer no positions. The reference here is lark itself: the same
grammar parsed with `propagate_positions=True` into a tree, whose nodes'
`meta` spans every syntax node must match exactly (diagnostic carets and the
formatter's comment placement depend on them), and whose depth decides which
statement is "nested too deeply". Compile speed itself is measured and
reported, not asserted here.
"""
from __future__ import annotations

import dataclasses
import threading
from collections import Counter

import pytest
from lark import Lark, Token, Tree
from paths import MODEL_FILES
from program_gen import ProgramGen

from graphc.diagnostics import GraphcError
from graphc.language import syntax as S
from graphc.language.parse import _BracketNewlines, grammar_path, parse
from graphc.language.to_syntax import MAX_DEPTH
from graphc.program import check_source
from graphc.source import SourceFile, Span

# The rules that become syntax nodes, and the node each becomes (`class_type`,
# `start` and parentheses make none; `repeat_link` also makes the Call inside it).
_NODE_OF_RULE = {
    "include": "Include", "model": "Model", "block": "Block", "block_param": "BlockParam", "train": "Train",
    "setting": "Setting", "input_decl": "InputDecl", "label_decl": "LabelDecl", "param_decl": "ParamDecl",
    "option": "Keyword", "output_decl": "OutputDecl", "assign": "Assign", "return_stmt": "Return",
    "shape": "ShapeExpr", "chain": "Chain", "link": "Call", "repeat_link": "Repeat", "call": "Call",
    "keyword": "Keyword", "binary": "BinOp", "negate": "Negate", "number": "Number", "name": "Name",
    "string": "String", "list": "ListExpr",
}
_STATEMENTS = {"assign", "output_decl", "return_stmt", "input_decl", "label_decl", "param_decl",
               "setting", "block_param", "include"}


@pytest.fixture(scope="module")
def reference():
    """lark's own positions: a tree parser over the same grammar with propagate_positions."""
    return Lark(grammar_path().read_text(), parser="lalr", lexer="contextual", postlex=_BracketNewlines(),
                propagate_positions=True, maybe_placeholders=True)


def _reference_spans(tree: Tree) -> Counter:
    """(node type, start, end) of every syntax node the tree stands for."""
    spans = Counter()
    for node in tree.iter_subtrees():
        if node.data == "repeat_count":
            tok = node.children[0]
            spans["Name" if tok.type == "NAME" else "Number", tok.start_pos, tok.end_pos] += 1
        elif node.data in _NODE_OF_RULE:
            spans[_NODE_OF_RULE[node.data], node.meta.start_pos, node.meta.end_pos] += 1
            if node.data == "repeat_link":
                name = next(c for c in node.children if isinstance(c, Token) and c.type == "NAME")
                spans["Call", name.start_pos, node.meta.end_pos] += 1
    return spans


def _syntax_spans(module: S.Module) -> Counter:
    spans = Counter()
    stack = list(module.items)
    while stack:
        node = stack.pop()
        if isinstance(node, (tuple, list)):
            stack.extend(node)
        elif dataclasses.is_dataclass(node) and not isinstance(node, (Span, SourceFile)):
            spans[type(node).__name__, node.span.start, node.span.end] += 1
            stack.extend(getattr(node, f.name) for f in dataclasses.fields(node) if f.name != "span")
    return spans


def _too_deep(tree: Tree):
    """The statement the old separate pass named "nested too deeply" (the last one in the file), or None."""
    stack = [(tree, 1, tree)]
    while stack:
        node, depth, statement = stack.pop()
        if depth > MAX_DEPTH:
            return statement.meta.start_pos, statement.meta.end_pos
        if node.data in _STATEMENTS:
            statement = node
        stack.extend((child, depth + 1, statement) for child in node.children if isinstance(child, Tree))
    return None


HANDWRITTEN = [
    "",
    "# only a comment\n",
    'include "a.nn"\ninclude "b.nn"  # two\n',
    "model m {}\nblock b() {}\ntrain {}\ntrain m { }\n",
    "model m {\n  input x: [2,]; label y: class[(3)]; label z: [(2), 3]\n"
    "  param w: [] init=(he) decay = false\n  param v: [2, 2] init=normal(std=(0.1))\n"
    "  h = ((x)) -> f -> g() -> repeat 2 h((1), k=(2)) -> repeat n q\n"
    "  output o = -(a) + (b) * c ** (-d) @ e / f - (g)\n"
    "  z = f(a, k=1,) + [1, (2)] + [] + \"s\" + (([x]))\n  loss = (x)\n}\n",
    "block b(x, k = (3), s = -1,) {\n  return (x -> linear(k))\n}\n",
    "block c(\n  x,\n  n = 2\n) {\n  h = linear(\n    x,  # wrapped\n    n\n  )\n  return (h)\n}\n",
    "train m {\n  optimizer = sgd(lr=(0.1)); batch = (32)\n  data = \"mnist\"\n}\n",
    "model m {\r\n  input x: [2]\r\n  output y = x \\\n    + 1\r\n}\r\n",
    "model m {\n  output y = (((x)) -> f) + ((-x) ** -(2))\n  output z = (x) -> repeat 3 f\n}\n",
]


def _programs():
    yield from (p.read_text() for p in MODEL_FILES)
    yield from HANDWRITTEN
    for seed in range(300):
        yield ProgramGen(seed).program()


PROGRAMS = list(_programs())


@pytest.mark.parametrize("text", PROGRAMS, ids=[f"program{i}" for i in range(len(PROGRAMS))])
def test_every_span_is_lark_propagate_positions(reference, text):
    ours = parse(SourceFile("t.nn", text))
    assert _syntax_spans(ours) == _reference_spans(reference.parse(text))
    comments = [(c.text, c.span.start, c.span.end) for c in ours.comments]
    assert all(text[start:end] == body and body.startswith("#") for body, start, end in comments)


def _deep(n: int) -> list[str]:
    model = "model m {\n  input x: [2]\n%s\n}\n"
    return [
        model % ("  h = x -> f(" + "-" * n + "x)"),
        model % ("  h = x -> repeat 2 f(k=" + "-" * n + "x)"),
        model % ("  label y: class[" + "-" * n + "1]"),
        model % ("  param y: [2] init=" + "-" * n + "1"),
        model % ("  h = " + "(-" * n + "x" + ")" * n),
        model % ("  h = " + "[" * n + "x" + "]" * n),
        model % ("  h = x" + " + x" * n),
        model % ("  h = x" + "->f" * n),
        "block b(k = " + "-" * n + "x) {\n  return " + "-" * (n - 1) + "x\n}\n",
        "train {\n  k = " + "-" * n + "x\n}\n",
        model % ("  a = " + "-" * n + "x\n  b = x\n  c = " + "-" * (n + 1) + "x\n  d = x"),
    ]


@pytest.mark.parametrize("n", [196, 197, 198, 199, 200])
def test_the_depth_limit_names_the_statement_lark_would(reference, n):
    for text in _deep(n):
        expected = _too_deep(reference.parse(text))
        try:
            parse(SourceFile("t.nn", text))
            found = None
        except GraphcError as error:
            (d,) = error.diagnostics
            assert d.message == f"expression nested more than {MAX_DEPTH} levels deep"
            found = d.span.start, d.span.end
        assert found == expected, text


def test_a_few_exact_spans():
    text = "model m {\n  h = (a) + b\n  o = -(x -> f(1))\n  label y: class[(3)]\n}\n"
    model = parse(SourceFile("t.nn", text)).items[0]
    h, o, y = model.body

    def at(span):
        return text[span.start:span.end]

    assert at(model.span) == text.rstrip("\n")
    assert (at(h.span), at(h.value.span), at(h.value.left.span)) == ("h = (a) + b", "(a) + b", "a")
    assert (at(o.span), at(o.value.span), at(o.value.operand.span)) == ("o = -(x -> f(1))", "-(x -> f(1))",
                                                                         "x -> f(1)")
    assert (at(y.span), at(y.classes.span)) == ("label y: class[(3)]", "3")


def test_syntax_errors_leave_no_state_behind():
    with pytest.raises(GraphcError):
        parse(SourceFile("bad.nn", "model m {\n  h = (a +\n}\n"))
    text = "model m {\n  input x: [2]\n  output y = (x) + 1\n}\n"
    assert parse(SourceFile("good.nn", text)).items[0].body[1].value.span.start == text.index("(x)")


def test_parsing_from_several_threads():
    texts = [ProgramGen(seed).program() for seed in range(40)]
    expected = [_syntax_spans(parse(SourceFile("t.nn", t))) for t in texts]
    results = [None] * len(texts)

    def work(i):
        results[i] = _syntax_spans(parse(SourceFile("t.nn", texts[i])))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected


def test_a_generated_model_checks():
    lines = ["model big {", "  input x: [16]", "  label y: class[10]", "  h0 = linear(x, 16)"]
    for i in range(1, 201):
        lines.append(f"  h{i} = (linear(h{i-1}, 16) -> relu) + h{max(i - 4, 0)}" if i % 4 == 0
                     else f"  h{i} = linear(h{i-1}, 16) -> relu")
    lines += ["  logits = linear(h200, 10)", "  loss = cross_entropy(logits, y)", "}"]
    graph = check_source("\n".join(lines) + "\n", "big.nn")
    assert len(graph.nx) == 455 and len(graph.params) == 2 * 202
    assert graph.node("h4").span.text == "(linear(h3, 16) -> relu) + h0"
