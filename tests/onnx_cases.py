"""One gradcheck sample of one op as a single-node ONNX model (shared by the export and import tests)."""
from __future__ import annotations

import numpy as np
from op_harness import Case

from graphc.tools.onnx_export import Emitter
from graphc.tools.onnx_export_ops import EXPORTERS, OpView


def single_op_model(op, index: int):
    """Return (model, feeds, expected): sample `index` of `op` exported alone, its inputs by ONNX name
    (`in0`, `in1`, ...), and graphc's eval-mode float32 output (non-trivial batchnorm statistics)."""
    case = Case(op, op.samples[index], seed=index, dtype=np.float32)
    rng = np.random.default_rng(index)
    for role, value in case.state0.items():   # non-trivial running statistics for batchnorm
        value[...] = rng.uniform(0.5, 1.5, value.shape) if role == "running_var" else rng.normal(0, 1, value.shape)
    expected, _ = case.forward(train=False)
    n_in = len(case.in_types)
    inputs = [f"in{i}" for i in range(n_in)]
    params = [f"{op.name}.{spec.role}" for spec in case.param_specs]
    state = {role: f"{op.name}.{role}" for role in case.state0}
    em = Emitter(21 if op.name == "groupnorm" else 17)
    EXPORTERS[op.name](em, OpView(op.name, "out", inputs, case.in_types, case.out_type, case.attrs, params, state))
    initializers = {**dict(zip(params, case.args[n_in:])), **{state[r]: v for r, v in case.state0.items()}}
    model = em.to_proto("op", list(zip(inputs, case.in_types)), {"out": case.out_type}, initializers)
    return model, dict(zip(inputs, case.args[:n_in])), expected
