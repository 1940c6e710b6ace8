"""Targeted tests for the norm family: batchnorm train/eval and running
statistics against torch, float32 stays float32, shape-rule errors, and the
cases the registry samples do not reach (unbatched and non-contiguous inputs)."""
from __future__ import annotations

import numpy as np
import pytest
from op_harness import Case, run_op

from graphc.diagnostics import GraphcError
from graphc.ops import Sample, lookup, resolve_attrs
from graphc.tensor_type import ShapeError, TensorType

torch = pytest.importorskip("torch")
F = torch.nn.functional

BN = lookup("batchnorm")


def image(x, batched=True):
    """Return the TensorType of a run-time array x (batched: its leading axis is the batch)."""
    return [TensorType(x.shape[1:] if batched else x.shape, batched=batched)]


def bn_state(c, dtype):
    return {"running_mean": np.zeros(c, dtype), "running_var": np.ones(c, dtype)}


# ---- batchnorm: running statistics and eval mode ------------------------------

@pytest.mark.parametrize("per_sample,module", [((5,), "BatchNorm1d"), ((3, 7), "BatchNorm1d"),
                                               ((3, 4, 5), "BatchNorm2d")])
def test_running_stats_and_eval_output_match_torch(per_sample, module):
    rng = np.random.default_rng(0)
    c = per_sample[0]
    gamma, beta = 1 + 0.3 * rng.standard_normal(c), rng.standard_normal(c)
    m = getattr(torch.nn, module)(c, momentum=0.2, eps=1e-4).double()
    with torch.no_grad():
        m.weight.copy_(torch.tensor(gamma))
        m.bias.copy_(torch.tensor(beta))
    state = bn_state(c, np.float64)
    attrs = {"momentum": 0.2, "eps": 1e-4}
    for step in range(4):
        x = rng.standard_normal((6, *per_sample)) * (1 + step) + step
        out, _, _ = run_op("batchnorm", [x, gamma, beta], image(x), attrs, state=state)
        m.train()
        expected = m(torch.tensor(x)).detach().numpy()
        np.testing.assert_allclose(out, expected, atol=1e-10)
    np.testing.assert_allclose(state["running_mean"], m.running_mean.numpy(), atol=1e-12)
    np.testing.assert_allclose(state["running_var"], m.running_var.numpy(), atol=1e-12)
    assert not np.allclose(state["running_var"], 1.0)

    x = rng.standard_normal((5, *per_sample))
    before = {k: v.copy() for k, v in state.items()}
    out, _, _ = run_op("batchnorm", [x, gamma, beta], image(x), attrs, state=state, train=False)
    m.eval()
    np.testing.assert_allclose(out, m(torch.tensor(x)).detach().numpy(), atol=1e-10)
    for k in state:
        np.testing.assert_array_equal(state[k], before[k], err_msg="eval must not update " + k)


@pytest.mark.parametrize("shape", [(4,), (3, 2, 3)])
def test_eval_gradient_is_affine_and_matches_differences_and_torch(shape):
    case = Case(BN, Sample((shape,)), seed=5)
    c = shape[0]
    rng = np.random.default_rng(9)
    case.state0 = {"running_mean": rng.standard_normal(c), "running_var": rng.uniform(0.5, 2, c)}
    out, _ = case.forward(train=False)
    g = rng.standard_normal(out.shape)
    grads = case.backward(g, train=False)
    for i in range(3):
        np.testing.assert_allclose(grads[i], case.numeric(g, i, train=False), rtol=1e-6, atol=1e-7)
    x, w, b = (torch.tensor(a, requires_grad=True) for a in case.args)
    y = F.batch_norm(x, torch.tensor(case.state0["running_mean"]),
                     torch.tensor(case.state0["running_var"]), w, b, training=False, eps=1e-5)
    y.backward(torch.tensor(g))
    np.testing.assert_allclose(out, y.detach().numpy(), atol=1e-10)
    for mine, t in zip(grads, (x, w, b)):
        np.testing.assert_allclose(mine, t.grad.numpy(), atol=1e-10)
    # Eval is an affine map: the input gradient does not depend on the other samples' gradients.
    g2 = g.copy()
    g2[1:] = 0
    assert np.allclose(case.backward(g2, train=False)[0][0], grads[0][0])


