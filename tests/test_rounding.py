"""Output-size rounding as PyTorch does it: floor((H + 2*pad - kernel) / stride) + 1, pooling's
ceil_mode, pad=same, and the warning for input rows the floor leaves unread.

The grid tests compare graphc's shape rules with torch.nn.functional's output sizes over
sizes x kernels x strides x pads (x ceil_mode for the pools), and which cases are errors;
which rows are unread is read off PyTorch's own gradients (an average pool or an all-ones
conv: a row no window reads gets no gradient), so the warning is checked against an oracle
that shares no code with graphc, and so is the pad its help suggests.
"""
from __future__ import annotations

import itertools
import re
import subprocess
import sys

import numpy as np
import pytest
from op_harness import run_op
from paths import REPO

from graphc.cli import main
from graphc.ops import AttrError, lookup, resolve_attrs
from graphc.ops.im2col import Geometry
from graphc.program import check_source
from graphc.tensor_type import ShapeError, TensorType

torch = pytest.importorskip("torch")
F = torch.nn.functional



@pytest.fixture(autouse=True)
def one_torch_thread():
    # Thousands of tiny ops: with its thread pool on a loaded 2-core machine each took ~10 ms, alone ~0.1.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SIZES = range(1, 13)
KERNELS = range(1, 6)
STRIDES = range(1, 4)
PADS = range(0, 3)


def graphc_shape(op_name: str, size: int, attrs: dict):
    """Return (output [C, H, W] or None for an error, the warnings) of an op on a [1, size, size + 1] input."""
    op = lookup(op_name)
    in_types = [TensorType((1, size, size + 1))]
    try:
        resolved = resolve_attrs(op, attrs)
        out = op.shape_rule(in_types, resolved)
    except (ShapeError, AttrError):
        return None, []
    return out.shape, op.warn_rule(in_types, resolved, out)


def torch_rows_read(op_name: str, size: int, kernel: int, stride: int, pad: int, ceil_mode: bool = False):
    """Return (PyTorch's output shape or None when it refuses, the set of input rows and the set of
    input columns some window reads), read off the gradient of an all-ones window sum."""
    x = torch.ones((1, 1, size, size + 1), dtype=torch.float64, requires_grad=True)
    try:
        if op_name == "conv":
            out = F.conv2d(x, torch.ones((1, 1, kernel, kernel), dtype=torch.float64), stride=stride, padding=pad)
        else:
            # The average pool reads the same windows as the max pool, and every element of them gets gradient.
            out = F.avg_pool2d(x, kernel, stride, pad, ceil_mode=ceil_mode, count_include_pad=True)
    except RuntimeError:
        return None, set(), set()
    if min(out.shape) < 1:
        return None, set(), set()
    out.sum().backward()
    read = x.grad[0, 0].numpy() != 0
    return tuple(out.shape[2:]), set(np.flatnonzero(read.any(axis=1))), set(np.flatnonzero(read.any(axis=0)))


def named_rows(message: str, word: str) -> set[int]:
    """Return the rows (word="row") or columns a warning's message names."""
    found = re.search(rf"\b{word}s? (\d+)(?:(\.\.| and )(\d+))?", message)
    if found is None:
        return set()
    first = int(found.group(1))
    if found.group(2) is None:
        return {first}
    last = int(found.group(3))
    return set(range(first, last + 1)) if found.group(2) == ".." else {first, last}


def _grid(pools: bool):
    for size, kernel, stride, pad in itertools.product(SIZES, KERNELS, STRIDES, PADS):
        for ceil_mode in ((False, True) if pools else (False,)):
            yield size, kernel, stride, pad, ceil_mode


