"""Registry-driven tests: every op's entry is complete, its shape rule agrees
with its forward kernel, its backward agrees with float64 central differences
and leaves grad_out alone, and the registry's string fields are checked."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from op_harness import Case

from graphc.ops import DOMAINS, FAMILIES, LAYOUTS, all_names, all_ops, find, lookup, register
from graphc.ops.init import INITIALISERS
from graphc.viz.scene import COLOURS

CASES = [(op, i) for op in all_ops() for i in range(len(op.samples))]
IDS = [f"{op.name}-{i}" for op, i in CASES]


@pytest.mark.parametrize("op,index", CASES, ids=IDS)
def test_forward_writes_planned_buffer_with_rule_shape(op, index):
    case = Case(op, op.samples[index])
    out, ctx = case.forward()
    assert out.shape == case.out_type.runtime_shape(case.batch)
    if op.returns_view:
        assert np.shares_memory(out, case.args[0])
    else:
        assert out is ctx.out, "forward must write into ctx.out and return it"
    assert np.all(np.isfinite(out))
    flops = op.flops(case.in_types, case.out_type, case.attrs)
    assert isinstance(flops, int) and flops >= 0


@pytest.mark.parametrize("op,index", CASES, ids=IDS)
def test_backward_matches_central_differences(op, index):
    case = Case(op, op.samples[index])
    out, _ = case.forward()
    grad_out = np.random.default_rng(7).standard_normal(out.shape)
    before = [a.copy() for a in case.args]
    grads = case.backward(grad_out)
    assert len(grads) == len(case.args)
    for a, b in zip(case.args, before):
        np.testing.assert_array_equal(a, b, err_msg="backward modified an argument")
    differentiable = [not nondiff and kind == "float" for nondiff, kind in zip(case.nondiff, case.kinds)]
    assert any(differentiable), f"{op.name} sample {index} has no argument to gradcheck"
    for i, g in enumerate(grads):
        if not differentiable[i]:
            assert g is None, f"argument {i} is not differentiable but got a gradient"
            continue
        assert g is not None and g.shape == case.args[i].shape
        numeric = case.numeric(grad_out, i)
        np.testing.assert_allclose(g, numeric, rtol=1e-5, atol=1e-6,
                                   err_msg=f"{op.name} sample {index} argument {i}")


@pytest.mark.parametrize("op,index", CASES, ids=IDS)
def test_backward_leaves_grad_out_unchanged(op, index):
    """The contract: a rule may return grad_out itself but never write into it (the
    executor hands the same array to every input of a fan-out)."""
    case = Case(op, op.samples[index])
    out, _ = case.forward()
    grad_out = np.random.default_rng(8).standard_normal(out.shape)
    kept = grad_out.copy()
    grads = case.backward(grad_out)
    np.testing.assert_array_equal(grad_out, kept, err_msg=f"{op.name} backward wrote into grad_out")
    # And a returned grad_out is still the caller's, unchanged after a second backward.
    case.backward(grad_out)
    np.testing.assert_array_equal(grad_out, kept)
    assert len(grads) == len(case.args)


def test_string_fields_name_known_values():
    for op in all_ops():
        assert op.family in FAMILIES and op.domain in DOMAINS, op.name
        for p in op.params:
            assert p.layout in LAYOUTS and p.init in INITIALISERS, (op.name, p.role)


@pytest.mark.parametrize("change,problem", [
    ({"family": "layers"}, "family='layers'"),
    ({"domain": "positve"}, "domain='positve'"),
    ({"saves": "input"}, "saves='input'"),
])
def test_register_rejects_unknown_strings(change, problem):
    broken = dataclasses.replace(lookup("relu"), name="relu_copy", **change)
    with pytest.raises(TypeError, match=problem):
        register(broken)
    assert find("relu_copy") is None


def test_register_rejects_unknown_parameter_layout_and_initialiser():
    linear = lookup("linear")
    weight, bias = linear.params
    for spec, problem in [(dataclasses.replace(weight, layout="dense"), "layout 'dense'"),
                          (dataclasses.replace(weight, init="kaiming"), "initialiser 'kaiming'"),
                          (dataclasses.replace(weight, init="normal", init_args=(("sd", 1.0),)), "sd")]:
        with pytest.raises(TypeError, match=problem):
            register(dataclasses.replace(linear, name="linear_copy", other_names=(), params=(spec, bias)))
    assert find("linear_copy") is None


def test_lookup_raises_on_unknown_and_find_returns_none():
    assert lookup("affine") is lookup("linear") is find("affine")
    assert "affine" in all_names()
    assert find("convolution") is None
    with pytest.raises(KeyError, match="no op called 'convolution'"):
        lookup("convolution")


def test_viz_has_a_colour_for_every_family():
    assert set(FAMILIES) <= set(COLOURS), f"add a colour for {sorted(set(FAMILIES) - set(COLOURS))}"
