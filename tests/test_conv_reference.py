"""The registered conv kernel (ops/conv_fast.py's column layouts) against the textbook
reference (ops/im2col.py: im2col, one GEMM, col2im): forward values and every gradient
on random geometries, float64, covering wide, narrow and row columns."""
from __future__ import annotations

import numpy as np
import pytest
from op_harness import run_op

from graphc.ops.conv_fast import column_geometry, row_columns_pay
from graphc.ops.im2col import col2im, conv_backward, conv_forward, geometry, im2col
from graphc.tensor_type import TensorType

GEOMETRIES = 60


def _random_conv(rng: np.random.Generator) -> tuple[tuple[int, int, int, int], dict]:
    """Return ((N, C, H, W), conv attributes) for a random geometry; its output size may be floored."""
    kernel = tuple(int(k) for k in rng.integers(1, 6, 2))
    stride = tuple(int(s) for s in rng.integers(1, 4, 2))
    pad = tuple(int(rng.integers(0, k)) for k in kernel)
    size = []
    for k, s, p in zip(kernel, stride, pad):
        out = int(rng.integers(1, 13))
        # floor((size + 2p - k) / s) + 1 = out: pick the output, derive the input plus rows the
        # floor leaves unread (_cases drops sizes < 1).
        size.append((out - 1) * s + k - 2 * p + int(rng.integers(0, s)))
    n, c = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    attrs = {"filters": int(rng.integers(1, 7)), "kernel": list(kernel), "stride": list(stride),
             "pad": list(pad), "bias": bool(rng.integers(0, 2))}
    return (n, c, *size), attrs


def _cases():
    rng = np.random.default_rng(2024)
    cases = []
    while len(cases) < GEOMETRIES:
        shape, attrs = _random_conv(rng)
        if min(shape[2:]) >= 1:
            cases.append((shape, attrs))
    return cases


CASES = _cases()


def _layout(shape, attrs, out_hw) -> str:
    geo = column_geometry(shape, {k: tuple(v) if isinstance(v, list) else v for k, v in attrs.items()}, out_hw)
    if not geo.wide:
        return "narrow"
    return "rows" if row_columns_pay(geo, attrs["filters"]) else "wide"


@pytest.mark.parametrize("shape,attrs", CASES, ids=[f"{s}-{a}" for s, a in CASES])
def test_fast_conv_matches_the_reference(shape, attrs):
    rng = np.random.default_rng(sum(shape))
    n, c, h, w = shape
    x = rng.standard_normal(shape)
    weight = rng.standard_normal((attrs["filters"], c, *attrs["kernel"]))
    bias = rng.standard_normal(attrs["filters"]) if attrs["bias"] else None
    args = [x, weight] + ([bias] if bias is not None else [])
    out, _, ctx = run_op("conv", args, [TensorType((c, h, w))], attrs)
    geo = geometry(shape, ctx.attrs, ctx.out_type.shape[1:], ctx.attrs["kernel"])
    ref_out, cols = conv_forward(x, weight, bias, geo)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-12)

    grad_out = rng.standard_normal(out.shape)
    _, grads, _ = run_op("conv", args, [TensorType((c, h, w))], attrs, grad_out=grad_out)
    ref_grads = conv_backward(grad_out, weight, cols, geo)
    assert len(grads) == len(args)
    for name, ours, ref in zip(("input", "weight", "bias"), grads, ref_grads):
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-11, err_msg=f"{name} gradient")


def test_geometries_cover_every_column_layout():
    layouts = set()
    for shape, attrs in CASES:
        h, w = shape[2:]
        oh = (h + 2 * attrs["pad"][0] - attrs["kernel"][0]) // attrs["stride"][0] + 1
        ow = (w + 2 * attrs["pad"][1] - attrs["kernel"][1]) // attrs["stride"][1] + 1
        layouts.add(_layout(shape, attrs, (oh, ow)))
    assert layouts == {"narrow", "wide", "rows"}


def test_col2im_is_the_adjoint_of_im2col():
    """<im2col(x), y> == <x, col2im(y)> for every x, y: col2im is im2col's transpose,
    which is what makes it the input gradient."""
    rng = np.random.default_rng(3)
    geo = geometry((2, 3, 7, 6), {"stride": (2, 1), "pad": (1, 2)}, (4, 8), (3, 3))
    x = rng.standard_normal((2, 3, 7, 6))
    y = rng.standard_normal((2 * 4 * 8, 3 * 3 * 3))
    assert im2col(x, geo).shape == y.shape
    np.testing.assert_allclose(np.sum(im2col(x, geo) * y), np.sum(x * col2im(y, geo)), rtol=1e-12)
