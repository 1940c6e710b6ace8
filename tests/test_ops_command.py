"""`graphc ops` and `graphc ops NAME`: signatures in the language's syntax, one op's definition."""
from __future__ import annotations

import re

import pytest

from graphc.cli import main
from graphc.ops import all_ops, literal


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main(["ops", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_list_writes_defaults_in_the_language_syntax(capsys):
    status, out, _ = run(capsys)
    assert status == 0
    lines = out.splitlines()
    assert len(lines) == len(all_ops())
    # Python spellings never appear: no True/False/None, no tuples.
    for python in ("True", "False", "None", "(3, 3)", "(0, 0)", "(2, 2)"):
        assert python not in out, python
    assert "conv(x, filters, kernel=[3, 3], stride=[1, 1], pad=[0, 0], bias=true)" in out
    assert re.search(r"\bmaxpool\(x, size=\[2, 2\], stride=none, pad=\[0, 0\]", out)
    assert "slice(x, axis, start, end=none)" in out
    assert "pad(x, pads, value=0.0)" in out


def test_list_shows_variadic_ops_with_an_ellipsis(capsys):
    _, out, _ = run(capsys)
    assert "concat(x, ..., axis=0)" in out
    for op in all_ops():
        if op.variadic:
            assert f"{op.name}({', '.join(op.inputs)}, ...," in out or f"{op.name}({', '.join(op.inputs)}, ...)" in out


def test_every_op_has_a_shape_rule_in_words():
    missing = [op.name for op in all_ops() if not op.shape_doc.strip()]
    assert not missing, f"give these ops a shape_doc: {missing}"


@pytest.mark.parametrize("op", all_ops(), ids=lambda op: op.name)
def test_describe_every_op(capsys, op):
    status, out, err = run(capsys, op.name)
    assert status == 0 and not err
    first = out.splitlines()[0]
    assert first.startswith(f"{op.name}(") and f"({op.family})" in first
    flat = " ".join(out.split())
    assert " ".join(op.doc.split()) in flat          # the definition, with the PyTorch function it follows
    assert f"shape: {op.shape_doc}" in flat
    assert f"gradient: {op.grad_rule}" in flat
    for a in op.attrs:
        assert re.search(rf"^  {a.name} +{a.kind}, ", out, re.M), a.name
        if not a.required:
            assert f"default {literal(a.default)}" in out


def test_describe_names_the_torch_function_the_tie_rule_and_parameters(capsys):
    _, out, _ = run(capsys, "global_maxpool")
    flat = " ".join(out.split())
    assert "adaptive_max_pool2d" in flat and "Tie rule: the whole gradient goes to the first maximum" in flat
    assert "shape: [C, H, W] -> [C]" in flat
    _, out, _ = run(capsys, "affine")           # another name of linear
    assert out.startswith("linear(x, units, bias=true)")
    assert "parameter:     weight, initialised by" in out and "bias (optional)" in out
    assert "other names:   affine" in out
    _, out, _ = run(capsys, "concat")
    assert "tensor, repeated: one or more" in out


def test_hinge_says_it_divides_by_the_number_of_classes(capsys):
    _, out, _ = run(capsys, "hinge")
    flat = " ".join(out.split())
    assert "divided by the number of classes K" in flat and "MultiMarginLoss" in flat


@pytest.mark.parametrize("name,says", [
    ("convv", "did you mean `conv`?"),
    ("split", "a split is several slices: a = slice(x, 0, 0, 3) and b = slice(x, 0, 3)"),
    ("nothing_like_it", "`graphc ops` lists them all"),
])
def test_unknown_op_is_an_error_with_help(capsys, name, says):
    status, out, err = run(capsys, name)
    assert status == 1 and not out
    assert f"no op called `{name}`" in err and says in err
