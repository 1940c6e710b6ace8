"""graphc viz: every node and edge of the plan is drawn, DOT parses back to the plan's graph, both layouts work."""
from __future__ import annotations

import html
import json
import re
import shutil

import networkx as nx
import pytest
from paths import MODELS

from bench.timings import residual_source
from graphc.cli import main
from graphc.compiler.plan import compiled_plan
from graphc.program import check_file, check_source
from graphc.viz import viz
from graphc.viz.layout import layered_layout

HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="Graphviz `dot` is not installed (apt-get install graphviz)")

NESTED = """
block inner(x, n) {
  return linear(x, n) -> relu
}
block outer(x, n) {
  a = inner(x, n)
  b = inner(a, n)
  return a + b
}
model nest {
  input x: [8]
  label y: class[3]
  h = outer(x, 8)
  logits = linear(h, 3)
  loss = cross_entropy(logits, y)
}
"""


def graphs():
    return {"lenet5": check_file(MODELS / "lenet5.nn"), "simple_convnet": check_file(MODELS / "simple_convnet.nn"),
            "mlp_gates": check_file(MODELS / "mlp_gates.nn"), "gates": check_file(MODELS / "gates.nn"),
            "nest": check_source(NESTED, "nest.nn")}


@pytest.fixture(scope="module")
def models():
    return graphs()


def plan_graph(graph):
    """The plan's graph, from the Plan alone: each step reads its inputs and parameters."""
    p = compiled_plan(graph)
    G = nx.DiGraph()
    for s in p.forward:
        G.add_node(s.node)
        for i in [*s.inputs, *s.params]:
            G.add_edge(i, s.node)
    return p, G


# ---- a parser for the DOT subset viz writes ----------------------------------------------------

_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<html><)|(?P<arrow>->)|(?P<punct>[{}\[\];,=])'
                    r'|(?P<id>[A-Za-z0-9_.\-]+))', re.S)


def _tokens(text: str):
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return
        m = _TOKEN.match(text, pos)
        assert m, f"cannot read DOT at {text[pos:pos + 40]!r}"
        if m.group("html"):
            depth, end = 0, m.start("html")
            while True:                       # an HTML-like label: balanced angle brackets
                depth += {"<": 1, ">": -1}.get(text[end], 0)
                end += 1
                if depth == 0:
                    break
            yield "html", text[m.start("html") + 1:end - 1]
            pos = end
            continue
        kind = m.lastgroup
        value = m.group(kind)
        if kind == "str":
            value = re.sub(r"\\(.)", lambda c: "\n" if c.group(1) == "n" else c.group(1), value[1:-1])
        yield kind, value
        pos = m.end()


def parse_dot(text: str) -> tuple[nx.DiGraph, dict]:
    """Return (graph with node and edge attributes, {subgraph name: parent subgraph name})."""
    toks = list(_tokens(text))
    G, parents, i = nx.DiGraph(), {}, 0

    def attrs():
        nonlocal i
        out = {}
        if i < len(toks) and toks[i][1] == "[":
            i += 1
            while toks[i][1] != "]":
                key = toks[i][1]
                assert toks[i + 1][1] == "="
                out[key] = toks[i + 2][1]
                i += 3
                if toks[i][1] in (",", ";"):
                    i += 1
            i += 1
        return out

    def body(sub: str):
        nonlocal i
        assert toks[i][1] == "{"
        i += 1
        while toks[i][1] != "}":
            kind, value = toks[i]
            if value == "subgraph":
                name = toks[i + 1][1]
                parents[name] = sub
                i += 2
                body(name)
            elif value in ("graph", "node", "edge") and kind == "id":
                i += 1
                attrs()
            elif i + 1 < len(toks) and toks[i + 1][0] == "arrow":
                u, v = value, toks[i + 2][1]
                i += 3
                a = attrs()
                if G.has_edge(u, v):
                    G.edges[u, v].setdefault("more", []).append(a)
                else:
                    G.add_edge(u, v, **a)
            elif i + 1 < len(toks) and toks[i + 1][1] == "=":
                i += 3                         # a graph attribute: key = value
            else:
                i += 1
                G.add_node(value, subgraph=sub, **attrs())
            if i < len(toks) and toks[i][1] == ";":
                i += 1
        i += 1

    assert toks[0][1] == "digraph"
    i = 2
    body("")
    # The .dot file's node ids are identifiers (for Netron); `graphc_name` holds the graphc name.
    return nx.relabel_nodes(G, {n: a.get("graphc_name", n) for n, a in G.nodes(data=True)}), parents


