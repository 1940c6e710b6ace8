"""The language works: DESIGN.md's programs, the example models, names, numbers, layout, the CLI.

Every program here must check without errors; the DESIGN.md programs (which
must work exactly as written) without warnings too. Parameter and node names
follow the scheme documented in graphc/build.py and the README.
"""
from __future__ import annotations

import json
import re

import pytest
from paths import DESIGN_MD, MODEL_FILES, MODELS

from graphc.cli import main
from graphc.diagnostics import GraphcError
from graphc.language.fmt import format_source
from graphc.program import check_file, check_source
from graphc.tools.summary import render_summary, summary_json

# DESIGN.md, "The language, by example": these must work exactly as written.
DESIGN_PROGRAMS = {
    "gates": """\
# models/gates.nn — the circuit f(x, y, z) = (x + y) * z, one gate at a time
model gates {
  input x: []
  input y: []
  input z: []
  q = x + y            # add gate
  output f = q * z     # mul gate
}
""",
    "xor": """\
# models/xor.nn — no single perceptron separates XOR; one hidden layer does
model xor {
  input  x: [2]
  label  y: class[2]
  h = linear(x, 4) -> tanh
  logits = linear(h, 2)
  loss = cross_entropy(logits, y)
  output p = softmax(logits)
}
train {
  data      = xor
  batch     = 4
  epochs    = 2000
  optimizer = sgd(lr=0.5)
  init      = xavier
  seed      = 0
}
""",
    "mlp_gates": """\
# models/mlp_gates.nn — an MLP written with raw gates and explicit parameters
model mlp_gates {
  input x: [784]
  label t: class[10]
  param W1: [784, 100] init=he
  param b1: [100]      init=zeros
  param W2: [100, 10]  init=xavier
  param b2: [10]       init=zeros
  h = max(x @ W1 + b1, 0)          # ReLU is a max gate
  logits = h @ W2 + b2
  loss = cross_entropy(logits, t)
}
train { data = mnist; batch = 100; epochs = 5; optimizer = sgd(lr=0.1) }
""",
    "lenet5": """\
# models/lenet5.nn
model lenet5 {
  input image: [1, 28, 28]
  label digit: class[10]
  c1 = conv(image, 6, kernel=5, pad=2) -> relu
  s2 = maxpool(c1, 2)
  c3 = conv(s2, 16, kernel=5) -> relu
  s4 = maxpool(c3, 2)
  f5 = flatten(s4) -> linear(120) -> relu
  f6 = linear(f5, 84) -> relu
  logits = linear(f6, 10)
  loss = cross_entropy(logits, digit)
  output probs = softmax(logits)
}
train {
  data      = mnist
  batch     = 100
  epochs    = 5
  optimizer = sgd(lr=0.01, momentum=0.9)
  init      = he
  seed      = 1
}
""",
    "simple_convnet": """\
# models/simple_convnet.nn — a reusable block, then the book's SimpleConvNet
block conv_relu_pool(x, filters, k=5, pad=0) {
  return conv(x, filters, kernel=k, pad=pad) -> relu -> maxpool(2)
}
model simple_convnet {
  input image: [1, 28, 28]
  label digit: class[10]
  h = conv_relu_pool(image, 30) -> flatten -> linear(100) -> relu
  logits = linear(h, 10)
  loss = cross_entropy(logits, digit)
  output probs = softmax(logits)
}
train { data = mnist; batch = 100; epochs = 20; optimizer = adam(lr=0.001); init = he }
""",
}


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def params_of(graph) -> dict[str, tuple[int, ...]]:
    return {name: info.shape for name, info in graph.params.items()}


# ---- the programs that must work -----------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(DESIGN_PROGRAMS))
def test_design_program_checks_clean(name):
    graph = check_source(DESIGN_PROGRAMS[name], f"{name}.nn")
    assert graph.model == name
    assert graph.warnings == [], "\n".join(w.render() for w in graph.warnings)
    assert all(graph.node(n).type is not None for n in graph.nx.nodes)