def _check_grid(op_name: str, pools: bool) -> dict:
    """Compare one op over the whole grid; return the counts of each outcome."""
    counts = {"cases": 0, "error": 0, "warn": 0, "silent": 0}
    for size, kernel, stride, pad, ceil_mode in _grid(pools):
        if op_name == "conv":
            attrs = {"filters": 1, "kernel": kernel, "stride": stride, "pad": pad}
        else:
            attrs = {"size": kernel, "stride": stride, "pad": pad, "ceil_mode": ceil_mode}
        ours, warnings = graphc_shape(op_name, size, attrs)
        theirs, rows, cols = torch_rows_read(op_name, size, kernel, stride, pad, ceil_mode)
        where = f"{op_name} size={size} kernel={kernel} stride={stride} pad={pad} ceil_mode={ceil_mode}"
        counts["cases"] += 1
        if theirs is None:
            assert ours is None, where
            counts["error"] += 1
            continue
        assert ours is not None and ours[1:] == theirs, (where, ours, theirs)
        unread_rows = set(range(size)) - rows
        unread_cols = set(range(size + 1)) - cols
        expected = kernel >= stride and bool(unread_rows or unread_cols)   # kernel < stride: skipping is the design
        assert bool(warnings) == expected, (where, warnings, unread_rows, unread_cols)
        if not warnings:
            counts["silent"] += 1
            continue
        counts["warn"] += 1
        (warning,) = warnings
        assert named_rows(warning.message, "row") == unread_rows, (where, warning.message)
        assert named_rows(warning.message, "column") == unread_cols, (where, warning.message)
        _check_suggestion(op_name, size, attrs, warning.help, where)
    return counts


def _check_suggestion(op_name: str, size: int, attrs: dict, help: str, where: str) -> None:
    """The pad (or kernel) the help names reads every row and column, by PyTorch's gradients too."""
    fix = re.search(r"; (pad|kernel|size)=(\d+|\[\d+, \d+\])(?: or ceil_mode=true)? reads them all$", help)
    assert fix is not None, (where, help)
    value = [int(v) for v in re.findall(r"\d+", fix.group(2))]
    fixed = {**attrs, fix.group(1): value[0] if len(value) == 1 else value}
    ours, warnings = graphc_shape(op_name, size, fixed)
    assert ours is not None and not warnings, (where, help, warnings)


def test_conv_sizes_agree_with_pytorch_over_the_grid():
    counts = _check_grid("conv", pools=False)
    assert counts["cases"] == len(SIZES) * len(KERNELS) * len(STRIDES) * len(PADS) == 540
    assert min(counts["error"], counts["warn"], counts["silent"]) > 20, counts


@pytest.mark.parametrize("op_name", ["maxpool", "avgpool"])
def test_pool_sizes_agree_with_pytorch_over_the_grid(op_name):
    counts = _check_grid(op_name, pools=True)
    assert counts["cases"] == 1080
    assert min(counts["error"], counts["warn"], counts["silent"]) > 20, counts


