"""Targeted tests for activations, reductions, dropout and losses: numerical stability
at logits of +-1e4, tie rules, train vs eval, label checks and shape-rule errors."""
from __future__ import annotations

import numpy as np
import pytest
from op_harness import Case, run_op

from graphc.ops import AttrError, all_ops, lookup, resolve_attrs
from graphc.tensor_type import CLASS, ShapeError, TensorType

FAMILIES = ("activation", "reduce", "regularize", "loss")


def vec(k, batched=True):
    return TensorType((k,), batched=batched)


def label(k, batched=True):
    return TensorType((), CLASS, batched, k)


# ---- cross_entropy and softmax at +-1e4 -----------------------------------------------

BIG = np.array([[1e4, -1e4, 0.0],      # target 1 sits at -1e4: loss 2e4
                [1e4, 1e4, -1e4],      # two tied maxima: softmax 1/2, 1/2, 0
                [-1e4, -1e4, 1e4]])    # target 2 is the winner: loss 0
BIG_TARGET = np.array([1, 0, 2])
BIG_SOFTMAX = np.array([[1.0, 0, 0], [0.5, 0.5, 0], [0, 0, 1.0]])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cross_entropy_is_finite_and_exact_at_1e4(dtype):
    z = BIG.astype(dtype)
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        loss, grads, _ = run_op("cross_entropy", [z, BIG_TARGET], [vec(3), label(3)], grad_out=1.0)
    assert loss.dtype == dtype and grads[0].dtype == dtype
    np.testing.assert_allclose(loss, (2e4 + np.log(2) + 0) / 3, rtol=1e-6)
    onehot = np.eye(3)[BIG_TARGET]
    np.testing.assert_allclose(grads[0], (BIG_SOFTMAX - onehot) / 3, atol=1e-7)
    assert grads[1] is None


def test_softmax_and_log_softmax_are_finite_at_1e4():
    t = [vec(3)]
    g = np.random.default_rng(0).standard_normal(BIG.shape)
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        p, (gp,), _ = run_op("softmax", [BIG], t, grad_out=g)
        logp, (glogp,), _ = run_op("log_softmax", [BIG], t, grad_out=g)
    np.testing.assert_allclose(p, BIG_SOFTMAX, atol=1e-12)
    expected_log = np.array([[0, -2e4, -1e4], [-np.log(2), -np.log(2), -2e4 - np.log(2)],
                             [-2e4, -2e4, 0]])
    np.testing.assert_allclose(logp, expected_log, rtol=1e-12, atol=1e-9)
    # Analytic rules: softmax y * (g - sum(g y)); log_softmax g - y * sum(g).
    np.testing.assert_allclose(gp, BIG_SOFTMAX * (g - (g * BIG_SOFTMAX).sum(1, keepdims=True)),
                               atol=1e-12)
    np.testing.assert_allclose(glogp, g - BIG_SOFTMAX * g.sum(1, keepdims=True), atol=1e-12)


def test_sigmoid_saturates_without_overflow_warnings():
    x = np.array([[-1e4, -800.0, 0.0, 800.0, 1e4]], np.float32)
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        y, (gx,), _ = run_op("sigmoid", [x], [vec(5)], grad_out=np.ones_like(x))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [[0, 0, 0.5, 1, 1]])
    np.testing.assert_array_equal(gx, [[0, 0, 0.25, 0, 0]])


def test_bce_with_logits_is_finite_at_1e4():
    x = np.array([[1e4, -1e4, 1e4]])
    t = np.array([[1.0, 0.0, 0.0]])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        loss, (gx, gt), _ = run_op("binary_cross_entropy_with_logits", [x, t], [vec(3), vec(3)],
                             grad_out=1.0)
    np.testing.assert_allclose(loss, 1e4 / 3)
    np.testing.assert_allclose(gx, [[0, 0, 1 / 3]])


def test_bce_clamps_its_logs_at_minus_100_like_torch():
    p = np.array([[0.0, 1.0, 0.5]])
    t = np.array([[1.0, 0.0, 1.0]])
    loss, _, _ = run_op("binary_cross_entropy", [p, t], [vec(3), vec(3)])
    np.testing.assert_allclose(loss, (100 + 100 + np.log(2)) / 3)


# ---- targets ---------------------------------------------------------------------

