"""Targeted tests for the layer and shape ops: LeNet-5's parameter count through
the shape rules, shape-rule messages, tie rules, the conv fast paths (wide
columns, skipped input gradient, pooled buffers) and float32 throughout."""
from __future__ import annotations

import math

import numpy as np
import pytest
from op_harness import Case, run_op

from graphc.ops import Ctx, Sample, conv_fast, lookup, resolve_attrs
from graphc.tensor_type import ShapeError, TensorType


def apply(name, in_types, **attrs):
    """Return (out_type, attrs, param shapes) of one op applied to input types."""
    op = lookup(name)
    resolved = resolve_attrs(op, attrs)
    out = op.shape_rule(list(in_types), resolved)
    shapes = {p.role: p.shape(list(in_types), resolved) for p in op.active_params(resolved)}
    return out, resolved, shapes


# ---- LeNet-5 ---------------------------------------------------------------------

LENET = [("conv", {"filters": 6, "kernel": 5, "pad": 2}), ("maxpool", {"size": 2}),
         ("conv", {"filters": 16, "kernel": 5}), ("maxpool", {"size": 2}), ("flatten", {}),
         ("linear", {"units": 120}), ("linear", {"units": 84}), ("linear", {"units": 10})]


def test_lenet5_shapes_and_parameter_count():
    t = TensorType((1, 28, 28))
    shapes, total = [], 0
    for name, attrs in LENET:
        t, _, params = apply(name, [t], **attrs)
        shapes.append(t.shape)
        total += sum(math.prod(s) for s in params.values())
    assert shapes == [(6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5), (400,), (120,), (84,), (10,)]
    assert total == 61_706


def test_lenet5_flops():
    out, resolved, _ = apply("conv", [TensorType((1, 28, 28))], filters=6, kernel=5, pad=2)
    assert lookup("conv").flops([TensorType((1, 28, 28))], out, resolved) == 2 * 25 * 6 * 784 + 6 * 784
    out, resolved, _ = apply("linear", [TensorType((400,))], units=120)
    assert lookup("linear").flops([TensorType((400,))], out, resolved) == 2 * 400 * 120 + 120


def test_parameter_specs():
    conv, linear = lookup("conv"), lookup("linear")
    assert lookup("affine") is linear
    for op, layout in ((conv, "conv"), (linear, "linear")):
        weight, bias = op.params
        assert (weight.role, weight.init, weight.layout, weight.decay) == ("weight", "he", layout, True)
        assert (bias.role, bias.init, bias.decay, bias.follows_default) == ("bias", "zeros", False, False)
    assert [p.role for p in conv.active_params(resolve_attrs(conv, {"filters": 2, "bias": False}))] == ["weight"]
    _, _, shapes = apply("conv", [TensorType((3, 9, 9))], filters=4, kernel=[3, 2])
    assert shapes == {"weight": (4, 3, 3, 2), "bias": (4,)}
    _, _, shapes = apply("linear", [TensorType((2, 7))], units=5)
    assert shapes == {"weight": (7, 5), "bias": (5,)}


def test_positional_attribute_order():
    names = {op: [a.name for a in lookup(op).attrs] for op in ("linear", "conv", "maxpool", "concat")}
    assert names == {"linear": ["units", "bias"], "conv": ["filters", "kernel", "stride", "pad", "bias"],
                     "maxpool": ["size", "stride", "pad", "ceil_mode"], "concat": ["axis"]}


# ---- shape-rule messages -----------------------------------------------------------

def test_conv_size_rounds_down_as_pytorch():
    # (14 - 5) / 2 + 1 = 5.5 windows: the floor, 5 (row and column 13 unread: a warning, tests/test_rounding.py).
    out, _, _ = apply("conv", [TensorType((6, 14, 14))], filters=16, kernel=5, stride=2)
    assert out.shape == (16, 5, 5)