def _all_edges(G: nx.DiGraph):
    for u, v, a in G.edges(data=True):
        yield u, v, a
        for more in a.get("more", []):
            yield u, v, more


# ---- DOT ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["lenet5", "simple_convnet", "mlp_gates", "gates", "nest"])
def test_dot_parses_back_into_the_plans_graph(models, tmp_path, name):
    graph = models[name]
    out = tmp_path / "g.dot"
    viz(graph, out, backward=True, numbered=True)
    G, _ = parse_dot(out.read_text())
    p, expected = plan_graph(graph)
    forward = nx.DiGraph()
    forward.add_nodes_from(G.nodes)
    forward.add_edges_from((u, v) for u, v, a in _all_edges(G) if a["id"].startswith("edge:"))
    for H in (forward, expected):
        nx.set_node_attributes(H, {n: n for n in H}, "name")
    assert nx.is_isomorphic(forward, expected, node_match=lambda a, b: a["name"] == b["name"])
    # Every backward step: a dashed edge per gradient it makes, labelled with its number (and its rule once).
    grads = {(a["id"]): a for _, _, a in _all_edges(G) if a["id"].startswith("grad:")}
    for b in p.backward:
        made = [t for t, need in zip(b.targets, b.needs) if need]
        labels = [grads[f"grad:{b.index}:{b.node}->{t}"]["label"] for t in made]
        assert all(label.startswith(f"∇{b.index}") for label in labels)
        assert any(" ".join(label.split()) == f"∇{b.index} {b.rule}" for label in labels)
        assert all(grads[f"grad:{b.index}:{b.node}->{t}"]["style"] == "dashed" for t in made)


def test_dot_shows_shapes_attributes_params_and_legend(models, tmp_path):
    out = tmp_path / "lenet.dot"
    viz(models["lenet5"], out)
    text = out.read_text()
    G, _ = parse_dot(text)
    assert G.nodes["c1.conv"]["label"] == "name: c1_conv type: conv"          # Netron's form
    assert G.nodes["c1.conv"]["op"] == "conv filters=6 kernel=5 pad=2"
    assert G.nodes["c1.conv"]["out_shape"] == "[6, 28, 28]"
    assert G.nodes["f5.linear"]["op"] == "linear units=120"
    param = G.nodes["c1.weight"]                                       # a parameter: shape and count
    assert (param["out_shape"], param["elements"]) == ("[6, 1, 5, 5]", "150")
    assert G.edges["c1", "s2"]["label"].strip() == "[6, 28, 28]"        # edges carry tensor shapes
    assert G.nodes["c1.conv"]["fillcolor"] != G.nodes["c1"]["fillcolor"]   # layer vs activation colours
    for family in ("layer", "activation", "loss", "parameter"):
        assert f">{family}</td>" in text                                # the legend
    assert not any(a["id"].startswith("grad:") for _, _, a in _all_edges(G))   # no backward unless asked


def test_plan_numbers_and_buffers(models, tmp_path):
    graph = models["lenet5"]
    out = tmp_path / "plan.dot"
    viz(graph, out, numbered=True)
    G, _ = parse_dot(out.read_text())
    p = compiled_plan(graph)
    for s in p.forward:
        assert G.nodes[s.node]["step"] == str(s.index)
        assert G.nodes[s.node]["buffer"] == (f"buf {s.buffer}" if s.buffer is not None
                                             else f"view of {s.inputs[0]} (no buffer)")
    assert len({s.buffer for s in p.forward if s.buffer is not None}) < len(p.forward)   # reuse is visible


def test_fan_in_is_marked(models, tmp_path):
    out = tmp_path / "nest.dot"
    viz(models["nest"], out, backward=True)
    G, _ = parse_dot(out.read_text())
    p = compiled_plan(models["nest"])
    summed = [t for t, n in p.fan_in.items() if n > 1]
    assert summed
    for t in summed:
        assert G.nodes[t]["note"] == f"Σ of {p.fan_in[t]} gradients"


