"""Diagnostics: every kind of mistake a user can make gets one clear, well-placed message.

A table of broken programs, each with where the error must point (line and
column of the first diagnostic, or of the one whose message matches), a phrase
its message must contain, and optionally a phrase of its help and the exact
source text under the caret. Then the cases that need more than one file or
look at more than one diagnostic: includes, several independent errors, an
error in a block used twice, warnings, and DESIGN.md's rendered example.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from paths import DESIGN_MD

from graphc.diagnostics import Diagnostic, GraphcError
from graphc.program import check_file, check_source


@dataclass(frozen=True)
class Case:
    """One broken program and what its diagnostic must say."""

    id: str
    source: str
    line: int
    col: int
    message: str                 # a phrase of the message
    help: str | None = None      # a phrase of the help line
    caret: str | None = None     # the exact source text the span covers
    note_line: int | None = None  # the line a note (block call site, first definition) points at
    model: str | None = None     # --model


def M(*lines: str, name: str = "m") -> str:
    """Return a model whose body is `lines` (line 1 is `model m {`, the body starts on line 2)."""
    return "\n".join([f"model {name} {{", *(f"  {line}" for line in lines), "}"]) + "\n"


# A working model with a loss, for the train-section cases: 5 lines, `train` starts on line 6.
TRAINABLE = M("input x: [2]", "label y: class[2]", "loss = cross_entropy(linear(x, 2), y)")
BLOCK = "block b(x, n) {\n  return linear(x, n)\n}\n"   # 3 lines; a model after it starts on line 4

CASES = [
    # ---- syntax errors ----------------------------------------------------------------
    Case("syntax-missing-rparen", M("input x: [2]", "output h = linear(x, 4"), 4, 1,
         "unexpected `}`", "expected `)`", "}", note_line=3),
    Case("syntax-missing-rbrace", "model m {\n  input x: [2]\n  output o = relu(x)\n", 3, 21,
         "unexpected end of file", "`}`", note_line=1),
    Case("syntax-missing-rbrace-before-next-model",
         "model m {\n  input x: [2]\n  output o = relu(x)\nmodel n {\n  input x: [2]\n}\n", 4, 1,
         "unexpected `model`", None, "model", note_line=1),
    Case("syntax-stray-dollar", M("input x: [2]", "h = linear(x, 4) $ 3"), 3, 20,
         "unexpected character `$`", "`->`", "$"),
    Case("syntax-stray-backtick", M("input x: [2]", "output o = `x"), 3, 14,
         "unexpected character", None, "`"),
    Case("syntax-missing-equals", M("input x: [2]", "h linear(x, 4)"), 3, 5,
         "unexpected name `linear`", "expected `=`", "linear"),
    Case("syntax-missing-colon", M("input x [2]"), 2, 11, "unexpected `[`", "expected `:`", "["),
    Case("syntax-keyword-block-in-model", M("input x: [2]", "block b(x) { return x }"), 3, 3,
         "unexpected `block`", "`}`", "block"),
    Case("syntax-keyword-train-in-model", M("train { batch = 1 }"), 2, 3, "unexpected `train`", None, "train"),
    Case("syntax-two-statements-on-a-line", M("input x: [2] output o = relu(x)"), 2, 16,
         "unexpected name `output`", "new line", "output"),
    Case("syntax-keyword-as-name", M("input x: [2]", "output = relu(x)"), 3, 10,
         "unexpected `=`", "expected a name", "="),
    Case("syntax-eof-inside-call", "model m {\n  input x: [2]\n  output o = relu(x,", 3, 21,
         "unexpected end of file", "`)`", note_line=3),
    Case("syntax-eof-empty-model", "model m {", 1, 10, "unexpected end of file", "`}`", note_line=1),
    Case("syntax-number-two-points", M("input x: [2]", "h = linear(x, 1.2.3)"), 3, 17,
         "malformed number `1.2.3`", "1e-3", "1.2.3"),
    Case("syntax-number-trailing-underscore", M("input x: [2]", "output o = 1_000_ + x"), 3, 14,
         "malformed number `1_000_`", "1_000", "1_000_"),
    Case("syntax-number-bare-hex-prefix", M("input x: [2]", "output o = 0x + x"), 3, 14,
         "malformed number `0x`", "0x10", "0x"),
    Case("syntax-number-bare-exponent", M("input x: [2]", "output o = 5e + x"), 3, 14,
         "malformed number `5e`", None, "5e"),
    Case("syntax-unclosed-bracket", M("input x: [2", "h = linear(x, 4)"), 3, 3,
         "unexpected name `h`", "`]`", "h", note_line=2),
    Case("syntax-extra-rparen", M("input x: [2]", "output o = linear(x, 4))"), 3, 26,
         "unexpected `)`", None, ")"),
    Case("syntax-unterminated-string", M("input x: [2]", 'output o = "abc'), 3, 14,
         "unterminated string", 'ends with `"`', '"abc'),
    Case("syntax-misspelt-model", "mdel m {\n  input x: [2]\n}\n", 1, 1,
         "unexpected name `mdel`", "did you mean `model`?", "mdel"),
    Case("syntax-misspelt-input", M("inpt x: [2]", "output o = x"), 2, 3,
         "`inpt` is not a keyword", "did you mean `input`?", "inpt"),
    Case("syntax-arrow-at-end-of-line", M("input x: [2]", "output o = x ->", "  relu"), 3, 18,
         "unexpected end of line", "only inside ( )"),
    Case("syntax-repeat-count-float", BLOCK + M("input x: [4]", "output o = x -> repeat 2.5 b(3)"), 6, 26,
         "unexpected number `2.5`", "a whole number", "2.5"),
    Case("syntax-brace-on-next-line", "model m\n{\n  input x: [2]\n}\n", 1, 8,
         "unexpected end of line", "expected `{`"),

    # ---- names ----------------------------------------------------------------------------
    Case("undefined-name-did-you-mean", M("input x: [2]", "output h = linear(xx, 4)"), 3, 21,
         "undefined name `xx`", "did you mean `x`?", "xx"),
    Case("undefined-name-no-suggestion", M("input x: [2]", "output o = x + weights"), 3, 18,
         "undefined name `weights`", "define it above", "weights"),
    Case("undefined-name-bare-assignment", M("input x: [2]", "h = foo", "output o = x"), 3, 7,
         "undefined name `foo`", None, "foo"),
    Case("undefined-name-keyword-as-value", M("input x: [2]", "output o = input"), 3, 14,
         "undefined name `input`", None, "input"),
    Case("duplicate-statement", M("input x: [2]", "h = linear(x, 4)", "h = linear(x, 4)", "output o = h"),
         4, 3, "`h` is defined twice", "another name", "h", note_line=3),
    Case("duplicate-input", M("input x: [2]", "input x: [3]", "output o = x"), 3, 9,
         "`x` is defined twice", None, "x", note_line=2),
    Case("duplicate-block", "block a(x) { return x }\nblock a(x) { return x }\n"
         + M("input x: [2]", "output o = a(x)"), 2, 7, "block `a` is defined twice", "rename", "a", note_line=1),
    Case("duplicate-model", M("input x: [2]", "output o = relu(x)", name="a")
         + M("input x: [2]", "output o = relu(x)", name="a"), 5, 7,
         "model `a` is defined twice", "rename", "a", note_line=1),
    Case("block-named-like-an-op", "block relu(x) { return x }\n" + M("input x: [2]", "output o = relu(x)"),
         1, 7, "block `relu` has the name of a built-in op", "another name", "relu"),
    Case("use-before-definition", M("input x: [2]", "output o = h + 1", "h = linear(x, 2)"), 3, 14,
         "`h` is used before its definition on line 4", "move the definition", "h"),
    Case("cycle-two-statements", M("input x: [2]", "a = b + 1", "b = a * 2", "output o = b"), 3, 7,
         "cycle: a -> b -> a", "acyclic", "b"),
    Case("cycle-self-reference", M("input x: [2]", "a = a + x", "output o = a"), 3, 7,
         "cycle: a -> a", "acyclic", "a"),

    # ---- ops: names, arguments, attributes ------------------------------------------------------
    Case("unknown-op-did-you-mean", M("input x: [2]", "output h = lineer(x, 4)"), 3, 14,
         "unknown op `lineer`", "did you mean `linear`?", "lineer"),
    Case("unknown-op-no-suggestion", M("input x: [2]", "output h = quux(x)"), 3, 14,
         "unknown op `quux`", "graphc ops", "quux"),
    Case("unknown-keyword-did-you-mean", M("input x: [1, 8, 8]", "output h = conv(x, 4, kernal=3)"), 3, 25,
         "`conv` has no argument `kernal`", "did you mean `kernel`?", "kernal"),
    Case("missing-required-argument", M("input x: [4, 8, 8]", "output h = groupnorm(x)"), 3, 14,
         "`groupnorm` needs the argument `groups`", "usage: groupnorm(x, groups", "groupnorm"),
    Case("too-many-positional-arguments", M("input x: [2]", "output h = linear(x, 4, true, 6)"), 3, 14,
         "`linear` takes at most 3 arguments, got 4", "usage: linear(x, units", "linear(x, 4, true, 6)"),
    Case("missing-tensor-input", M("input x: [2]", "output h = linear(units=4)"), 3, 14,
         "`linear` needs 1 tensor input (x), got 0", "usage: linear", "linear(units=4)"),
    Case("missing-second-tensor-input", M("input x: [2]", "output h = matmul(x)"), 3, 14,
         "`matmul` needs 2 tensor inputs (a, b), got 1", None, "matmul(x)"),
    Case("argument-given-twice", M("input x: [2]", "output o = linear(x, 4, units=5)"), 3, 27,
         "`units` is given twice", None, "units=5"),
    Case("attribute-is-a-tensor", M("input x: [1, 8, 8]", "output h = conv(x, 4, kernel=x)"), 3, 32,
         "`kernel` of `conv` must be a constant, not a tensor", "write a number", "x"),
    Case("attribute-is-a-float", M("input x: [1, 8, 8]", "output h = conv(x, 4, kernel=1.5)"), 3, 32,
         "`kernel` of `conv` must be an integer, got 1.5", "usage: conv", "1.5"),
    Case("attribute-is-not-a-bool", M("input x: [2]", "output p = linear(x, 2, bias=3)"), 3, 32,
         "`bias` of `linear` must be true or false, got 3", None, "3"),
    Case("attribute-below-minimum", M("input x: [1, 4, 4]", "output o = conv(x, 0)"), 3, 22,
         "`filters` of `conv` must be at least 1, got 0", None, "0"),
    Case("attribute-bad-choice", M("input x: [4]", "label y: [4]", "loss = kl_div(x, y, reduction=foo)"),
         4, 33, "`reduction` of `kl_div` must be one of", None, "foo"),
    Case("list-of-tensors", M("input x: [2]", "output o = concat([x, x])"), 3, 21,
         "a list holds numbers; to join tensors use concat(a, b)", None, "[x, x]"),
    Case("string-as-tensor", M("input x: [4]", 'output o = x + "a"'), 3, 18,
         "expected a tensor or a number", None, '"a"'),

    # ---- model interface ---------------------------------------------------------------------
    Case("output-is-a-constant", M("input x: [2]", "output o = 1"), 3, 14,
         "`o` must be a tensor, not a constant", "inputs and parameters", "1"),
    Case("loss-is-a-constant", M("input x: [2]", "h = 3", "loss = h"), 4, 10,
         "`loss` must be a tensor, not a constant", None, "h"),
    Case("loss-not-a-scalar", M("input x: [4]", "loss = linear(x, 3)"), 3, 3,
         "`loss` must be a scalar, but it has shape [3] per sample", "mean(...)", "loss = linear(x, 3)"),
    Case("loss-holds-class-labels", M("input x: [2]", "label y: class[2]", "loss = y"), 4, 3,
         "`loss` holds class labels", "cross_entropy", "loss = y"),
    Case("model-without-inputs", M("param w: [3]", "output o = w * 2"), 1, 7,
         "model `m` has no inputs", "input x:", "m"),
    Case("return-outside-block", M("input x: [4]", "return x"), 3, 3,
         "`return` outside a block", "output NAME", "return x"),
    Case("no-model-in-file", "block b(x) {\n  return x\n}\n", 3, 2, "defines no model", "model NAME"),
    Case("several-models-without-choice", M("input x: [2]", "output o = relu(x)", name="a")
         + M("input x: [2]", "output o = relu(x)", name="b"), 5, 7,
         "defines several models: a, b", "--model NAME", "b"),

    # ---- blocks ------------------------------------------------------------------------------
    Case("input-inside-block", "block b(x) {\n  input y: [3]\n  return x\n}\n"
         + M("input x: [4]", "output o = b(x)"), 2, 3, "`input` inside a block", "arguments",
         "input y: [3]", note_line=7),
    Case("output-inside-block", "block b(x) {\n  output y = relu(x)\n  return x\n}\n"
         + M("input x: [4]", "output o = b(x)"), 2, 3, "`output` inside a block", "`return`", note_line=7),
    Case("block-without-return", "block b(x) {\n  y = relu(x)\n}\n" + M("input x: [4]", "output o = b(x)"),
         1, 7, "block `b` has no `return`", "return <expression>", "b", note_line=6),
    Case("statement-after-return", "block b(x) {\n  return x\n  y = relu(x)\n}\n"
         + M("input x: [2]", "output o = b(x)"), 3, 3, "statement after `return`", "last statement",
         note_line=7),
    Case("recursive-block", "block b(x) {\n  return b(x)\n}\n" + M("input x: [4]", "output o = b(x)"), 2, 10,
         "block `b` uses itself (b -> b)", "repeat N", "b(x)", note_line=6),
    Case("mutually-recursive-blocks", "block a(x) {\n  return b(x)\n}\nblock b(x) {\n  return a(x)\n}\n"
         + M("input x: [2]", "output o = a(x)"), 5, 10, "block `a` uses itself (a -> b -> a)", None, "a(x)",
         note_line=2),
    Case("block-unknown-keyword", BLOCK + M("input x: [4]", "output o = b(x, m=3)"), 6, 19,
         "block `b` has no argument `m`", "its arguments: x, n", "m"),
    Case("block-unknown-keyword-did-you-mean", BLOCK + M("input x: [4]", "output o = b(x, nn=3)"), 6, 19,
         "block `b` has no argument `nn`", "did you mean `n`?", "nn"),
    Case("block-missing-argument", BLOCK + M("input x: [4]", "output o = b(x)"), 6, 14,
         "block `b` needs the argument `n`", "its arguments: x, n", "b(x)"),
    Case("block-too-many-arguments", BLOCK + M("input x: [4]", "output o = b(x, 3, 4)"), 6, 14,
         "block `b` takes 2 arguments (x, n), got 3", None, "b(x, 3, 4)"),
    Case("shape-error-inside-block", "block b(x, n) {\n  y = conv(x, n, kernel=3)\n  return y\n}\n"
         + M("input x: [4]", "output o = b(x, 3)"), 2, 12,
         "conv expects a per-sample shape [channels, height, width], got [4]", "reshape", "x", note_line=7),
    Case("unknown-op-inside-block", "block b(x) {\n  return lineer(x, 3)\n}\n" + M("input x: [2]", "output o = b(x)"),
         2, 10, "unknown op `lineer`", "did you mean `linear`?", "lineer", note_line=6),
    Case("undefined-name-inside-block", "block b(x) {\n  return linear(y, 3)\n}\n"
         + M("input x: [2]", "output o = b(x)"), 2, 17, "undefined name `y`", None, "y", note_line=6),
    Case("repeat-count-zero", BLOCK + M("input x: [4]", "output o = x -> repeat 0 b(3)"), 6, 26,
         "`repeat` needs a whole number >= 1, got 0", "repeat 3 b", "0"),
    Case("repeat-count-undefined", BLOCK + M("input x: [4]", "output o = x -> repeat k b(3)"), 6, 26,
         "undefined name `k`", None, "k"),
    Case("repeat-count-a-tensor", BLOCK + M("input x: [4]", "output o = x -> repeat x b(3)"), 6, 26,
         "expected a number here, got a tensor", None, "x"),
    Case("repeat-count-too-large", BLOCK + M("input x: [4]", "output o = x -> repeat 99999999999 b(3)"), 6, 26,
         "makes too many copies", "fewer", "99999999999"),

    # ---- shapes ------------------------------------------------------------------------------------
    # Sizes that are not whole numbers round down (a warning when rows go unread: tests/test_rounding.py).
    Case("conv-pad-same-strided", M("input x: [6, 14, 14]", "c3 = conv(x, 16, kernel=5, stride=2, pad=same)",
                                    "output o = c3"),
         3, 44, "`pad=same` needs stride 1, got stride 2", "give the pad as a number", "same"),
    Case("conv-kernel-larger-than-input", M("input x: [6, 3, 3]", "output s = conv(x, 2, kernel=5)"), 3, 14,
         "conv output height would be less than 1", "smaller kernel", "conv(x, 2, kernel=5)"),
    Case("conv-on-a-vector", M("input x: [784]", "output o = conv(x, 6, kernel=5)"), 3, 19,
         "conv expects a per-sample shape [channels, height, width], got [784]", "reshape(x, [1, 28, 28])", "x"),
    Case("maxpool-pad-same-even-size", M("input x: [6, 15, 15]", "output s = maxpool(x, 2, stride=1, pad=same)"),
         3, 42, "`pad=same` needs an odd size, got size=2", "use an odd size", "same"),
    Case("avgpool-window-too-large", M("input x: [6, 3, 3]", "output s = avgpool(x, 4)"), 3, 14,
         "avgpool output height would be less than 1", "floor((3 + 2*0 - 4) / 4) + 1 = 0", "avgpool(x, 4)"),
    Case("matmul-inner-dimensions", M("input x: [4]", "param w: [5, 3]", "output o = x @ w"), 4, 14,
         "matmul: inner dimensions differ in [4] @ [5, 3]: 4 vs 5", None, "x @ w"),
    Case("broadcast-mismatch", M("input x: [4]", "param w: [3]", "output o = x + w"), 4, 14,
         "add: shapes [4] and [3] do not broadcast", "sizes must be equal or one of them 1", "x + w"),
    Case("cross-entropy-classes-mismatch",
         M("input x: [4]", "label y: class[10]", "logits = linear(x, 5)", "loss = cross_entropy(logits, y)"),
         5, 32, "logits have 5 classes but the label has 10 classes", "10 outputs", "y"),
    Case("class-labels-into-a-gate", M("input x: [4]", "label y: class[10]", "output h = y + x"), 4, 14,
         "add: expects a float tensor, got class indices (class[10])", "only feed a loss", "y"),
    Case("class-labels-into-mse", M("input x: [4]", "label y: class[4]", "loss = mse(x, y)"), 4, 17,
         "the target holds class indices", "cross_entropy", "y"),
    Case("reshape-element-count", M("input x: [4, 4]", "output h = reshape(x, [3, 5])"), 3, 25,
         "cannot reshape [4, 4] (16 elements) to [3, 5] (15 elements)", "element count", "[3, 5]"),
    Case("concat-mismatch", M("input x: [4, 4]", "input z: [3, 3]", "output h = concat(x, z)"), 4, 24,
         "concat input 1 differs from input 0 in dimension 1", "except along axis 0", "z"),
    Case("groupnorm-groups-do-not-divide", M("input x: [6, 4, 4]", "output o = groupnorm(x, 4)"), 3, 27,
         "6 channels do not split into 4 groups", "divide the channel count 6", "4"),
    Case("reduce-axis-out-of-range", M("input x: [4]", "output o = sum(x, axis=5)"), 3, 26,
         "axis 5 is out of range for shape [4]", None, "5"),
    Case("tensor-too-large", M("input x: [4]", "output o = linear(x, 99999999999999999999)"), 3, 14,
         "would hold more than", "limit", "linear(x, 99999999999999999999)"),
    Case("declared-shape-too-large", M("input x: [99999999999999999999999]", "output o = relu(x)"), 2, 12,
         "is too large", "limit", "[99999999999999999999999]"),
    Case("expression-nested-too-deeply", M("input x: [2]", "output o = x" + " + x" * 300), 3, 3,
         "expression nested more than 200 levels deep", "several statements"),

    Case("constant-division-by-zero", M("input x: [4]", "output o = x * (1 / 0)"), 3, 19,
         "division by zero", None, "1 / 0"),
    Case("constant-too-large", M("input x: [4]", "output o = x * 10 ** 10 ** 10"), 3, 18,
         "cannot compute this constant: the result is too large", None, "10 ** 10 ** 10"),

    # ---- declared dimensions and classes ----------------------------------------------------------
    Case("dimension-zero", M("input x: [0]", "output o = relu(x)"), 2, 13,
         "a dimension must be a whole number >= 1, got 0", "[1, 28, 28]", "0"),
    Case("dimension-fraction", M("input x: [2.5]", "output o = relu(x)"), 2, 13,
         "a dimension must be a whole number >= 1, got 2.5", None, "2.5"),
    Case("dimension-negative", M("input x: [3, -1]", "output o = relu(x)"), 2, 16,
         "a dimension must be a whole number >= 1, got -1", None, "-1"),
    Case("dimension-a-tensor", M("input x: [2]", "param w: [x]", "output o = x + w"), 3, 13,
         "expected a number here, got a tensor", None, "x"),
    Case("class-count-zero", M("input x: [2]", "label y: class[0]", "output o = relu(x)"), 3, 18,
         "the number of classes must be a whole number >= 1", None, "0"),
    Case("param-unknown-option", M("input x: [3]", "param w: [3] decay=false zzz=1", "output o = x + w"), 3, 28,
         "`param` has no option `zzz`", "init=", "zzz"),
    Case("param-unknown-initialiser", M("input x: [3]", "param w: [3] init=hee", "output o = x + w"), 3, 21,
         "unknown initialiser `hee`", "did you mean `he`?", "hee"),
    Case("param-init-negative-std", M("input x: [3]", "param w: [3] init=normal(std=-1)", "output o = x + w"),
         3, 32, "`std` of `normal` must be a number >= 0, got -1", "e.g. std=0.01", "-1"),
    Case("param-init-unknown-keyword", M("input x: [3]", "param w: [3] init=normal(stdev=1)", "output o = x + w"),
         3, 28, "`normal` has no argument `stdev`", "did you mean `std`?", "stdev"),
    Case("param-init-missing-keyword", M("input x: [3]", "param w: [3] init=constant", "output o = x + w"), 3, 21,
         "initialiser `constant` needs value", "value=...", "constant"),
    Case("param-init-not-a-name", M("input x: [3]", "param w: [3] init=0.5", "output o = x + w"), 3, 21,
         "expected an initialiser name, got 0.5", None, "0.5"),
    # Regression: inside a block, an undefined name as an init option passed `check` as the string 's'.
    Case("param-init-undefined-name-in-block",
         "block b(x, scale) {\n  param w: [2, 2] init=normal(std=s)\n  return x @ w\n}\n"
         + M("input x: [2]", "output o = b(x, 0.1)"), 2, 35, "undefined name `s`", None, "s", note_line=7),

    # ---- train sections -------------------------------------------------------------------------
    Case("train-unknown-key", TRAINABLE + "train {\n  dat = xor\n}\n", 7, 3,
         "unknown train setting `dat`", "did you mean `data`?", "dat"),
    Case("train-batch-zero", TRAINABLE + "train {\n  batch = 0\n}\n", 7, 11,
         "bad value for `batch`: 0", "whole number >= 1", "0"),
    Case("train-epochs-fraction", TRAINABLE + "train { epochs = 1.5 }\n", 6, 18,
         "bad value for `epochs`: 1.5", None, "1.5"),
    Case("train-validation-out-of-range", TRAINABLE + "train { validation = 1 }\n", 6, 22,
         "bad value for `validation`: 1", "[0, 1)", "1"),
    Case("train-unknown-optimizer", TRAINABLE + "train {\n  optimizer = sgdd(lr=0.1)\n}\n", 7, 15,
         "unknown optimizer `sgdd`", "did you mean `sgd`?", "sgdd(lr=0.1)"),
    Case("train-unknown-optimizer-keyword", TRAINABLE + "train {\n  optimizer = sgd(lr=0.1, momentun=0.9)\n}\n",
         7, 27, "`sgd` has no argument `momentun`", "did you mean `momentum`?", "momentun"),
    Case("train-optimizer-negative-lr", TRAINABLE + "train {\n  optimizer = sgd(lr=-1)\n}\n", 7, 22,
         "`lr` of `sgd` must be a number >= 0, got -1", "e.g. lr=0.01", "-1"),
    Case("train-optimizer-positional-out-of-range", TRAINABLE + "train { optimizer = adam(0.1, 1.5) }\n", 6, 31,
         "`beta1` of `adam` must be a number in [0, 1), got 1.5", None, "1.5"),
    Case("train-optimizer-rule", TRAINABLE + "train { optimizer = sgd(nesterov=true) }\n", 6, 21,
         "Nesterov momentum needs momentum > 0 and dampening = 0", "momentum=0.9", "sgd(nesterov=true)"),
    # torch's betas is adam's and adamw's (beta1, beta2); its weight_decay is a train setting here.
    Case("train-optimizer-torch-keyword", TRAINABLE + "train { optimizer = adam(weight_decay=0.1) }\n", 6, 26,
         "`adam` has no argument `weight_decay`", "train setting `weight_decay`", "weight_decay"),
    Case("train-optimizer-torch-betas-not-a-pair", TRAINABLE + "train { optimizer = adam(betas=0.9) }\n", 6, 32,
         "`betas` of `adam` must be a list of two numbers, got 0.9", "betas=[0.9, 0.999]", "0.9"),
    Case("train-optimizer-torch-betas-elsewhere", TRAINABLE + "train { optimizer = sgd(betas=[0.9, 0.99]) }\n",
         6, 25, "`sgd` has no argument `betas`", "keyword of adam and adamw", "betas"),
    Case("train-optimizer-undefined-name", TRAINABLE + "train { optimizer = sgd(lr=rate) }\n", 6, 28,
         "undefined name `rate`", "numbers, `true` or `false`", "rate"),
    Case("train-optimizer-not-a-name", TRAINABLE + "train { optimizer = 0.1 }\n", 6, 21,
         "expected an optimizer name, got 0.1", None, "0.1"),
    Case("train-schedule-missing-keyword", TRAINABLE + "train { schedule = step(gamma=0.5) }\n", 6, 20,
         "schedule `step` needs step_size", "step_size=...", "step(gamma=0.5)"),
    Case("train-schedule-division-by-zero", TRAINABLE + "train { schedule = exponential(gamma=1 / 0) }\n", 6, 38,
         "division by zero", None, "1 / 0"),
    Case("train-unknown-schedule", TRAINABLE + "train { schedule = cosinus }\n", 6, 20,
         "unknown schedule `cosinus`", "did you mean `cosine`?", "cosinus"),
    Case("train-key-set-twice", TRAINABLE + "train {\n  batch = 3\n  batch = 4\n}\n", 8, 3,
         "`batch` is set twice", "remove one", "batch"),
    Case("train-for-unknown-model", TRAINABLE + "train n {\n  batch = 3\n}\n", 6, 1,
         "train section for unknown model `n`", "models in this file: m"),
    Case("train-for-misspelt-model", M("input x: [2]", "label y: class[2]",
                                       "loss = cross_entropy(linear(x, 2), y)", name="lenet")
         + "train lenett { batch = 3 }\n", 6, 1, "train section for unknown model `lenett`", "did you mean `lenet`?"),
    Case("train-twice", TRAINABLE + "train { batch = 3 }\ntrain { batch = 4 }\n", 7, 1,
         "model `m` has two train sections", "merge", "train { batch = 4 }", note_line=6),
    Case("train-without-loss", M("input x: [2]", "output o = linear(x, 2)") + "train { batch = 3 }\n", 5, 1,
         "model `m` has a train section but no `loss`", "loss = cross_entropy"),
    Case("train-unnamed-with-several-models", TRAINABLE + M("input x: [2]", "output o = relu(x)", name="n")
         + "train { batch = 3 }\n", 10, 1, "say which one this train section is for", "train NAME",
         model="m"),
    Case("train-setting-not-constant", TRAINABLE + "train { batch = f(2) }\n", 6, 17,
         "`batch` must be a constant", None, "f(2)"),
    Case("train-init-negative-std", TRAINABLE + "train { init = normal(std=-0.1 * 2) }\n", 6, 27,
         "`std` of `normal` must be a number >= 0, got -0.2", None, "-0.1 * 2"),
]


def _matching(error: GraphcError, case: Case) -> Diagnostic:
    for d in error.diagnostics:
        if case.message in d.message:
            return d
    messages = "\n".join(d.render() for d in error.diagnostics)
    raise AssertionError(f"no diagnostic says {case.message!r}; got:\n{messages}")


def test_the_table_is_large_and_its_ids_unique():
    assert len(CASES) >= 45
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_broken_program(case: Case):
    with pytest.raises(GraphcError) as info:
        check_source(case.source, "t.nn", case.model)
    error = info.value
    assert error.diagnostics, "a GraphcError carries at least one diagnostic"
    d = _matching(error, case)
    assert d.level == "error"
    assert d.span is not None, d.render()
    assert (d.span.line, d.span.col) == (case.line, case.col), d.render()
    if case.help is not None:
        assert d.help is not None and case.help in d.help, d.render()
    if case.caret is not None:
        assert d.span.text == case.caret, d.render()
    if case.note_line is not None:
        assert any(n.span is not None and n.span.line == case.note_line for n in d.notes), d.render()
    _check_rendering(d, case.source)


def _check_rendering(d: Diagnostic, source: str) -> None:
    """The compiler-style layout: `t.nn:L:C: error: message`, the source line, a caret line."""
    lines = d.render().splitlines()
    assert lines[0] == f"t.nn:{d.span.line}:{d.span.col}: error: {d.message}"
    text = source.splitlines()[d.span.line - 1] if d.span.line <= len(source.splitlines()) else ""
    caret = re.fullmatch(r" {6}\| ( *)(\^~*)", lines[2])
    assert caret is not None, lines[2]
    if len(text) > 200:
        # A long line is shown as a window around the caret; the caret still points at the span's start.
        shown = lines[1][len(f"{d.span.line:>5} | "):]
        assert len(shown) <= 202 and (shown.startswith("…") or shown.endswith("…"))
        if d.span.end > d.span.start:
            assert shown[len(caret.group(1))] == text[d.span.col - 1]
        return
    assert lines[1] == f"{d.span.line:>5} | {text}"
    assert len(caret.group(1)) == d.span.col - 1
    end_line, end_col = d.span.end_line_col
    if end_line == d.span.line and d.span.end > d.span.start:
        assert len(caret.group(2)) == end_col - d.span.col
    if d.help:
        assert lines[-1] == f"  help: {d.help}"


# ---- DESIGN.md's example, rendered exactly ---------------------------------------------------------

BAD_NN = """\
# models/bad.nn
model lenet5 {
  input image: [1, 28, 28]
  c1 = conv(image, 6, kernel=5, pad=2) -> relu
  s2 = maxpool(c1, 2)
  c3 = conv(s2, 16, kernel=5, stride=2)
  output o = c3
}
"""

# DESIGN.md's block: the floor of (14 - 5) / 2 leaves row and column 13 unread.
DESIGN_RENDERING = """\
models/bad.nn:6:8: warning: conv never reads input row 13 and column 13
    6 |   c3 = conv(s2, 16, kernel=5, stride=2)
      |        ^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
  help: floor((14 + 2*0 - 5) / 2) + 1 = 5 windows cover rows 0..12; pad=1 reads them all"""


def test_design_example_renders_exactly():
    graph = check_source(BAD_NN, "models/bad.nn")
    assert len(graph.warnings) == 1
    assert graph.warnings[0].render() == DESIGN_RENDERING
    assert graph.warnings[0].span.text == "conv(s2, 16, kernel=5, stride=2)"
    if DESIGN_MD.is_file():   # the design notes lie beside the repository (shared/), when they are there
        assert DESIGN_RENDERING in DESIGN_MD.read_text()


# ---- more than one diagnostic --------------------------------------------------------------------

def test_independent_errors_are_all_reported_in_source_order():
    source = M("input x: [2]",
               "h = lineer(x, 3)",                       # line 3: unknown op
               "output o = foo",                         # line 4: undefined name
               "output p = linear(x, units=2, bias=3)")  # line 5: bad attribute
    with pytest.raises(GraphcError) as info:
        check_source(source, "t.nn")
    errors = info.value.diagnostics
    assert [(d.span.line, d.span.col) for d in errors] == [(3, 7), (4, 14), (5, 38)]
    assert "unknown op `lineer`" in errors[0].message
    assert "undefined name `foo`" in errors[1].message
    assert "`bias` of `linear`" in errors[2].message
    assert all(d.level == "error" for d in errors)
    assert info.value.render().count(": error: ") == 3


def test_independent_shape_errors_are_all_reported():
    source = M("input x: [4]", "param w: [5, 3]", "param v: [3]",
               "a = x @ w", "b = x + v", "output o = reshape(x, [3])")
    with pytest.raises(GraphcError) as info:
        check_source(source, "t.nn")
    assert [d.span.line for d in info.value.diagnostics] == [5, 6, 7]


def test_syntax_errors_in_separate_items_are_all_reported():
    source = ("block b(x) {\n  return x $\n}\n"
              + M("input x: [2]", "output o = relu(x", "h = 1") + "train { batch = = 3 }\n")
    with pytest.raises(GraphcError) as info:
        check_source(source, "t.nn")
    assert [d.span.line for d in info.value.diagnostics] == [2, 7, 9]


def test_an_error_in_a_block_used_twice_is_reported_once():
    source = "block b(x) {\n  return conv(x, 4)\n}\n" + M("input x: [2]", "output o = b(x)", "output p = b(x)")
    with pytest.raises(GraphcError) as info:
        check_source(source, "t.nn")
    assert len(info.value.diagnostics) == 1
    d = info.value.diagnostics[0]
    assert (d.span.line, d.span.col) == (2, 15)
    assert [n.span.line for n in d.notes] == [6]


def test_a_build_error_in_a_block_used_twice_is_reported_once():
    source = "block b(x) {\n  return lineer(x, 3)\n}\n" + M("input x: [2]", "output o = b(x)", "output p = b(x)")
    with pytest.raises(GraphcError) as info:
        check_source(source, "t.nn")
    assert len(info.value.diagnostics) == 1


def test_a_duplicate_model_is_one_error_not_two():
    source = M("input x: [2]", "output o = relu(x)", name="a") * 2
    with pytest.raises(GraphcError) as info:
        check_source(source, "t.nn")
    assert len(info.value.diagnostics) == 1


def test_a_nested_block_error_names_every_call_site():
    source = ("block inner(x) {\n  return conv(x, 4)\n}\n"
              "block outer(x) {\n  return inner(x)\n}\n" + M("input x: [2]", "output o = outer(x)"))
    with pytest.raises(GraphcError) as info:
        check_source(source, "t.nn")
    d = info.value.diagnostics[0]
    assert d.span.line == 2
    assert [n.span.line for n in d.notes] == [5, 9]      # innermost call site first
    rendered = d.render()
    assert "note: in block `inner` used here at t.nn:5:10" in rendered
    assert "note: in block `outer` used here at t.nn:9:14" in rendered


def test_unused_definitions_are_warnings_not_errors():
    graph = check_source(M("input x: [2]", "input z: [3]", "h = linear(x, 3)", "output o = relu(x)"), "t.nn")
    messages = [w.message for w in graph.warnings]
    assert all(w.level == "warning" for w in graph.warnings)
    assert "input `z` is never used" in messages
    assert "definition `h` is never used" in messages
    lines = {w.message: w.span.line for w in graph.warnings}
    assert lines["input `z` is never used"] == 3
    assert lines["definition `h` is never used"] == 4
    assert graph.warnings[0].render().startswith("t.nn:")
    assert ": warning: " in graph.warnings[0].render()


def test_the_model_choice_must_exist():
    with pytest.raises(GraphcError) as info:
        check_source(M("input x: [2]", "output o = relu(x)", name="lenet"), "t.nn", "lenett")
    d = info.value.diagnostics[0]
    assert "no model named `lenett`" in d.message
    assert "did you mean `lenet`?" in d.help
    assert d.render().startswith("graphc: error: ")


# ---- includes ----------------------------------------------------------------------------------------

def test_include_of_a_missing_file(tmp_path):
    main = tmp_path / "main.nn"
    main.write_text('include "missing.nn"\n' + M("input x: [2]", "output o = relu(x)"))
    with pytest.raises(GraphcError) as info:
        check_file(main)
    d = info.value.diagnostics[0]
    assert "included file `missing.nn` not found" in d.message
    assert (d.span.line, d.span.col) == (1, 1)
    assert d.span.text == 'include "missing.nn"'
    assert "relative to the file" in d.help
    assert d.render().startswith(f"{main}:1:1: error: ")


def test_include_cycle(tmp_path):
    (tmp_path / "a.nn").write_text('include "b.nn"\n' + M("input x: [2]", "output o = relu(x)"))
    (tmp_path / "b.nn").write_text('include "a.nn"\nblock blk(x) { return x }\n')
    with pytest.raises(GraphcError) as info:
        check_file(tmp_path / "a.nn")
    d = info.value.diagnostics[0]
    assert "include cycle: a.nn -> b.nn -> a.nn" in d.message
    assert d.span.source.path.endswith("b.nn") and d.span.line == 1


def test_a_file_including_itself(tmp_path):
    (tmp_path / "self.nn").write_text('include "self.nn"\n' + M("input x: [2]", "output o = relu(x)"))
    with pytest.raises(GraphcError) as info:
        check_file(tmp_path / "self.nn")
    assert "include cycle: self.nn -> self.nn" in info.value.diagnostics[0].message


def test_errors_in_an_included_file_name_that_file(tmp_path):
    (tmp_path / "blocks.nn").write_text("block b(x) {\n  return lineer(x, 3)\n}\nblock c(x) { return x $ }\n")
    main = tmp_path / "main.nn"
    main.write_text('include "blocks.nn"\n' + M("input x: [2]", "output o = b(x)"))
    with pytest.raises(GraphcError) as info:
        check_file(main)
    d = info.value.diagnostics[0]
    assert d.span.source.path.endswith("blocks.nn")
    assert (d.span.line, d.span.col, d.message) == (4, 23, "unexpected character `$`")


def test_an_error_in_an_included_block_points_into_that_file(tmp_path):
    (tmp_path / "blocks.nn").write_text("block b(x) {\n  return lineer(x, 3)\n}\n")
    main = tmp_path / "main.nn"
    main.write_text('include "blocks.nn"\n' + M("input x: [2]", "output o = b(x)"))
    with pytest.raises(GraphcError) as info:
        check_file(main)
    d = info.value.diagnostics[0]
    assert d.span.source.path.endswith("blocks.nn") and (d.span.line, d.span.col) == (2, 10)
    assert d.notes[0].span.source.path == str(main) and d.notes[0].span.line == 4


def test_an_unreadable_file_is_a_diagnostic(tmp_path):
    with pytest.raises(GraphcError) as info:
        check_file(tmp_path / "nope.nn")
    assert "cannot read" in info.value.diagnostics[0].message


# ---- regressions found while fuzzing and reviewing ----------------------------------------------------

@pytest.mark.parametrize("expr", [
    "x" + " + x" * 2000,              # a long left-leaning sum
    "-" * 2000 + "x",                 # stacked unary minus
    "relu(" * 2000 + "x" + ")" * 2000,  # nested calls
    "x" + " ** x" * 2000,             # right-leaning power
], ids=["sum", "minus", "calls", "power"])
def test_deep_nesting_is_a_diagnostic_not_a_recursion_error(expr):
    with pytest.raises(GraphcError) as info:
        check_source(M("input x: [2]", f"output o = {expr}"), "t.nn")
    assert "nested more than" in info.value.diagnostics[0].message


@pytest.mark.parametrize("expr", [
    "x" + " + x" * 190,
    "-" * 190 + "x",
    "relu(" * 190 + "x" + ")" * 190,
], ids=["sum", "minus", "calls"])
def test_nesting_just_below_the_limit_still_checks(expr):
    check_source(M("input x: [2]", f"output o = {expr}"), "t.nn")


def test_a_long_chain_of_blocks_is_a_diagnostic():
    blocks = "".join(f"block b{i}(x) {{\n  return b{i + 1}(x)\n}}\n" for i in range(400))
    source = blocks + "block b400(x) {\n  return relu(x)\n}\n" + M("input x: [2]", "output o = b0(x)")
    with pytest.raises(GraphcError) as info:
        check_source(source, "t.nn")
    assert "blocks nested more than" in info.value.diagnostics[0].message


def test_deep_expressions_in_nested_blocks_are_a_diagnostic():
    depth = 190
    blocks = "".join(f"block b{i}(x) {{\n  return {'relu(' * depth}b{i + 1}(x){')' * depth}\n}}\n"
                     for i in range(12))
    source = blocks + "block b12(x) {\n  return relu(x)\n}\n" + M("input x: [2]", "output o = b0(x)")
    with pytest.raises(GraphcError) as info:
        check_source(source, "t.nn")
    assert "too deeply" in info.value.diagnostics[0].message


@pytest.mark.parametrize("source", [
    M("input x: [4]", "output o = linear(x, 99999999999999999999)"),
    M("input x: [1, 8, 8]", "output o = conv(x, 1e300, kernel=3)"),
    M("input x: [100000, 100000, 100000, 100000, 1000000]", "output o = relu(x)"),
], ids=["units", "filters", "input"])
def test_huge_sizes_are_diagnostics(source):
    # These used to pass the checker and then crash the summary table with OverflowError.
    with pytest.raises(GraphcError) as info:
        check_source(source, "t.nn")
    assert "too large" in info.value.render() or "more than" in info.value.render()


def test_a_bracket_closed_later_is_not_blamed():
    # `1.2.3` used to come with a note that the `(` around it was never closed.
    with pytest.raises(GraphcError) as info:
        check_source(M("input x: [2]", "h = linear(x, 1.2.3)"), "t.nn")
    assert info.value.diagnostics[0].notes == ()


def test_expected_tokens_are_the_ones_really_allowed():
    # LALR's table for the state after `linear(x, 4)` also lists `)` and `]`; the help must not.
    with pytest.raises(GraphcError) as info:
        check_source(M("input x: [2]", "h = linear(x, 4) $ 3"), "t.nn")
    help_text = info.value.diagnostics[0].help
    assert "`)`" not in help_text and "`]`" not in help_text