def test_size_messages_name_the_axis_and_op():
    assert apply("conv", [TensorType((1, 8, 7))], filters=2, kernel=2, stride=2)[0].shape == (2, 4, 3)
    assert apply("maxpool", [TensorType((1, 7, 8))])[0].shape == (1, 3, 4)
    assert apply("avgpool", [TensorType((1, 8, 7))], ceil_mode=True)[0].shape == (1, 4, 4)
    with pytest.raises(ShapeError, match="^conv output height would be less than 1"):
        apply("conv", [TensorType((1, 4, 4))], filters=2, kernel=5)
    with pytest.raises(ShapeError, match="^maxpool output width would be less than 1"):
        apply("maxpool", [TensorType((1, 4, 2))], size=4, stride=1, ceil_mode=True)


def test_conv_needs_channels_height_width():
    with pytest.raises(ShapeError) as err:
        apply("conv", [TensorType((784,))], filters=6)
    assert "[channels, height, width]" in err.value.message and "[784]" in err.value.message
    assert err.value.arg == 0 and "reshape" in err.value.help


def test_pool_pad_at_most_half_the_window():
    with pytest.raises(ShapeError) as err:
        apply("maxpool", [TensorType((1, 8, 8))], size=2, pad=2)
    assert err.value.arg == "pad"
    assert apply("maxpool", [TensorType((1, 8, 8))], size=2, stride=2, pad=1)[0].shape == (1, 5, 5)


def test_linear_rejects_scalars_and_class_labels():
    with pytest.raises(ShapeError, match="vector per sample"):
        apply("linear", [TensorType(())], units=3)
    with pytest.raises(ShapeError, match="class"):
        apply("linear", [TensorType((), "class", True, 10)], units=3)


def test_reshape_messages_show_both_shapes_and_counts():
    with pytest.raises(ShapeError) as err:
        apply("reshape", [TensorType((6, 5, 5))], shape=[100])
    assert err.value.message == "cannot reshape [6, 5, 5] (150 elements) to [100] (100 elements)"
    assert err.value.arg == "shape"
    with pytest.raises(ShapeError, match="150 is not a multiple of 4"):
        apply("reshape", [TensorType((6, 5, 5))], shape=[-1, 4])
    with pytest.raises(ShapeError, match="at most one -1"):
        apply("reshape", [TensorType((6,))], shape=[-1, -1])
    assert apply("reshape", [TensorType((6, 5, 5))], shape=[-1, 25])[0].shape == (6, 25)
    assert apply("reshape", [TensorType((784,))], shape=[1, 28, 28])[0].shape == (1, 28, 28)


def test_concat_messages():
    with pytest.raises(ShapeError) as err:
        apply("concat", [TensorType((2, 3)), TensorType((2, 3)), TensorType((4, 3))], axis=1)
    assert err.value.message == "concat input 2 differs from input 0 in dimension 0: 4 vs 2 ([4, 3] vs [2, 3])"
    assert err.value.arg == 2
    with pytest.raises(ShapeError, match="batched and unbatched") as err:
        apply("concat", [TensorType((3,)), TensorType((3,), batched=False)])
    assert err.value.arg == 1
    with pytest.raises(ShapeError, match="out of range") as err:
        apply("concat", [TensorType((3,)), TensorType((3,))], axis=1)
    assert err.value.arg == "axis"
    with pytest.raises(ShapeError, match="1 axes"):
        apply("concat", [TensorType((3, 1)), TensorType((3,))])
    out, _, _ = apply("concat", [TensorType((2, 3)), TensorType((2, 5))], axis=-1)
    assert out.shape == (2, 8) and out.batched
    assert apply("concat", [TensorType((4,))])[0].shape == (4,)


# ---- tie rules and padding ----------------------------------------------------------

def test_maxpool_routes_ties_to_the_first_maximum():
    # Two 2x2 windows: all equal (zeros, as after relu), and a tie between offsets 1 and 2.
    x = np.array([[[[0., 0., 1., 5.], [0., 0., 5., 2.]]]])
    out, (dx,), _ = run_op("maxpool", [x], [TensorType((1, 2, 4))], {"size": 2}, grad_out=np.array([[[[3., 7.]]]]))
    np.testing.assert_array_equal(out, [[[[0., 5.]]]])
    np.testing.assert_array_equal(dx, [[[[3., 0., 0., 7.], [0., 0., 0., 0.]]]])