def test_blocks_are_nested_clusters(models, tmp_path):
    out = tmp_path / "nest.dot"
    viz(models["nest"], out)
    G, parents = parse_dot(out.read_text())
    assert G.nodes["h.a.linear"]["subgraph"] == "cluster_h.a"
    assert parents["cluster_h.a"] == "cluster_h" and parents["cluster_h"] == ""
    assert G.nodes["h"]["subgraph"] == "cluster_h"           # the add of the outer block
    assert G.nodes["logits"]["subgraph"] == ""
    out = tmp_path / "simple.dot"
    viz(models["simple_convnet"], out)
    G, _ = parse_dot(out.read_text())
    assert G.nodes["h.conv_relu_pool.conv"]["subgraph"] == "cluster_h.conv_relu_pool"


# ---- pictures, on both layouts -------------------------------------------------------------------

def _engine(request, monkeypatch):
    if request.param == "dot":
        if not HAS_DOT:
            pytest.skip("Graphviz `dot` is not installed (apt-get install graphviz)")
    else:
        monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)   # as on a machine without Graphviz
    return request.param


@pytest.fixture(params=["dot", "graphc"])
def engine(request, monkeypatch):
    return _engine(request, monkeypatch)


def _svg_ids(text: str) -> set[str]:
    return {html.unescape(m) for m in re.findall(r'id="([^"]*)"', text)}


def _svg_text(text: str) -> str:
    words = [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", text)]
    return " ".join(" ".join(words).split())


def test_svg_has_every_node_and_edge(models, tmp_path, engine):
    for name in ("lenet5", "nest"):
        graph = models[name]
        out = tmp_path / f"{name}.svg"
        used = viz(graph, out, backward=True, numbered=True)
        assert used == ("Graphviz dot" if engine == "dot" else "graphc")
        ids = _svg_ids(out.read_text())
        p, expected = plan_graph(graph)
        for n in expected:
            assert f"node:{n}" in ids
        for u, v in expected.edges:
            assert f"edge:{u}->{v}" in ids
        for b in p.backward:
            for t, need in zip(b.targets, b.needs):
                if need:
                    assert f"grad:{b.index}:{b.node}->{t}" in ids
        text = _svg_text(out.read_text())
        for b in p.backward:
            assert f"∇{b.index} {b.rule}" in text, b.rule
        for s in p.forward:
            if s.buffer is not None:
                assert f"buf {s.buffer}" in text


@pytest.mark.parametrize("ext, magic", [(".png", b"\x89PNG\r\n\x1a\n"), (".pdf", b"%PDF")])
def test_png_and_pdf_are_valid(models, tmp_path, engine, ext, magic):
    out = tmp_path / f"lenet{ext}"
    viz(models["lenet5"], out, backward=True)
    data = out.read_bytes()
    assert data.startswith(magic)
    assert len(data) > 10_000


def test_two_hundred_nodes_render(tmp_path, monkeypatch):
    # How long this takes is measured in bench/, not asserted here.
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    graph = check_source(residual_source(25), "deep.nn")
    p, expected = plan_graph(graph)
    assert expected.number_of_nodes() >= 200
    viz(graph, tmp_path / "deep.svg")
    ids = _svg_ids((tmp_path / "deep.svg").read_text())
    assert all(f"node:{n}" in ids for n in expected)
    viz(graph, tmp_path / "deep.png")
    assert (tmp_path / "deep.png").read_bytes()[:4] == b"\x89PNG"


# ---- the layout ----------------------------------------------------------------------------------

def test_layout_layers_boxes_without_overlap():
    graph = check_source(residual_source(4), "deep.nn")
    _, G = plan_graph(graph)
    sizes = {n: (1.0 if "." not in n else 0.6, 0.4) for n in G}
    side = {n: next(iter(G.successors(n))) for n in G if G.in_degree(n) == 0 and n != "x" and G.out_degree(n) == 1}
    lay = layered_layout(sizes, list(G.edges), side=side, groups={n: ("r0",) for n in G if n.startswith("r0")})
    for u, v in G.edges:
        if u in side:
            assert abs(lay.pos[u][1] - lay.pos[v][1]) < 0.5 and lay.pos[u][0] > lay.pos[v][0]   # beside its op
        else:
            assert lay.pos[u][1] < lay.pos[v][1]                    # data flows down
    boxes = [(lay.pos[n][0] - w / 2, lay.pos[n][1] - h / 2, lay.pos[n][0] + w / 2, lay.pos[n][1] + h / 2)
             for n, (w, h) in sizes.items()]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    x0, y0, x1, y1, _ = lay.boxes["r0"]
    for n in G:
        inside = x0 <= lay.pos[n][0] <= x1 and y0 <= lay.pos[n][1] <= y1
        assert inside == n.startswith("r0"), n


# ---- HTML (the browser test is in test_viz_browser.py) -------------------------------------------

def test_html_is_one_self_contained_file(models, tmp_path):
    out = tmp_path / "lenet.html"
    viz(models["lenet5"], out, backward=True)
    text = out.read_text()
    assert not re.search(r"""(src|href)=["']?https?:""", text)
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text)
    data = json.loads(re.search(r'<script type="application/json" id="graphc-data">(.*?)</script>', text, re.S)
                      .group(1))
    p, expected = plan_graph(models["lenet5"])
    for n in expected:
        assert f'data-id="{n}"' in text
    conv = data["c3.conv"]
    assert conv["shape"] == "[16, 10, 10]" and conv["op"] == "conv"
    assert conv["params"] == [{"name": "c3.weight", "shape": "[16, 6, 5, 5]", "count": 2400, "init": conv["params"][0]["init"]},
                              {"name": "c3.bias", "shape": "[16]", "count": 16, "init": conv["params"][1]["init"]}]
    assert conv["backward"]["rule"].startswith("fused conv")
    assert conv["source"]["file"].endswith("lenet5.nn") and "conv(s2, 16, kernel=5)" in conv["source"]["text"]
    assert conv["flops"] == models["lenet5"].node("c3.conv").flops > 0