def test_float32_stays_float32_and_state_keeps_dtype():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 3, 4, 4)).astype(np.float32)
    gamma, beta = np.ones(3, np.float32), np.zeros(3, np.float32)
    state = bn_state(3, np.float32)
    rm, rv = state["running_mean"], state["running_var"]
    out, _, ctx = run_op("batchnorm", [x, gamma, beta], image(x), state=state)
    assert out.dtype == np.float32
    assert state["running_mean"] is rm and state["running_var"] is rv, "state must update in place"
    assert rm.dtype == np.float32 and rv.dtype == np.float32
    np.testing.assert_allclose(rm, 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rv, 0.9 + 0.1 * x.var(axis=(0, 2, 3), ddof=1), rtol=1e-5)
    assert all(v.dtype == np.float32 for v in ctx.saved.values() if isinstance(v, np.ndarray))
    grads = BN.backward(ctx, np.ones_like(x), None, None)
    assert [g.dtype for g in grads] == [np.float32] * 3
    out, _, ctx = run_op("batchnorm", [x, gamma, beta], image(x), state=state, train=False)
    assert out.dtype == np.float32
    assert BN.backward(ctx, np.ones_like(x), None, None)[0].dtype == np.float32
    for name, params in [("layernorm", (np.ones((3, 4, 4), np.float32),) * 2),
                         ("groupnorm", (gamma, beta)), ("instancenorm", ()), ("lrn", ())]:
        attrs = {"groups": 3} if name == "groupnorm" else {}
        out, _, ctx = run_op(name, [x, *params], image(x), attrs)
        assert out.dtype == np.float32, name
        grads = lookup(name).backward(ctx, np.ones_like(x), [x, *params], out)
        assert all(g.dtype == np.float32 for g in grads), name


def test_batchnorm_batch_of_one_without_spatial_axes_is_a_clear_error():
    x = np.ones((1, 4))
    with pytest.raises(GraphcError, match="more than one value per channel"):
        run_op("batchnorm", [x, np.ones(4), np.zeros(4)], image(x), state=bn_state(4, np.float64))
    # Eval mode, or spatial axes, are fine with one sample.
    out, _, _ = run_op("batchnorm", [x, np.ones(4), np.zeros(4)], image(x), state=bn_state(4, np.float64),
                       train=False)
    np.testing.assert_allclose(out, 1 / np.sqrt(1 + 1e-5))
    x = np.arange(8.0).reshape(1, 4, 2)
    out, _, _ = run_op("batchnorm", [x, np.ones(4), np.zeros(4)], image(x), state=bn_state(4, np.float64))
    np.testing.assert_allclose(np.abs(out), 1 / np.sqrt(0.25 + 1e-5) * 0.5)


# ---- shape rules ---------------------------------------------------------------

def shape_error(name, shape, attrs=None, batched=True):
    op = lookup(name)
    with pytest.raises(ShapeError) as info:
        op.shape_rule([TensorType(shape, batched=batched)], resolve_attrs(op, attrs or {}))
    return info.value


def test_groupnorm_groups_must_divide_channels():
    err = shape_error("groupnorm", (6, 4), {"groups": 4})
    assert err.arg == "groups"
    assert "6 channels" in err.message and "4 groups" in err.message
    assert "1, 2, 3, 6" in err.help


def test_shape_rule_errors_point_at_the_input():
    assert shape_error("instancenorm", (5,)).arg == 0
    assert "layernorm" in shape_error("instancenorm", (5,)).help
    assert shape_error("instancenorm", (5, 1, 1)).arg == 0
    assert shape_error("batchnorm", (5,), batched=False).arg == 0
    assert shape_error("batchnorm", ()).arg == 0
    assert shape_error("layernorm", ()).arg == 0
    assert shape_error("lrn", ()).arg == 0
    assert shape_error("batchnorm", (5,), {"momentum": 1.5}).arg == "momentum"