def test_maxpool_overlapping_windows_each_route_to_their_first_maximum():
    x = np.array([[[[0., 2., 2., 0.]]]])
    _, (dx,), _ = run_op("maxpool", [x], [TensorType((1, 1, 4))], {"size": [1, 2], "stride": 1},
                   grad_out=np.ones((1, 1, 1, 3)))
    np.testing.assert_array_equal(dx, [[[[0., 2., 1., 0.]]]])


def test_maxpool_padding_never_wins():
    x = -1.0 - np.arange(16.0).reshape(1, 1, 4, 4)     # all negative: a zero pad would win
    out, (dx,), _ = run_op("maxpool", [x], [TensorType((1, 4, 4))], {"size": 2, "pad": 1},
                     grad_out=np.ones((1, 1, 3, 3)))
    np.testing.assert_array_equal(out[0, 0], [[-1, -2, -4], [-5, -6, -8], [-13, -14, -16]])
    assert dx.sum() == 9 and np.all(dx >= 0)


def test_avgpool_counts_padded_zeros():
    x = np.ones((1, 1, 3, 3))
    out, (dx,), _ = run_op("avgpool", [x], [TensorType((1, 3, 3))], {"size": 3, "stride": 1, "pad": 1},
                     grad_out=np.ones((1, 1, 3, 3)))
    np.testing.assert_allclose(out[0, 0], [[4 / 9, 6 / 9, 4 / 9], [6 / 9, 1, 6 / 9], [4 / 9, 6 / 9, 4 / 9]])
    np.testing.assert_allclose(dx[0, 0], out[0, 0])   # each input sits in as many windows as it has neighbours


# ---- conv paths ---------------------------------------------------------------------

def conv_case(shape, attrs, dtype=np.float64, batch=3, seed=0):
    return Case(lookup("conv"), Sample((shape,), attrs), seed=seed, dtype=dtype, batch=batch)


def test_samples_cover_wide_and_narrow_columns():
    widths = set()
    for sample in lookup("conv").samples:
        case = Case(lookup("conv"), sample)
        t = case.in_types[0]
        geo = conv_fast.column_geometry(t.runtime_shape(1) if t.batched else (1, *t.shape),
                                        case.attrs, case.out_type.shape[1:])
        widths.add(geo.owc == geo.wp and geo.wp != geo.ow)
    assert widths == {True, False}


def test_wide_and_narrow_columns_agree(monkeypatch):
    case = conv_case((3, 9, 8), {"filters": 4, "kernel": [3, 2], "stride": [2, 1], "pad": 1})
    grad_out = np.random.default_rng(1).standard_normal(case.forward()[0].shape)
    wide_out, wide_grads = case.forward()[0].copy(), case.backward(grad_out)
    monkeypatch.setattr(conv_fast, "WIDE_LIMIT", 0.0)
    np.testing.assert_allclose(case.forward()[0], wide_out, atol=1e-12)
    for a, b in zip(case.backward(grad_out), wide_grads):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_first_conv_skips_the_input_gradient_and_rebuilds_missing_columns():
    case = conv_case((2, 6, 6), {"filters": 3, "kernel": 3, "pad": 1})
    x, w, b = case.args
    grad_out = np.random.default_rng(2).standard_normal((3, 3, 6, 6))
    _, full, _ = run_op("conv", [x, w, b], case.in_types, case.attrs, grad_out=grad_out)
    _, skipped, _ = run_op("conv", [x, w, b], case.in_types, case.attrs, needs=(False, True, True), grad_out=grad_out)
    assert skipped[0] is None
    np.testing.assert_allclose(skipped[1], full[1], atol=1e-12)
    np.testing.assert_allclose(skipped[2], full[2], atol=1e-12)
    # A forward told that nothing needs gradients keeps no columns; backward rebuilds them.
    op = lookup("conv")
    ctx = Ctx(case.attrs, case.in_types, case.out_type, needs=(False, False, False),
              out=np.empty((3, 3, 6, 6)))
    op.forward(ctx, x, w, b)
    assert "cols" not in ctx.saved
    ctx.needs = (True, True, True)
    for a, e in zip(op.backward(ctx, grad_out, [x, w, b], None), full):
        np.testing.assert_allclose(a, e, atol=1e-12)