@pytest.mark.skipif(not DESIGN_MD.exists(), reason="DESIGN.md is not next to this checkout")
def test_design_programs_are_the_ones_in_design_md():
    blocks = re.findall(r"```\n(.*?)```", DESIGN_MD.read_text(), re.S)
    written = {m.group(1): b for b in blocks if (m := re.search(r"^# models/(\w+)\.nn", b, re.M))}
    assert set(written) == set(DESIGN_PROGRAMS)
    for name, text in written.items():
        assert _squeeze(text) == _squeeze(DESIGN_PROGRAMS[name]), name


@pytest.mark.parametrize("path", MODEL_FILES, ids=[p.name for p in MODEL_FILES])
def test_example_model_checks_clean(path):
    graph = check_file(path)
    assert graph.model
    assert all(graph.node(n).type is not None for n in graph.nx.nodes)
    assert [w for w in graph.warnings if w.level == "error"] == []


def test_every_design_program_has_its_model_file():
    # The model file is the DESIGN.md program in canonical layout (`graphc fmt`), byte for byte.
    for name, text in DESIGN_PROGRAMS.items():
        path = MODELS / f"{name}.nn"
        assert path.exists(), path
        assert path.read_text() == format_source(text), f"models/{name}.nn differs from DESIGN.md"


# ---- LeNet-5 -------------------------------------------------------------------------------------

def test_lenet5_has_61706_parameters():
    graph = check_file(MODELS / "lenet5.nn")
    assert summary_json(graph)["total_params"] == 61_706
    assert sum(_count(s) for s in params_of(graph).values()) == 61_706