def test_html_survives_script_markup_in_a_comment(tmp_path):
    # The source line (with its comment) travels in the page's JSON; `<!--<script>` there
    # would put the HTML parser in a state that swallows the rest of the page.
    hostile = "<!--<script></script></script><b>&amp;"
    graph = check_source(f"model m {{\n  input x: [2]\n  output y = relu(x)  # {hostile}\n}}\n", "m.nn")
    out = tmp_path / "m.html"
    viz(graph, out)
    text = out.read_text()
    blob = re.search(r'<script type="application/json" id="graphc-data">(.*?)</script>', text, re.S).group(1)
    assert "<" not in blob and ">" not in blob and "&" not in blob
    assert hostile in json.loads(blob)["y"]["source"]["text"]
    assert text.count("<!--") == 0 and text.rstrip().endswith("</html>")


def test_compile_emit_dot_is_the_viz_dot(models, tmp_path, capsys):
    # One DOT writer: `compile --emit dot` prints what `viz -o x.dot --backward --plan` writes.
    out = tmp_path / "lenet.dot"
    assert main(["viz", str(MODELS / "lenet5.nn"), "-o", str(out), "--backward", "--plan"]) == 0
    capsys.readouterr()
    assert main(["compile", str(MODELS / "lenet5.nn"), "--emit", "dot"]) == 0
    printed = capsys.readouterr().out
    assert printed.rstrip("\n") == out.read_text().rstrip("\n")
    assert "\\\\n" not in printed      # no literal backslash-n in a label


# ---- the command line ----------------------------------------------------------------------------

def test_cli_viz_writes_each_format(tmp_path, capsys):
    for ext in (".dot", ".html", ".svg"):
        out = tmp_path / f"lenet{ext}"
        assert main(["viz", str(MODELS / "lenet5.nn"), "-o", str(out), "--backward", "--plan"]) == 0
        assert out.stat().st_size > 1000
    assert "wrote" in capsys.readouterr().out


def test_cli_viz_rejects_unknown_format_and_missing_directory(tmp_path, capsys):
    assert main(["viz", str(MODELS / "lenet5.nn"), "-o", str(tmp_path / "g.jpg")]) == 1
    err = capsys.readouterr().err
    assert "unknown format `.jpg`" in err
    assert main(["viz", str(MODELS / "lenet5.nn"), "-o", str(tmp_path / "no" / "g.svg")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["viz", str(MODELS / "lenet5.nn")]) == 2         # -o is required
