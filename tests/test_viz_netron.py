"""The `.dot` file opens in Netron with op types shown, and stays valid Graphviz.

Netron cannot run here (no browser), so `netron_read` below follows its DOT
reader (lutzroeder/netron source/dot.js) step by step: the file is recognised
by a `digraph` line within its first 64 non-comment lines; strings have no
escapes (a string ends at the next `"`); `<...>` is an HTML string with
nesting; `#` and `//` start comments; a `subgraph` body is skipped (its nodes
are lost); a node statement named `node`/`edge`/`graph` sets defaults; a
node's type comes from a label of exactly `name: <id> type: <Op>` whose id is
the node's own, and is the node's id otherwise.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from paths import MODEL_FILES

from graphc.cli import main
from graphc.program import check_file, check_source
from graphc.viz.dot import dot_ids

LABEL = re.compile(r"^name:\s*([A-Za-z][A-Za-z0-9_]*)\stype:\s*([A-Za-z][A-Za-z0-9_]*)$")
IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def netron_recognises(text: str) -> bool:
    """Return whether Netron's ModelFactory.match takes the text for DOT."""
    lines = [line.strip() for line in text.split("\n")[:64]]
    return any(re.match(r"^(strict)?\s*digraph", line) for line in lines
               if not line.startswith("//") and not line.startswith("#"))


def _tokens(text: str):
    """Yield (kind, value) as Netron's dot.Tokenizer reads them."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\n\r\f":
            i += 1
        elif c == "#" or text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
        elif c in "{}[]=:;,":
            yield c, c
            i += 1
        elif text.startswith("->", i):
            yield "->", "->"
            i += 2
        elif c == '"':
            end = text.index('"', i + 1)          # no escapes: the next quote ends the string
            yield "id", text[i + 1:end]
            i = end + 1
        elif c == "<":
            level, j = 0, i + 1
            while level > 0 or text[j] != ">":
                level += {"<": 1, ">": -1}.get(text[j], 0)
                j += 1
            yield "id", text[i:j + 1]
            i = j + 1
        elif re.match(r"[A-Za-z0-9_$]", c):
            m = re.compile(r"[A-Za-z0-9_$.*]+").match(text, i)
            yield "id", m.group()
            i = m.end()
        else:
            raise AssertionError(f"Netron's tokenizer rejects {c!r} at offset {i}")


class _NetronParser:
    """Netron's dot.Parser over the tokens: top-level node and edge statements, subgraph bodies dropped."""

    def __init__(self, text: str):
        self.toks = list(_tokens(text))
        self.i = 0
        self.statements: list = []

    def parse(self) -> list:
        assert self.toks[0] == ("id", "digraph")
        self.i = 2 if self.toks[1][0] == "id" else 1
        self.block(keep=True)
        return self.statements

    def attributes(self) -> dict:
        toks, table = self.toks, {}
        if toks[self.i][0] == "[":
            self.i += 1
            while toks[self.i][0] == "id":
                assert toks[self.i + 1][0] == "=" and toks[self.i + 2][0] == "id", toks[self.i:self.i + 3]
                table[toks[self.i][1]] = toks[self.i + 2][1]
                self.i += 3
                if toks[self.i][0] in ";,":
                    self.i += 1
            assert toks[self.i][0] == "]"
            self.i += 1
        return table

    def block(self, keep: bool) -> None:
        toks = self.toks
        assert toks[self.i][0] == "{"
        self.i += 1
        while toks[self.i][0] != "}":
            kind, value = toks[self.i]
            assert kind == "id", f"unexpected {toks[self.i]}"
            if value == "subgraph":
                self.i += 2 if toks[self.i + 1][0] == "id" else 1
                self.block(keep=False)           # Netron drops the subgraph statement
            else:
                self.i += 1
                self.statement(value, keep)
            if toks[self.i][0] in ";,":
                self.i += 1
        self.i += 1

    def statement(self, name: str, keep: bool) -> None:
        toks = self.toks
        assert toks[self.i][0] != ":", "a port in a node id"
        if toks[self.i][0] == "=":              # a graph attribute
            self.i += 2
        elif toks[self.i][0] == "->":
            chain = [name]
            while toks[self.i][0] == "->":
                chain.append(toks[self.i + 1][1])
                self.i += 2
            self.attributes()
            if keep:
                self.statements.extend(("edge", a, b) for a, b in zip(chain, chain[1:]))
        else:
            table = self.attributes()
            if keep and name not in ("node", "edge", "graph"):   # those set defaults
                self.statements.append(("node", name, table))