def _count(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def test_lenet5_parameter_names_and_layouts():
    params = params_of(check_source(DESIGN_PROGRAMS["lenet5"], "lenet5.nn"))
    assert params["c1.weight"] == (6, 1, 5, 5)       # conv weight [out, in, kh, kw]
    assert params["c1.bias"] == (6,)
    assert params["c3.weight"] == (16, 6, 5, 5)
    assert params["f5.weight"] == (400, 120)         # linear weight [in, out]
    assert params["f5.bias"] == (120,)
    assert params["f6.weight"] == (120, 84)
    assert params["logits.weight"] == (84, 10)
    assert set(params) == {f"{n}.{r}" for n in ("c1", "c3", "f5", "f6", "logits") for r in ("weight", "bias")}


def test_lenet5_node_shapes():
    graph = check_source(DESIGN_PROGRAMS["lenet5"], "lenet5.nn")
    shapes = {n: graph.type_of(n).shape for n in graph.nx.nodes}
    assert shapes["c1"] == (6, 28, 28) and shapes["s2"] == (6, 14, 14)
    assert shapes["c3"] == (16, 10, 10) and shapes["s4"] == (16, 5, 5)
    assert shapes["f5.flatten"] == (400,) and shapes["f5"] == (120,)
    assert shapes["logits"] == (10,) and shapes["probs"] == (10,) and shapes["loss"] == ()
    assert graph.loss == "loss" and graph.outputs == {"probs": "probs"}


def test_lenet5_train_section():
    train = check_source(DESIGN_PROGRAMS["lenet5"], "lenet5.nn").train
    values = {k: s.value for k, s in train.items()}
    assert values["data"] == "mnist" and values["batch"] == 100 and values["epochs"] == 5
    assert values["optimizer"] == ("sgd", {"lr": 0.01, "momentum": 0.9})
    assert values["init"] == ("he", {}) and values["seed"] == 1


# ---- naming: nodes and parameters ---------------------------------------------------------------

def test_simple_convnet_block_parameters_are_prefixed_by_the_using_node():
    graph = check_source(DESIGN_PROGRAMS["simple_convnet"], "simple_convnet.nn")
    params = params_of(graph)
    # `h` holds two layers (the block and linear), so each is owned by its own node name.
    assert params["h.conv_relu_pool.weight"] == (30, 1, 5, 5)
    assert params["h.conv_relu_pool.bias"] == (30,)
    assert params["h.linear.weight"] == (30 * 12 * 12, 100)
    assert params["logits.weight"] == (100, 10)
    for node in ("h.conv_relu_pool.conv", "h.conv_relu_pool.relu", "h.conv_relu_pool", "h.flatten",
                 "h.linear", "h"):
        assert node in graph.nx, node
    assert graph.type_of("h.conv_relu_pool").shape == (30, 12, 12)


def test_a_statement_with_one_layer_owns_its_parameters():
    graph = check_source("model m {\n  input x: [1, 8, 8]\n  c1 = conv(x, 4, kernel=3) -> relu\n  output o = c1\n}\n")
    assert params_of(graph) == {"c1.weight": (4, 1, 3, 3), "c1.bias": (4,)}
    assert {"c1.conv", "c1"} <= set(graph.nx.nodes)


def test_a_statement_with_two_layers_numbers_them():
    graph = check_source("model m {\n  input x: [4]\n  h = linear(x, 8) -> relu -> linear(4)\n  output o = h\n}\n")
    assert params_of(graph) == {"h.linear.weight": (4, 8), "h.linear.bias": (8,),
                                "h.linear_2.weight": (8, 4), "h.linear_2.bias": (4,)}
    assert [n for n in graph.nx.nodes if graph.node(n).kind == "op"] == ["h.linear", "h.relu", "h"]


def test_a_block_used_alone_names_its_nodes_after_the_statement():
    source = DESIGN_PROGRAMS["simple_convnet"].split("model simple_convnet")[0] + (
        "model m {\n  input image: [1, 28, 28]\n  c = conv_relu_pool(image, 30)\n  output o = c\n}\n")
    graph = check_source(source)
    assert params_of(graph) == {"c.weight": (30, 1, 5, 5), "c.bias": (30,)}
    assert [n for n in graph.nx.nodes if graph.node(n).kind == "op"] == ["c.conv", "c.relu", "c"]


def test_each_use_of_a_block_gets_its_own_parameters():
    source = ("block dense(x, n) {\n  return linear(x, n) -> relu\n}\n"
              "model m {\n  input x: [4]\n  a = dense(x, 8)\n  b = dense(a, 8)\n  output o = b\n}\n")
    assert params_of(check_source(source)) == {"a.weight": (4, 8), "a.bias": (8,),
                                               "b.weight": (8, 8), "b.bias": (8,)}


def test_repeat_creates_independent_parameter_sets():
    source = ("block stage(x, n) {\n  return linear(x, n) -> relu\n}\n"
              "model m {\n  input x: [4]\n  h = x -> repeat 3 stage(16)\n  output o = h\n}\n")
    graph = check_source(source)
    params = params_of(graph)
    assert params == {"h.stage.0.weight": (4, 16), "h.stage.0.bias": (16,),
                      "h.stage.1.weight": (16, 16), "h.stage.1.bias": (16,),
                      "h.stage.2.weight": (16, 16), "h.stage.2.bias": (16,)}
    # three copies in a row: each reads the one before
    assert graph.node("h.stage.1.linear").inputs == ("h.stage.0",)
    assert graph.node("h.stage.2.linear").inputs == ("h.stage.1",)
    assert "h" in graph.nx and graph.type_of("h").shape == (16,)


def test_repeat_followed_by_more_layers():
    source = ("block stage(x, n) {\n  return linear(x, n) -> relu\n}\n"
              "model m {\n  input x: [4]\n  h = x -> repeat 2 stage(16) -> linear(2)\n  output o = h\n}\n")
    params = params_of(check_source(source))
    assert set(params) == {"h.stage.0.weight", "h.stage.0.bias", "h.stage.1.weight", "h.stage.1.bias",
                           "h.linear.weight", "h.linear.bias"}


def test_repeat_of_an_op_and_a_count_from_a_block_argument():
    source = ("block tower(x, depth) {\n  return x -> repeat depth linear(8)\n}\n"
              "model m {\n  input x: [4]\n  output o = tower(x, 3)\n}\n")
    params = params_of(check_source(source))
    assert params == {"o.linear.0.weight": (4, 8), "o.linear.0.bias": (8,),
                      "o.linear.1.weight": (8, 8), "o.linear.1.bias": (8,),
                      "o.linear.2.weight": (8, 8), "o.linear.2.bias": (8,)}


def test_block_defaults_and_keyword_arguments():
    source = DESIGN_PROGRAMS["simple_convnet"].split("model simple_convnet")[0] + (
        "model m {\n  input image: [1, 28, 28]\n  c = conv_relu_pool(image, 8, k=3, pad=1)\n  output o = c\n}\n")
    graph = check_source(source)
    assert params_of(graph)["c.weight"] == (8, 1, 3, 3)
    assert graph.type_of("c").shape == (8, 14, 14)
    assert graph.node("c.conv").attrs["pad"] == (1, 1)


# ---- include ---------------------------------------------------------------------------------------

def test_include_brings_in_blocks(tmp_path):
    (tmp_path / "blocks.nn").write_text("# shared blocks\nblock dense(x, n) {\n  return linear(x, n) -> relu\n}\n")
    main_file = tmp_path / "main.nn"
    main_file.write_text('include "blocks.nn"\nmodel m {\n  input x: [4]\n  output o = dense(x, 3)\n}\n')
    graph = check_file(main_file)
    assert params_of(graph) == {"o.weight": (4, 3), "o.bias": (3,)}


def test_include_from_a_subfolder_and_a_diamond(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "base.nn").write_text("block act(x) {\n  return relu(x)\n}\n")
    (lib / "dense.nn").write_text('include "base.nn"\nblock dense(x, n) {\n  return linear(x, n) -> act\n}\n')
    (tmp_path / "main.nn").write_text('include "lib/dense.nn"\ninclude "lib/base.nn"\n'
                                      "model m {\n  input x: [4]\n  output o = dense(x, 3) -> act\n}\n")
    graph = check_file(tmp_path / "main.nn")   # base.nn is reached twice and read once
    # `o` holds two blocks, so `dense` owns `o.dense.*`; inside it, `linear -> act` holds two again.
    assert set(params_of(graph)) == {"o.dense.linear.weight", "o.dense.linear.bias"}
    assert [n for n in graph.nx.nodes if graph.node(n).kind == "op"] == ["o.dense.linear", "o.dense", "o"]


# ---- layout, comments and numbers ------------------------------------------------------------------------

NUMBERS = """\
model m {
  input x: [4]; label y: class[3]   # two statements on one line
  a = leaky_relu(x, slope=1e-3)
  b = dropout(a, p=.5)
  c = elu(b, alpha=5.)
  d = linear(c, 1_000)
  e = linear(d, 0x10)
  f = linear(e, 0b11, bias=false)
  g = c * 2.5E+1 + 0o17 - -2
  loss = cross_entropy(f, y)
  output o = g
}
"""


def test_numbers_in_every_notation():
    graph = check_source(NUMBERS)
    attrs = {n: graph.node(n).attrs for n in graph.nx.nodes if graph.node(n).kind == "op"}
    assert attrs["a"]["slope"] == pytest.approx(0.001)
    assert attrs["b"]["p"] == 0.5
    assert attrs["c"]["alpha"] == 5.0
    assert attrs["d"]["units"] == 1000 and params_of(graph)["d.weight"] == (4, 1000)
    assert attrs["e"]["units"] == 16 and params_of(graph)["e.weight"] == (1000, 16)
    assert attrs["f"]["units"] == 3 and attrs["f"]["bias"] is False and "f.bias" not in graph.params
    consts = sorted(graph.node(n).value for n in graph.nx.nodes if graph.node(n).kind == "const")
    assert consts == [-2, 15, 25.0]


def test_separators_comments_and_blank_lines():
    source = ("# a comment before anything\n\n"
              "model m {   # a comment after a brace\n"
              "\n"
              "  input x: [2] ; input z: [2];;\n"
              "  # a comment on its own line\n"
              "  output o = x + z   # and after a statement\n"
              "}\n\n# trailing comment")
    graph = check_source(source)
    assert graph.inputs == ["x", "z"] and graph.outputs == {"o": "o"}


def test_a_model_on_one_line():
    graph = check_source("model m { input x: [2]; output y = linear(x, 1) }")
    assert params_of(graph) == {"y.weight": (2, 1), "y.bias": (1,)}


def test_multi_line_calls_shapes_and_continuations():
    source = """\
block wide(
    x,
    n = 3,
) {
  return linear(
    x,
    n,          # a comment inside the call
  )
}
model m {
  input x: [
    1, 8, 8
  ]
  c = conv(x, 4,
           kernel=3,
           pad=1)
  h = flatten(c) \\
      -> wide(n=5)
  output o = h
}
"""
    graph = check_source(source)
    assert graph.type_of("c").shape == (4, 8, 8)
    assert params_of(graph) == {"c.weight": (4, 1, 3, 3), "c.bias": (4,), "h.weight": (256, 5), "h.bias": (5,)}


def test_windows_line_endings():
    graph = check_source(DESIGN_PROGRAMS["lenet5"].replace("\n", "\r\n"), "lenet5.nn")
    assert summary_json(graph)["total_params"] == 61_706


def test_arithmetic_on_constants_is_a_constant():
    # `pad=(k - 1) / 2` used to become a graph node and fail as "must be a constant, not a tensor".
    source = ("block same(x, filters, k = 3) {\n  return conv(x, filters, kernel=k, pad=(k - 1) / 2)\n}\n"
              "model m {\n  input x: [1, 8, 8]\n  input v: [2 ** 3 / 2]\n  a = same(x, 4, k=5)\n"
              "  output o = a\n  output w = v * (1 + 2 * 3)\n}\n")
    graph = check_source(source)
    assert graph.node("a").attrs["pad"] == (2, 2) and graph.type_of("a").shape == (4, 8, 8)
    assert graph.type_of("v").shape == (4,)
    assert [graph.node(n).value for n in graph.nx.nodes if graph.node(n).kind == "const"] == [7]


def test_a_scalar_model_and_negative_numbers():
    graph = check_source("model m {\n  input x: []\n  output y = -x * -2 + 3 ** 2 / 4\n}\n")
    assert graph.type_of("y").shape == ()


# ---- several models ------------------------------------------------------------------------------

TWO_MODELS = """\
model small {
  input x: [2]
  label y: class[2]
  loss = cross_entropy(linear(x, 2), y)
}
model big {
  input x: [2]
  label y: class[2]
  h = linear(x, 16) -> relu
  loss = cross_entropy(linear(h, 2), y)
}
train small { batch = 4; epochs = 10 }
train big {
  batch = 8
  optimizer = adam(lr=0.001)
}
"""


def test_train_sections_name_their_model():
    small = check_source(TWO_MODELS, "two.nn", "small")
    big = check_source(TWO_MODELS, "two.nn", "big")
    assert small.model == "small" and big.model == "big"
    assert small.train["batch"].value == 4 and small.train["epochs"].value == 10
    assert big.train["batch"].value == 8 and big.train["optimizer"].value == ("adam", {"lr": 0.001})
    assert set(params_of(big)) == {"h.weight", "h.bias", "loss.weight", "loss.bias"}
    with pytest.raises(GraphcError, match="defines several models"):
        check_source(TWO_MODELS, "two.nn")


def test_cli_model_choice(tmp_path, capsys):
    path = tmp_path / "two.nn"
    path.write_text(TWO_MODELS)
    assert main(["check", str(path), "--model", "big"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("model big:")
    # `check` checks every model of the file; a command that compiles one model asks which.
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("model small:") and "\n\nmodel big:" in out
    assert main(["compile", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:6:7: error: {path} defines several models: small, big")
    assert "--model" in err


# ---- the command line ------------------------------------------------------------------------------

ALL_FILES = MODEL_FILES


@pytest.mark.parametrize("path", ALL_FILES, ids=[p.name for p in ALL_FILES])
def test_cli_check_prints_a_table(path, capsys):
    assert main(["check", str(path)]) == 0
    captured = capsys.readouterr()
    graph = check_file(path)
    lines = captured.out.splitlines()
    assert lines[0].startswith(f"model {graph.model}:")
    assert lines[1].split() == ["node", "op", "shape", "params", "FLOPs"]
    total = lines[-1].split()
    assert total[0] == "total"
    assert int(total[1].replace(",", "")) == summary_json(graph)["total_params"]
    assert captured.out.rstrip("\n") == render_summary(graph)


@pytest.mark.parametrize("path", ALL_FILES, ids=[p.name for p in ALL_FILES])
def test_cli_check_json(path, capsys):
    assert main(["check", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    expected = summary_json(check_file(path))
    assert data["total_params"] == expected["total_params"]
    assert data["total_flops"] == expected["total_flops"]
    assert data["model"] == expected["model"]
    assert [row["node"] for row in data["nodes"]] == [row["node"] for row in expected["nodes"]]


def test_cli_lenet5_json_totals(capsys):
    assert main(["check", str(MODELS / "lenet5.nn"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total_params"] == 61_706


def test_cli_design_programs(tmp_path, capsys):
    for name, text in DESIGN_PROGRAMS.items():
        path = tmp_path / f"{name}.nn"
        path.write_text(text)
        assert main(["check", str(path)]) == 0, name
        captured = capsys.readouterr()
        assert captured.err == "", captured.err      # no warnings
        assert captured.out.startswith(f"model {name}:")


BROKEN = {
    "syntax": ("model m {\n  input x: [2]\n  output o = linear(x, 4\n}\n", 4, 1),
    "unknown-op": ("model m {\n  input x: [2]\n  output o = lineer(x, 4)\n}\n", 3, 14),
    "shape": ("model m {\n  input x: [6, 4, 4]\n  output o = conv(x, 16, kernel=5, stride=2)\n}\n", 3, 14),
    "train": ("model m {\n  input x: []\n  loss = x * x\n}\ntrain { batch = 0 }\n", 5, 17),
    "deep": ("model m {\n  input x: [2]\n  output o = " + "-" * 3000 + "x\n}\n", 3, 3),
    "huge": ("model m {\n  input x: [4]\n  output o = linear(x, 99999999999999999999)\n}\n", 3, 14),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_cli_reports_errors_without_a_traceback(kind, tmp_path, capsys):
    text, line, col = BROKEN[kind]
    path = tmp_path / "bad.nn"
    path.write_text(text)
    assert main(["check", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"{path}:{line}:{col}: error: ")
    assert re.search(r"^ +\| +\^", captured.err, re.M), captured.err   # a caret line


def test_cli_warnings_go_to_stderr_and_do_not_fail(tmp_path, capsys):
    path = tmp_path / "warn.nn"
    path.write_text("model m {\n  input x: [2]\n  h = linear(x, 3)\n  output o = relu(x)\n}\n")
    assert main(["check", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith(f"{path}:3:3: warning: definition `h` is never used")
    assert captured.out.startswith("model m:")


def test_cli_missing_file(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope.nn")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("graphc: error: cannot read")


def test_cli_bad_usage_is_status_2(capsys):
    assert main(["check"]) == 2
    assert main(["frobnicate"]) == 2