def test_interleaved_convs_do_not_share_pooled_columns():
    """Two convs of the same shape run forward, forward, backward, backward (as in
    a network): each backward must see its own columns."""
    case = conv_case((2, 5, 5), {"filters": 2, "kernel": 3})
    x1, w, b = case.args
    x2 = x1[::-1].copy() * 2.0
    grad_out = np.random.default_rng(4).standard_normal((3, 2, 3, 3))
    _, alone, _ = run_op("conv", [x1, w, b], case.in_types, case.attrs, grad_out=grad_out)
    op = lookup("conv")
    ctxs = []
    for x in (x1, x2):
        ctx = Ctx(case.attrs, case.in_types, case.out_type, needs=(True, True, True),
                  out=np.empty((3, 2, 3, 3)))
        op.forward(ctx, x, w, b)
        ctxs.append(ctx)
    first = op.backward(ctxs[0], grad_out, [x1, w, b], None)
    op.backward(ctxs[1], grad_out, [x2, w, b], None)
    for a, e in zip(first, alone):
        np.testing.assert_allclose(a, e, atol=1e-12)


@pytest.mark.parametrize("name,shape,attrs", [
    ("conv", (1, 28, 28), {"filters": 6, "kernel": 5, "pad": 2}),
    ("conv", (6, 14, 14), {"filters": 16, "kernel": 5}),
    ("conv", (3, 9, 9), {"filters": 4, "kernel": 3, "stride": 2, "pad": 1}),
    ("maxpool", (6, 28, 28), {"size": 2}),
    ("maxpool", (3, 9, 9), {"size": 3, "stride": 2, "pad": 1}),
    ("avgpool", (6, 28, 28), {"size": 2}),
    ("avgpool", (3, 9, 9), {"size": 3, "stride": 2, "pad": 1}),
    ("linear", (400,), {"units": 120}),
])
def test_float32_stays_float32(name, shape, attrs):
    case = Case(lookup(name), Sample((shape,), attrs), dtype=np.float32, batch=4)
    out, _ = case.forward()
    assert out.dtype == np.float32
    grads = case.backward(np.ones(out.shape, np.float32))
    assert [g.dtype for g in grads] == [np.dtype(np.float32)] * len(grads)


# ---- shape ops ---------------------------------------------------------------------

def test_flatten_and_reshape_are_views():
    x = np.arange(2 * 16 * 25, dtype=np.float32).reshape(2, 16, 5, 5)
    out, (dx,), _ = run_op("flatten", [x], [TensorType((16, 5, 5))], {}, grad_out=np.ones((2, 400), np.float32))
    assert out.shape == (2, 400) and np.shares_memory(out, x)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(out[1], x[1].reshape(-1))
    out, (dx,), _ = run_op("reshape", [out], [TensorType((400,))], {"shape": [16, -1]},
                     grad_out=np.zeros((2, 16, 25), np.float32))
    assert out.shape == (2, 16, 25) and np.shares_memory(out, x) and dx.shape == (2, 400)


def test_concat_along_last_axis_and_gradient_slices():
    a, b = np.ones((2, 3, 2)), np.zeros((2, 3, 1))
    out, grads, _ = run_op("concat", [a, b], [TensorType((3, 2)), TensorType((3, 1))], {"axis": -1},
                     needs=(True, False), grad_out=np.arange(18.0).reshape(2, 3, 3))
    np.testing.assert_array_equal(out[..., :2], 1)
    np.testing.assert_array_equal(out[..., 2], 0)
    np.testing.assert_array_equal(grads[0], np.arange(18.0).reshape(2, 3, 3)[..., :2])
    assert grads[1] is None
