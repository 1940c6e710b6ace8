"""Registry-driven tests: every op's entry is complete, its shape rule agrees
with its forward kernel, and its backward agrees with float64 central differences."""
from __future__ import annotations

import numpy as np
import pytest
from op_harness import Case

from graphc.ops import all_ops

CASES = [(op, i) for op in all_ops() for i in range(len(op.samples))]
IDS = [f"{op.name}-{i}" for op, i in CASES]


@pytest.mark.parametrize("op,index", CASES, ids=IDS)
def test_forward_writes_planned_buffer_with_rule_shape(op, index):
    case = Case(op, op.samples[index])
    out, ctx = case.forward()
    assert out.shape == case.out_type.runtime_shape(case.batch)
    if op.aliases:
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
    checked = 0
    for i, g in enumerate(grads):
        if case.nondiff[i] or case.kinds[i] != "float":
            assert g is None, f"argument {i} is not differentiable but got a gradient"
            continue
        assert g is not None and g.shape == case.args[i].shape
        numeric = case.numeric(grad_out, i)
        np.testing.assert_allclose(g, numeric, rtol=1e-5, atol=1e-6,
                                   err_msg=f"{op.name} sample {index} argument {i}")
        checked += 1
    assert checked or all(case.nondiff) or op.family == "shape"