@pytest.mark.parametrize("size,kernel,stride", [(s, k, st) for s in range(1, 10) for k in (1, 3, 5) for st in (1, 2)])
def test_max_pool_ceil_mode_agrees_with_pytorch_on_sizes(size, kernel, stride):
    # The same windows as avg_pool2d's (the grid): max_pool2d's own size, as a direct check.
    try:
        theirs = tuple(F.max_pool2d(torch.zeros((1, 1, size, size)), kernel, stride, kernel // 2, ceil_mode=True).shape[2:])
    except RuntimeError:
        theirs = None
    ours, _ = graphc_shape("maxpool", size, {"size": kernel, "stride": stride, "pad": kernel // 2, "ceil_mode": True})
    assert (ours[1] if ours else None) == (theirs[0] if theirs else None)


# ---- the architectures issue 10 names --------------------------------------------------------

def _model(*lines: str) -> str:
    return "\n".join(["model m {", *(f"  {line}" for line in lines), "}"]) + "\n"


SILENT = [
    ("resnet stem 7x7/s2/p3 on 224", "input x: [3, 224, 224]", "output o = conv(x, 8, kernel=7, stride=2, pad=3)",
     (8, 112, 112)),
    ("3x3/s2/p1 on 28", "input x: [4, 28, 28]", "output o = conv(x, 8, kernel=3, stride=2, pad=1)", (8, 14, 14)),
    ("3x3/s2/p1 on 14", "input x: [4, 14, 14]", "output o = conv(x, 8, kernel=3, stride=2, pad=1)", (8, 7, 7)),
    ("1x1/s2 shortcut on 28", "input x: [4, 28, 28]", "output o = conv(x, 8, kernel=1, stride=2)", (8, 14, 14)),
    ("resnet 3x3/s2/p1 max-pool on 112", "input x: [4, 112, 112]", "output o = maxpool(x, 3, stride=2, pad=1)",
     (4, 56, 56)),
    ("alexnet pool with ceil_mode", "input x: [4, 28, 28]", "output o = maxpool(x, 3, stride=2, ceil_mode=true)",
     (4, 14, 14)),
    ("pad=same conv", "input x: [4, 9, 10]", "output o = conv(x, 8, kernel=[3, 5], pad=same)", (8, 9, 10)),
    ("pad=same pool", "input x: [4, 9, 10]", "output o = maxpool(x, 3, stride=1, pad=same)", (4, 9, 10)),
]


@pytest.mark.parametrize("name,input_line,call,shape", SILENT, ids=[s[0] for s in SILENT])
def test_architectures_check_clean(name, input_line, call, shape):
    graph = check_source(_model(input_line, call), "t.nn")
    assert graph.type_of("o").shape == shape
    assert graph.warnings == []


# (name, model lines, line, column, message, help)
WARNINGS = [
    ("alexnet overlapping pool on 28", ("input x: [4, 28, 28]", "output o = maxpool(x, 3, stride=2)"), 3, 14,
     "maxpool never reads input row 27 and column 27",
     "floor((28 + 2*0 - 3) / 2) + 1 = 13 windows cover rows 0..26; pad=1 or ceil_mode=true reads them all"),
    ("design example", ("input x: [6, 14, 14]", "output o = conv(x, 16, kernel=5, stride=2)"), 3, 14,
     "conv never reads input row 13 and column 13",
     "floor((14 + 2*0 - 5) / 2) + 1 = 5 windows cover rows 0..12; pad=1 reads them all"),
    ("rows only", ("input x: [1, 14, 15]", "output o = conv(x, 2, kernel=5, stride=2)"), 3, 14,
     "conv never reads input row 13",
     "floor((14 + 2*0 - 5) / 2) + 1 = 5 windows cover rows 0..12; pad=[1, 0] reads them all"),
    ("columns differ from rows", ("input x: [1, 9, 10]", "output o = avgpool(x, 2)"), 3, 14,
     "avgpool never reads input row 8",
     "floor((9 + 2*0 - 2) / 2) + 1 = 4 windows cover rows 0..7; pad=[1, 0] or ceil_mode=true reads them all"),
    ("two rows", ("input x: [1, 14, 14]", "output o = conv(x, 2, kernel=4, stride=4, pad=[0, 1])"), 3, 14,
     "conv never reads input rows 12 and 13",
     "floor((14 + 2*0 - 4) / 4) + 1 = 3 windows cover rows 0..11; pad=1 reads them all"),
    ("pool pad", ("input x: [1, 11, 11]", "output o = maxpool(x, 3)"), 3, 14,
     "maxpool never reads input rows 9 and 10 and columns 9 and 10",
     "floor((11 + 2*0 - 3) / 3) + 1 = 3 windows cover rows 0..8; pad=1 or ceil_mode=true reads them all"),
    # pad=3 would be more than half the window: a larger window instead.
    ("pool pad limit: a larger window", ("input x: [1, 7, 7]", "output o = maxpool(x, 4, pad=2)"), 3, 14,
     "maxpool never reads input row 6 and column 6",
     "floor((7 + 2*2 - 4) / 4) + 1 = 2 windows cover rows 0..5; size=5 or ceil_mode=true reads them all"),
    ("three rows", ("input x: [1, 11, 12]", "output o = conv(x, 1, kernel=4, stride=4)"), 3, 14,
     "conv never reads input rows 8..10",
     "floor((11 + 2*0 - 4) / 4) + 1 = 2 windows cover rows 0..7; pad=[1, 0] reads them all"),
    ("after a stem", ("input x: [1, 28, 28]", "c = conv(x, 4, kernel=5, pad=2) -> relu",
                      "output o = maxpool(c, 3, stride=2)"), 4, 14,
     "maxpool never reads input row 27 and column 27", None),
]


@pytest.mark.parametrize("name,lines,line,col,message,help", WARNINGS, ids=[w[0] for w in WARNINGS])
def test_dropped_rows_warning(name, lines, line, col, message, help):
    graph = check_source(_model(*lines), "t.nn")
    (warning,) = graph.warnings
    assert warning.level == "warning"
    assert (warning.span.line, warning.span.col) == (line, col)
    assert warning.message == message
    if help is not None:
        assert warning.help == help
    assert warning.render().startswith(f"t.nn:{line}:{col}: warning: {message}\n")


def test_a_block_used_twice_warns_once_per_call_site():
    source = ("block down(x) {\n  return maxpool(x, 3, stride=2)\n}\n"
              + _model("input x: [1, 28, 28]", "a = down(x)", "b = down(x)", "output o = a + b"))
    warnings = check_source(source, "t.nn").warnings
    assert len(warnings) == 1 and warnings[0].span.line == 2
    assert any(note.span is not None and note.span.line == 6 for note in warnings[0].notes)


# ---- kernels on floored and ceil-mode geometry ------------------------------------------------

@pytest.mark.parametrize("op_name,attrs", [
    ("conv", {"filters": 2, "kernel": 3, "stride": 2}),          # narrow columns, no padding: x itself
    ("conv", {"filters": 2, "kernel": [3, 2], "stride": [3, 1]}),   # wide columns (horizontal stride 1)
    ("conv", {"filters": 8, "kernel": [2, 3], "stride": [3, 1], "pad": 1}),   # full wide columns, padded
    ("maxpool", {"size": 3, "stride": 2}), ("avgpool", {"size": 3, "stride": 2}),
    ("maxpool", {"size": 2}), ("avgpool", {"size": 2}),           # the tiling fast paths, cropped
])
def test_unread_rows_get_zero_gradient_and_match_pytorch(op_name, attrs):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8, 7))
    args = [x]
    if op_name == "conv":
        kernel = resolve_attrs(lookup("conv"), attrs)["kernel"]
        args += [rng.standard_normal((attrs["filters"], 3, *kernel)), rng.standard_normal(attrs["filters"])]
    out, _, _ = run_op(op_name, args, [TensorType((3, 8, 7))], attrs)
    grad_out = rng.standard_normal(out.shape)
    _, grads, ctx = run_op(op_name, args, [TensorType((3, 8, 7))], attrs, grad_out=grad_out)
    a = ctx.attrs
    tx = torch.tensor(x, requires_grad=True)
    if op_name == "conv":
        ref = F.conv2d(tx, torch.tensor(args[1]), torch.tensor(args[2]), stride=a["stride"], padding=a["pad"])
    else:
        pool = F.max_pool2d if op_name == "maxpool" else F.avg_pool2d
        ref = pool(tx, a["size"], a["stride"] or a["size"], a["pad"])
    ref.backward(torch.tensor(grad_out))
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads[0], tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    unread = tx.grad.numpy() == 0
    assert unread[:, :, -1, :].all() or unread[:, :, :, -1].all()   # the floor dropped the last row or column
    assert (grads[0][unread] == 0).all()


def test_geometry_refuses_windows_past_the_padded_input():
    # A planned size one too large for the input: a kernel bug, never a user's.
    with pytest.raises(ValueError, match="reach past the padded input"):
        Geometry(1, 1, 8, 8, 3, 3, 2, 2, 0, 0, 4, 3)
    assert Geometry(1, 1, 8, 8, 3, 3, 2, 2, 0, 0, 4, 3, eh=1).hp == 9


# ---- --deny-warnings ------------------------------------------------------------------------

def _graphc(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graphc", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_deny_warnings_exits_1(tmp_path, capsys):
    path = tmp_path / "alexnet_pool.nn"
    path.write_text(_model("input x: [4, 28, 28]", "output o = maxpool(x, 3, stride=2)"))
    plain = _graphc("check", str(path), cwd=REPO)
    assert plain.returncode == 0, plain.stderr
    assert f"{path}:3:14: warning: maxpool never reads input row 27 and column 27" in plain.stderr
    denied = _graphc("check", "--deny-warnings", str(path), cwd=REPO)
    assert denied.returncode == 1, denied.stderr
    assert f"{path}:3:14: error: maxpool never reads input row 27 and column 27" in denied.stderr
    assert "--deny-warnings` turns every warning into an error" in denied.stderr
    assert "Traceback" not in denied.stderr and denied.stdout == ""
    # The same flag on the other commands that compile (in this process: the subprocess above is the exit path).
    for command in (["compile"], ["run"], ["viz", "-o", str(tmp_path / "m.svg")], ["bench", "--steps", "1"]):
        assert main([*command, "--deny-warnings", str(path)]) == 1, command
        assert "error: maxpool never reads input row 27" in capsys.readouterr().err
    clean = tmp_path / "clean.nn"
    clean.write_text(_model("input x: [4, 28, 28]", "output o = maxpool(x, 3, stride=2, ceil_mode=true)"))
    assert main(["check", "--deny-warnings", str(clean)]) == 0
    assert "warning" not in capsys.readouterr().err