def test_class_index_and_one_hot_targets_agree():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((6, 7))
    y = rng.integers(0, 7, 6)
    g = 0.7
    loss_i, grads_i, _ = run_op("cross_entropy", [z, y], [vec(7), label(7)], grad_out=g)
    loss_h, grads_h, _ = run_op("cross_entropy", [z, np.eye(7)[y]], [vec(7), vec(7)], grad_out=g)
    np.testing.assert_allclose(loss_i, loss_h, rtol=1e-12)
    np.testing.assert_allclose(grads_i[0], grads_h[0], atol=1e-12)
    assert grads_i[1] is None and grads_h[1] is not None


@pytest.mark.parametrize("name", ["cross_entropy", "hinge"])
def test_class_count_mismatch_is_a_shape_error_on_the_label(name):
    op = lookup(name)
    with pytest.raises(ShapeError) as err:
        op.shape_rule([vec(12), label(10)], resolve_attrs(op, {}))
    assert err.value.arg == 1
    assert "12 classes" in err.value.message and "the label has 10 classes" in err.value.message
    assert err.value.help


def test_loss_shape_errors_point_at_the_right_argument():
    ce = lookup("cross_entropy")
    with pytest.raises(ShapeError) as err:
        ce.shape_rule([TensorType((3, 4)), label(4)], {})
    assert err.value.arg == 0
    with pytest.raises(ShapeError) as err:
        ce.shape_rule([vec(4), vec(5)], {})
    assert err.value.arg == 1 and "[5]" in err.value.message
    mse = lookup("mse")
    with pytest.raises(ShapeError) as err:
        mse.shape_rule([vec(4), label(4)], {})
    assert err.value.arg == 1
    with pytest.raises(ShapeError) as err:
        mse.shape_rule([vec(4, batched=False), vec(4)], {})
    assert err.value.arg == 1
    hinge = lookup("hinge")
    with pytest.raises(ShapeError) as err:
        hinge.shape_rule([vec(4), vec(4)], {"margin": 1.0})
    assert err.value.arg == 1


@pytest.mark.parametrize("op", [op for op in all_ops() if op.family == "loss"], ids=lambda op: op.name)
def test_losses_are_unbatched_scalars(op):
    case = Case(op, op.samples[0])
    assert case.out_type == TensorType((), batched=False)


def test_hinge_tie_at_the_margin_gets_subgradient_zero():
    s = np.array([[1.0, 0.0, 0.5]])   # margin - s_y + s_1 = 0 exactly: a tie, inactive
    loss, (gs, gy), _ = run_op("hinge", [s, np.array([0])], [vec(3), label(3)], grad_out=1.0)
    np.testing.assert_allclose(loss, 0.5 / 3)
    np.testing.assert_allclose(gs, [[-1 / 3, 0, 1 / 3]])
    assert gy is None


def test_mse_has_no_half_and_averages_every_element():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    t = np.zeros_like(x)
    loss, (gx, gt), _ = run_op("mse", [x, t], [vec(2), vec(2)], grad_out=1.0)
    np.testing.assert_allclose(loss, 30 / 4)
    np.testing.assert_allclose(gx, 2 * x / 4)
    np.testing.assert_allclose(gt, -2 * x / 4)


# ---- activations: tie rules -----------------------------------------------------------

def test_relu_gradient_at_exactly_zero_is_zero():
    x = np.array([[-1.0, 0.0, 2.0]])
    y, (gx,), _ = run_op("relu", [x], [vec(3)], grad_out=np.ones_like(x))
    np.testing.assert_array_equal(y, [[0, 0, 2]])
    np.testing.assert_array_equal(gx, [[0, 0, 1]])


def test_leaky_relu_and_elu_at_zero_follow_torch():
    x = np.array([[0.0]])
    _, (g_leaky,), _ = run_op("leaky_relu", [x], [vec(1)], {"slope": 0.1}, grad_out=np.ones_like(x))
    _, (g_elu,), _ = run_op("elu", [x], [vec(1)], {"alpha": 0.5}, grad_out=np.ones_like(x))
    np.testing.assert_allclose(g_leaky, [[0.1]])
    np.testing.assert_allclose(g_elu, [[0.5]])


def test_step_passes_no_gradient():
    x = np.array([[-2.0, 0.0, 3.0]])
    y, (gx,), _ = run_op("step", [x], [vec(3)], grad_out=np.ones_like(x))
    np.testing.assert_array_equal(y, [[0, 0, 1]])
    np.testing.assert_array_equal(gx, np.zeros_like(x))


