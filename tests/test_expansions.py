"""Fused kernels against their gate-level expansions.

Each op that declares an `expansion` (the op written with add, mul, max, exp,
log, sum, ...) is compiled twice for each of its gradcheck samples: once as the
fused op, once as a `.nn` program made of gates. Values and gradients must agree
in float64. A sample the language cannot write with gates is listed in SKIPPED
with the reason (and a test checks it really cannot); an op without an
expansion is listed in NO_EXPANSION (checked against central differences and
PyTorch instead), so a new op must choose one or the other.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from op_harness import Case

import graphc
from graphc.ops import all_ops, literal
from graphc.tensor_type import CLASS

EXPANDED = [op for op in all_ops() if op.expansion]

# Ops that are not a composition of gates the language can write (or are gates themselves).
NO_EXPANSION = {
    "add", "sub", "mul", "div", "pow", "max", "min", "exp", "log", "neg", "matmul",   # the gates
    "conv", "maxpool", "avgpool",                        # windows: no gate reads a window
    "batchnorm", "groupnorm", "instancenorm", "lrn",     # statistics over axes the gates do not group
    "flatten", "reshape", "concat", "sum", "mean",       # shape ops and reductions: the gates' own vocabulary
    "step",                                              # a comparison: no gate gives 0/1
    "dropout",                                           # random
    "hinge", "kl_div",                                   # need indexing / 0 * log 0 = 0, no gate has them
    "global_maxpool",                                    # a maximum over axes: max is a two-input gate
    "slice", "pad",                                      # indexing: no gate selects or places elements
}

_CLASS_TARGET = "a class-index target: no gate picks z[target]"
SKIPPED = {
    ("prelu", 1): "a per-sample scalar: the [1] slope broadcasts the result to [1]",
    ("prelu", 2): "a per-channel slope [C] would need the shape [C, 1] to broadcast over [C, L]",
    ("prelu", 3): "a per-channel slope [C] would need the shape [C, 1, 1] to broadcast over [C, H, W]",
    ("cross_entropy", 0): _CLASS_TARGET,
    ("cross_entropy", 1): _CLASS_TARGET,
    ("cross_entropy", 2): _CLASS_TARGET,
    ("cross_entropy", 5): _CLASS_TARGET,
}

CASES = [(op, i) for op in EXPANDED for i in range(len(op.samples)) if (op.name, i) not in SKIPPED]


def _program(op, case: Case) -> str | None:
    """Return a `.nn` program computing the op's expansion on the case's inputs, or None if it cannot."""
    lines = ["model expansion {"]
    for name, t in zip(op.inputs, case.in_types):
        if t.kind == CLASS:
            return None
        shape = ", ".join(map(str, t.shape))
        lines.append(f"  {'input' if t.batched else 'param'} {name}: [{shape}]")
    if not any(t.batched for t in case.in_types):
        lines.append("  input unused: [1]")   # a model needs an input; the expansion ignores it
    for spec in case.param_specs:
        shape = ", ".join(map(str, spec.shape(case.in_types, case.attrs)))
        lines.append(f"  param {spec.role}: [{shape}]")
    expr = op.expansion
    active = {spec.role for spec in case.param_specs}
    for spec in op.params:
        if spec.role not in active:   # linear's bias=false: the `+ bias` term adds nothing
            expr = re.sub(rf"\b{spec.role}\b(?!\s*=)", "0", expr)
    tensors = set(op.inputs) | {spec.role for spec in op.params}
    for attr, value in case.attrs.items():
        if attr not in tensors:   # linear's `bias=true` switch is not the `bias` tensor
            expr = re.sub(rf"\b{attr}\b(?!\s*=)", literal(value), expr)
    lines += [f"  output y = {expr}", "}"]
    return "\n".join(lines)


def _compiled(op, case: Case):
    """Return the compiled expansion of a case, or None when it cannot be written with gates."""
    text = _program(op, case)
    if text is None:
        return None
    try:
        program = graphc.compile_source(text, f"{op.name}-expansion.nn", dtype="float64")
    except graphc.GraphcError:
        return None
    if program.graph.type_of(program.graph.outputs["y"]).shape != case.out_type.shape:
        return None   # broadcasting made a different shape: not this op on this sample
    return program


def test_every_op_has_an_expansion_or_a_reason():
    names = {op.name for op in all_ops()}
    assert NO_EXPANSION <= names, f"unknown ops in NO_EXPANSION: {sorted(NO_EXPANSION - names)}"
    without = {op.name for op in all_ops() if not op.expansion}
    assert without == NO_EXPANSION, f"give {sorted(without - NO_EXPANSION)} an expansion or list them here"


def test_every_expanded_op_is_compared_at_least_once():
    compared = {op.name for op, _ in CASES}
    assert compared == {op.name for op in EXPANDED}


@pytest.mark.parametrize("name,index", sorted(SKIPPED), ids=[f"{n}-{i}" for n, i in sorted(SKIPPED)])
def test_skipped_samples_cannot_be_written_with_gates(name, index):
    op = next(op for op in EXPANDED if op.name == name)
    assert _compiled(op, Case(op, op.samples[index])) is None, f"{SKIPPED[(name, index)]}: it compiles now"


@pytest.mark.parametrize("op,index", CASES, ids=[f"{op.name}-{i}" for op, i in CASES])
def test_fused_op_equals_its_gate_expansion(op, index):
    case = Case(op, op.samples[index])
    program = _compiled(op, case)
    assert program is not None, f"{op.name} sample {index} cannot be written with gates: add it to SKIPPED"
    feeds = {}
    for name, t, arr in zip(op.inputs, case.in_types, case.args):
        if t.batched:
            feeds[name] = arr
        else:
            program.params[name][...] = arr
    if not feeds:
        feeds["unused"] = np.zeros((1, 1))
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
    compared = 0
    for name, g in zip(names, fused_grads):
        if g is None:
            continue
        np.testing.assert_allclose(g, scale * gate_grads[name], rtol=1e-8, atol=1e-10,
                                   err_msg=f"{op.name} sample {index}: gradient of {name}")
        compared += 1
    assert compared >= 1