def netron_read(text: str) -> tuple[dict, list]:
    """Return ({node id: (type, attributes)}, [(src, dst)]) as Netron's dot.Graph builds them."""
    statements = _NetronParser(text).parse()
    nodes = {}
    for _, name, table in (s for s in statements if s[0] == "node"):
        m = LABEL.match(table.get("label", ""))
        nodes[name] = (m.group(2) if m and m.group(1) == name else name, table)
    return nodes, [(a, b) for kind, a, b in (s for s in statements if s[0] == "edge")]


def expected_type(graph, name: str) -> str:
    """Return the op type the .dot file should give Netron for a graphc name."""
    if name not in graph.nx or graph.node(name).kind == "param":
        return "get_parameter"
    a = graph.node(name)
    return {"op": a.op_name, "const": "Constant"}.get(a.kind, a.kind)


def _write_dot(path, tmp_path, *flags) -> str:
    out = tmp_path / (path.stem + ".dot")
    assert main(["viz", str(path), "-o", str(out), *flags]) == 0
    return out.read_text()


@pytest.mark.parametrize("flags", [(), ("--backward", "--plan")], ids=["forward", "backward-plan"])
@pytest.mark.parametrize("path", MODEL_FILES, ids=[p.stem for p in MODEL_FILES])
def test_every_node_shows_its_op_type_in_netron(path, flags, tmp_path, capsys):
    text = _write_dot(path, tmp_path, *flags)
    graph = check_file(path)
    assert netron_recognises(text)
    nodes, edges = netron_read(text)
    assert nodes
    for ident, (op_type, table) in nodes.items():
        assert IDENT.fullmatch(ident), ident
        assert LABEL.match(table["label"]).group(1) == ident       # so Netron takes the type from the label
        assert op_type == expected_type(graph, table["graphc_name"]), ident
    names = [table["graphc_name"] for _, table in nodes.values()]
    assert len(set(names)) == len(names)
    assert set(names) >= set(graph.op_nodes())
    assert {(a, b) for a, b in edges} and all(a in nodes and b in nodes for a, b in edges)


@pytest.mark.parametrize("path", MODEL_FILES, ids=[p.stem for p in MODEL_FILES])
def test_parameters_fold_into_their_layer_as_in_onnx(path, tmp_path, capsys):
    """Netron makes a get_parameter node without inputs and with one use an initializer of its consumer."""
    nodes, edges = netron_read(_write_dot(path, tmp_path))
    params = [ident for ident, (op_type, _) in nodes.items() if op_type == "get_parameter"]
    for ident in params:
        assert [b for a, b in edges if a == ident] and not [a for a, b in edges if b == ident]
    assert all(table.get("shape") != "octagon" for _, table in nodes.values())   # octagons get collapsed


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed (apt-get install graphviz)")
@pytest.mark.parametrize("path", MODEL_FILES, ids=[p.stem for p in MODEL_FILES])
def test_graphviz_accepts_the_dot_file(path, tmp_path, capsys):
    done = subprocess.run(["dot", "-Tsvg"], input=_write_dot(path, tmp_path, "--backward", "--plan").encode(),
                          capture_output=True, timeout=120)
    assert done.returncode == 0 and b"<svg" in done.stdout, done.stderr
    assert not done.stderr, done.stderr.decode()                   # not even a warning


def test_dot_ids_are_identifiers_distinct_and_not_keywords():
    names = ["c1.conv", "c1_conv", "node", "Graph", "_h", "a.b", "a_b", "a_b_2", "x"]
    ids = dot_ids(names)
    assert ids["c1_conv"] == "c1_conv" and ids["x"] == "x" and ids["a_b"] == "a_b"   # identifiers keep themselves
    assert ids["c1.conv"] not in ("c1_conv",) and ids["c1.conv"].startswith("c1_conv")
    assert len(set(ids.values())) == len(names)
    assert all(IDENT.fullmatch(i) and i.lower() not in ("node", "edge", "graph", "subgraph", "digraph", "strict")
               for i in ids.values())


def test_sanitised_names_do_not_collide_in_a_model(tmp_path, capsys):
    text = """
    model m {
      input x: [4]
      a_linear = relu(x)
      a = linear(a_linear, 4) -> relu
      output y = a + a_linear -> linear(4) -> softmax
    }
    """
    src = tmp_path / "m.nn"
    src.write_text(text)
    graph = check_source(text)
    nodes, edges = netron_read(_write_dot(src, tmp_path))
    by_name = {table["graphc_name"]: ident for ident, (_, table) in nodes.items()}
    assert by_name["a_linear"] == "a_linear" and by_name["a.linear"] != "a_linear"
    assert nodes[by_name["a.linear"]][0] == "linear" and nodes["a_linear"][0] == "relu"
    assert len(by_name) == len(nodes) and set(by_name) >= set(graph.op_nodes())