def test_params_and_state_specs():
    t = [TensorType((4, 3, 3))]
    for name in ("batchnorm", "groupnorm", "layernorm"):
        op = lookup(name)
        attrs = resolve_attrs(op, {"groups": 2} if name == "groupnorm" else {})
        specs = op.active_params(attrs)
        assert [s.role for s in specs] == ["gamma", "beta"]
        assert [s.init for s in specs] == ["ones", "zeros"]
        assert not any(s.decay or s.follows_default for s in specs)
        expected = (4, 3, 3) if name == "layernorm" else (4,)
        assert all(s.shape(t, attrs) == expected for s in specs)
    inorm = lookup("instancenorm")
    assert inorm.active_params(resolve_attrs(inorm, {})) == ()
    assert len(inorm.active_params(resolve_attrs(inorm, {"affine": True}))) == 2
    assert [(s.role, s.fill, s.shape(t, {})) for s in BN.state] == [
        ("running_mean", 0.0, (4,)), ("running_var", 1.0, (4,))]
    assert [a.name for a in BN.attrs] == ["momentum", "eps"]
    assert [a.name for a in lookup("groupnorm").attrs][0] == "groups"
    assert [a.name for a in lookup("lrn").attrs] == ["size", "alpha", "beta", "k"]


def test_flops_per_sample():
    t = [TensorType((4, 3, 3))]
    assert BN.flops(t, t[0], resolve_attrs(BN, {})) == 7 * 36
    inorm = lookup("instancenorm")
    assert inorm.flops(t, t[0], resolve_attrs(inorm, {})) == 5 * 36
    lrn = lookup("lrn")
    assert lrn.flops(t, t[0], resolve_attrs(lrn, {})) == 9 * 36


# ---- inputs the samples do not cover ----------------------------------------------

def test_non_contiguous_input():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 5, 3)).transpose(0, 2, 1)    # per-sample [3, 5], strided
    assert not x.flags.c_contiguous
    gamma, beta = 1 + rng.standard_normal(3) * 0.3, rng.standard_normal(3)
    out, _, _ = run_op("groupnorm", [x, gamma, beta], image(x), {"groups": 3})
    expected = F.group_norm(torch.tensor(x), 3, torch.tensor(gamma), torch.tensor(beta)).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-10)
    out, _, _ = run_op("batchnorm", [x, gamma, beta], image(x), state=bn_state(3, np.float64))
    expected = F.batch_norm(torch.tensor(x), None, None, torch.tensor(gamma), torch.tensor(beta),
                            training=True).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-10)


def test_unbatched_layernorm_and_lrn():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3))
    out, _, ctx = run_op("layernorm", [x, np.ones((4, 3)), np.zeros((4, 3))], image(x, batched=False))
    np.testing.assert_allclose(out, F.layer_norm(torch.tensor(x), (4, 3)).numpy(), atol=1e-10)
    assert lookup("layernorm").backward(ctx, np.ones_like(x), None, None)[0].shape == x.shape
    out, _, ctx = run_op("lrn", [x], image(x, batched=False), {"size": 3, "alpha": 1.0})
    expected = F.local_response_norm(torch.tensor(x)[None], 3, alpha=1.0)[0].numpy()
    np.testing.assert_allclose(out, expected, atol=1e-10)


def test_large_offsets_stay_accurate_in_float32():
    # Two-pass variance: x = 1e4 + noise must still normalise to unit variance in float32.
    rng = np.random.default_rng(4)
    x64 = 1e4 + rng.standard_normal((3, 2, 50))
    x = x64.astype(np.float32)
    out, _, _ = run_op("layernorm", [x, np.ones((2, 50), np.float32), np.zeros((2, 50), np.float32)], image(x))
    expected = F.layer_norm(torch.tensor(x64), (2, 50)).numpy()
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, expected, atol=5e-3)
