"""Fused kernels against their gate-level expansions.

Each op that declares an `expansion` (the op written with add, mul, max, exp,
log, sum, ...) is compiled twice for each of its gradcheck samples: once as the
fused op, once as a `.nn` program made of gates. Values and gradients must agree
in float64. Ops without an expansion (conv, pooling, batch statistics) are
checked against central differences and PyTorch instead.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from op_harness import Case

import graphc
from graphc.ops import all_ops
from graphc.tensor_type import CLASS

EXPANDED = [op for op in all_ops() if op.expansion]


def _literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _program(op, case: Case) -> str | None:
    """Return a `.nn` program computing the op's expansion on the case's inputs, or None if it cannot."""
    lines = ["model expansion {"]
    for name, t in zip(op.inputs, case.in_types):
        if t.kind == CLASS:
            return None
        shape = ", ".join(map(str, t.shape))
        lines.append(f"  {'input' if t.batched else 'param'} {name}: [{shape}]")
    for spec in case.param_specs:
        shape = ", ".join(map(str, spec.shape(case.in_types, case.attrs)))
        lines.append(f"  param {spec.role}: [{shape}]")
    expr = op.expansion
    tensors = set(op.inputs) | {spec.role for spec in case.param_specs}
    for attr, value in case.attrs.items():
        if attr not in tensors:   # linear's `bias=true` switch is not the `bias` tensor
            expr = re.sub(rf"\b{attr}\b(?!\s*=)", _literal(value), expr)
    lines += [f"  output y = {expr}", "}"]
    return "\n".join(lines)


def _compiled_cases(op):
    for index, sample in enumerate(op.samples):
        case = Case(op, sample)
        text = _program(op, case)
        if text is None:
            continue
        try:
            program = graphc.compile_source(text, f"{op.name}-expansion.nn", dtype="float64")
        except graphc.GraphcError:
            continue   # e.g. a per-channel shape the expansion's broadcasting cannot express
        if program.graph.type_of(program.graph.outputs["y"]).shape != case.out_type.shape:
            continue   # broadcasting made a different shape: not this op on this sample
        yield index, case, program


@pytest.mark.parametrize("op", EXPANDED, ids=[op.name for op in EXPANDED])
def test_fused_op_equals_its_gate_expansion(op):
    compared = 0
    for index, case, program in _compiled_cases(op):
        feeds = {}
        for name, t, arr in zip(op.inputs, case.in_types, case.args):
            if t.batched:
                feeds[name] = arr
            else:
                program.params[name][...] = arr
        for spec, arr in zip(case.param_specs, case.args[len(op.inputs):]):
            program.params[spec.role][...] = arr
        fused, _ = case.forward(train=False)
        expanded = program.run(feeds)["y"]
        batched_expansion = program.graph.type_of(program.graph.outputs["y"]).batched
        mean_over_batch = batched_expansion and not case.out_type.batched
        if mean_over_batch:
            expanded = expanded.mean(axis=0)
        np.testing.assert_allclose(fused, expanded, rtol=1e-9, atol=1e-10, err_msg=f"{op.name} sample {index}")

        grad_out = np.ones_like(fused)
        fused_grads = case.backward(grad_out, train=False)
        gate_grads = program.gradients(feeds)
        scale = 1.0 / case.batch if mean_over_batch else 1.0
        names = list(op.inputs) + [s.role for s in case.param_specs]
        for name, g in zip(names, fused_grads):
            if g is None:
                continue
            np.testing.assert_allclose(g, scale * gate_grads[name], rtol=1e-8, atol=1e-10,
                                       err_msg=f"{op.name} sample {index}: gradient of {name}")
        compared += 1
    assert compared >= 1, f"no sample of {op.name} could be written with gates"