def test_prelu_per_channel_uses_per_sample_dim_0():
    x = -np.ones((2, 3, 4))
    slope = np.array([0.1, 0.2, 0.3])
    y, (gx, gw), _ = run_op("prelu", [x, slope], [TensorType((3, 4))], {"per_channel": True},
                      grad_out=np.ones_like(x))
    np.testing.assert_allclose(y[:, :, 0], -np.tile(slope, (2, 1)))
    np.testing.assert_allclose(gw, [-8, -8, -8])   # x * g summed over batch and width
    spec = lookup("prelu").params[0]
    assert spec.shape([TensorType((3, 4))], {"per_channel": False}) == (1,)
    assert (spec.init, dict(spec.init_args), spec.decay) == ("constant", {"value": 0.25}, False)


def test_identity_returns_its_input_itself():
    x = np.arange(6.0).reshape(2, 3)
    y, (g,), _ = run_op("identity", [x], [vec(3)], grad_out=np.ones_like(x))
    assert y is x
    np.testing.assert_array_equal(g, np.ones_like(x))


# ---- dropout ----------------------------------------------------------------------------

def test_dropout_train_keeps_the_expected_fraction_and_scales_it():
    x = np.random.default_rng(2).uniform(1, 2, (500, 400)).astype(np.float32)
    y, (g,), _ = run_op("dropout", [x], [vec(400)], {"p": 0.3}, grad_out=np.ones_like(x))
    assert y.dtype == np.float32 and g.dtype == np.float32
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.005
    np.testing.assert_allclose(y[kept], x[kept] / 0.7, rtol=1e-6)
    assert abs(y.mean() - x.mean()) < 0.01 * x.mean()      # the mean is preserved
    np.testing.assert_allclose(g, kept / 0.7, rtol=1e-6)    # gradient: the same scaled mask


def test_dropout_eval_and_p_zero_are_the_identity():
    x = np.random.default_rng(3).standard_normal((4, 5))
    for attrs, train in (({"p": 0.5}, False), ({"p": 0.0}, True)):
        g = np.random.default_rng(4).standard_normal(x.shape)
        y, (gx,), _ = run_op("dropout", [x], [vec(5)], attrs, train=train, grad_out=g)
        np.testing.assert_array_equal(y, x)
        assert not np.shares_memory(y, x)
        np.testing.assert_array_equal(gx, g)


def test_dropout_masks_differ_between_steps_and_follow_the_rng():
    x = np.ones((10, 50))
    a, _, _ = run_op("dropout", [x], [vec(50)], seed=1)
    b, _, _ = run_op("dropout", [x], [vec(50)], seed=2)
    c, _, _ = run_op("dropout", [x], [vec(50)], seed=1)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_dropout_probability_out_of_range():
    op = lookup("dropout")
    with pytest.raises(ShapeError) as err:
        op.shape_rule([vec(3)], resolve_attrs(op, {"p": 1.0}))
    assert err.value.arg == "p"
    with pytest.raises(AttrError):
        resolve_attrs(op, {"p": -0.1})


# ---- reductions ---------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [2, -3, [0, 5], [1, -1]])
def test_reduce_bad_axis_is_a_shape_error(axis):
    for name in ("sum", "mean"):
        op = lookup(name)
        with pytest.raises(ShapeError) as err:
            op.shape_rule([TensorType((3, 4))], resolve_attrs(op, {"axis": axis}))
        assert err.value.arg == "axis" and err.value.help


def test_reduce_keeps_the_batch_axis():
    op = lookup("sum")
    t = TensorType((3, 4))
    assert op.shape_rule([t], resolve_attrs(op, {})) == TensorType(())
    assert op.shape_rule([t], resolve_attrs(op, {"axis": -1, "keepdims": True})) == TensorType((3, 1))
    assert op.shape_rule([TensorType((3, 4), batched=False)], resolve_attrs(op, {"axis": 0})) \
        == TensorType((4,), batched=False)
    x = np.arange(24.0).reshape(2, 3, 4)
    y, (g,), _ = run_op("mean", [x], [t], {"axis": 0}, grad_out=np.ones((2, 4)))
    np.testing.assert_allclose(y, x.mean(axis=1))
    np.testing.assert_allclose(g, np.full(x.shape, 1 / 3))


# ---- dtype: float32 stays float32 ----------------------------------------------------------

@pytest.mark.parametrize("op", [op for op in all_ops() if op.family in FAMILIES], ids=lambda op: op.name)
def test_float32_stays_float32(op):
    for sample in op.samples:
        case = Case(op, sample, dtype=np.float32)
        out, _ = case.forward()
        assert out.dtype == np.float32, f"{op.name} forward upcast"
        grads = case.backward(np.ones(out.shape, np.float32))
        for g in grads:
            assert g is None or g.dtype == np.float32, f"{op.name} gradient upcast"
