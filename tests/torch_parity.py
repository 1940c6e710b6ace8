"""Shared by the PyTorch parity tests: an op case's arguments as tensors, and torch's gradients.

Import after `pytest.importorskip("torch")`.
"""
from __future__ import annotations

import numpy as np
import torch


def torch_args(case) -> list:
    """Return the case's arguments as tensors: float64 (needing a gradient unless a label) or integer."""
    xs = []
    for a, kind, nondiff in zip(case.args, case.kinds, case.nondiff):
        if kind != "float":
            xs.append(torch.from_numpy(a))
        else:
            xs.append(torch.tensor(a, dtype=torch.float64, requires_grad=not nondiff))
    return xs


def torch_backward(xs: list, out, grad_out) -> tuple[np.ndarray, list]:
    """Backpropagate grad_out from torch's output; return (output, each argument's gradient or None)."""
    out.backward(torch.from_numpy(np.asarray(grad_out, dtype=np.float64)))
    return out.detach().numpy(), [x.grad.numpy() if x.requires_grad else None for x in xs]
