"""Losses: a prediction and a target in, one unbatched scalar out.

Each loss follows its torch.nn.functional definition (named in its doc) and
reduces to the mean over the batch unless its doc says otherwise. Class-index
targets (TensorType kind CLASS) never get a gradient; float targets do, as in
PyTorch, though the runtime never asks for the gradient of a label. A float
target may be unbatched while the prediction is batched: it is then shared by
every sample (broadcast) and its gradient is summed over the batch.
cross_entropy fuses softmax with the log-likelihood (log-sum-exp forward,
(softmax - onehot) / N backward), so logits of +-1e4 stay finite.
"""
from __future__ import annotations

import numpy as np

from graphc.ops.kernels import batch_size, log_softmax
from graphc.ops.registry import Attr, OpDef, Sample, register
from graphc.tensor_type import CLASS, ShapeError, TensorType, float_inputs, format_shape

SCALAR = TensorType((), batched=False)


# ---- shared shape rules and helpers ---------------------------------------------

def _pair_shape(in_types: list[TensorType], attrs: dict) -> TensorType:
    """Shape rule of an elementwise loss: input and float target of the same per-sample shape."""
    float_inputs(in_types, 0)
    x, t = in_types
    if t.kind == CLASS:
        raise ShapeError(f"the target holds class indices ({t}), but this loss needs a float target "
                         f"of shape {format_shape(x.shape)}",
                         help="use cross_entropy or hinge for class labels, or give a one-hot float "
                              "target", arg=1)
    if t.shape != x.shape:
        raise ShapeError(f"the input has shape {format_shape(x.shape)} but the target has shape "
                         f"{format_shape(t.shape)}", help="both must have the same per-sample shape",
                         arg=1)
    _check_batching(x, t)
    return SCALAR


def _check_batching(x: TensorType, t: TensorType) -> None:
    """Raise ShapeError when the target carries a batch but the prediction does not."""
    if t.batched and not x.batched:
        raise ShapeError("the target has a batch dimension but the input does not",
                         help="the prediction must come from the batched input data", arg=1)


def _scale(g: np.ndarray, count: int):
    """Return the upstream gradient (a scalar) divided by the loss's normaliser."""
    return np.reshape(g, ()) / count


def _target_grad(ctx, grad: np.ndarray) -> np.ndarray:
    """Return a target gradient summed over the batch when the target was shared (unbatched)."""
    x, t = ctx.in_types
    if x.batched and not t.batched:
        return grad.sum(axis=0)
    return grad


def _store(ctx, value) -> np.ndarray:
    """Write a scalar loss into the planned buffer and return it."""
    ctx.out[...] = value
    return ctx.out


def _loss(name, inputs, shape_rule, forward, backward, flops, grad_rule, doc, samples, *,
          attrs=(), nondiff=frozenset(), saves="inputs", domain="normal", expansion=None):
    """Register one loss op and return its OpDef."""
    return register(OpDef(
        name=name, family="loss", inputs=inputs, shape_rule=shape_rule, forward=forward,
        shape_doc="(prediction, target) -> [], one number: the mean over the batch",
        backward=backward, flops=lambda in_types, out_type, attrs: flops(in_types[0].size),
        grad_rule=grad_rule, doc=doc, samples=samples, attrs=attrs, nondiff=nondiff,
        saves=saves, domain=domain, expansion=EXPANSIONS.get(name, expansion)))


# The losses written with gates (per sample; the fused op averages over the
# batch). tests/test_expansions.py compiles these and compares values and gradients.
EXPANSIONS = {
    "mse": "mean((input - target) * (input - target))",
    "cross_entropy": "-sum(target * (logits - log(sum(exp(logits), axis=-1, keepdims=true))))",
    "binary_cross_entropy": "-mean(target * log(input) + (1 - target) * log(1 - input))",
    "binary_cross_entropy_with_logits": "mean(log(1 + exp(logits)) - logits * target)",
}


def _class_index(t: np.ndarray) -> np.ndarray:
    """Return class labels as a flat array of indices."""
    return t.reshape(-1).astype(np.intp, copy=False)


def _classes_shape(in_types, what: str, allow_float: bool) -> int:
    """Check logits/scores of shape [K] against their target; return K."""
    float_inputs(in_types, 0)
    x, t = in_types
    if x.rank != 1:
        raise ShapeError(f"{what} expects {'logits' if allow_float else 'scores'} of shape [K] per "
                         f"sample, got {format_shape(x.shape)}",
                         help="flatten first, or end the network with a layer of K outputs", arg=0)
    k = x.shape[0]
    if t.kind == CLASS:
        if t.classes != k:
            raise ShapeError(f"{'logits' if allow_float else 'scores'} have {k} classes but the "
                             f"label has {t.classes} classes",
                             help=f"give the last layer {t.classes} outputs, or declare the label "
                                  f"with {k} classes", arg=1)
        if t.batched != x.batched:
            raise ShapeError("the label and the prediction differ in batching",
                             help="class labels come one per sample with the batched input", arg=1)
    elif not allow_float:
        raise ShapeError(f"{what} needs class indices as its target, got a float tensor {t}",
                         help="declare the target as a class label", arg=1)
    else:
        if t.shape != x.shape:
            raise ShapeError(f"logits have shape {format_shape(x.shape)} but the target has shape "
                             f"{format_shape(t.shape)}",
                             help="a float target holds one probability per class "
                                  "(one-hot or soft labels); class indices need a class label", arg=1)
        _check_batching(x, t)
    return k


# ---- cross_entropy --------------------------------------------------------------------

def _ce_shape(in_types, attrs):
    _classes_shape(in_types, "cross_entropy", allow_float=True)
    return SCALAR


def _rows(t: np.ndarray, k: int) -> np.ndarray:
    """Return a per-sample [K] array as rows (n, K); an unbatched one is a single row."""
    return t.reshape(-1, k)


def _ce_forward(ctx, z, t):
    k = ctx.in_types[0].shape[0]
    z2 = _rows(z, k)
    n = z2.shape[0]
    log_p = log_softmax(z2, axis=1)      # stable and exact for logits of 1e4
    ctx.saved["softmax"] = np.exp(log_p)
    ctx.saved["n"] = n
    if ctx.in_types[1].kind == CLASS:
        return _store(ctx, -log_p[np.arange(n), _class_index(t)].sum() / n)
    # Probability targets (torch's cross_entropy with float targets): -sum t * log_softmax.
    # An unbatched target is one row that broadcasts over every sample's row.
    ctx.saved["log_softmax"] = log_p
    return _store(ctx, -np.sum(_rows(t, k) * log_p) / n)


def _ce_backward(ctx, g, args, out):
    z, t = args
    k = ctx.in_types[0].shape[0]
    p, n = ctx.saved["softmax"], ctx.saved["n"]
    scale = _scale(g, n)
    is_class = ctx.in_types[1].kind == CLASS
    gz = gt = None
    if ctx.needs[0]:
        if is_class:
            gz = p * scale
            gz[np.arange(n), _class_index(t)] -= scale
        else:
            t2 = np.broadcast_to(_rows(t, k), p.shape)
            # d/dz of -sum t * log_softmax(z) = softmax * sum(t) - t.
            gz = (p * t2.sum(axis=1, keepdims=True) - t2) * scale
        gz = gz.reshape(z.shape)
    if not is_class and ctx.needs[1]:
        grad = ctx.saved["log_softmax"] * -scale
        # A shared (unbatched) target row collects the gradient of every sample.
        gt = grad.reshape(t.shape) if ctx.in_types[1].batched else grad.sum(axis=0)
    return [gz, gt]


_loss(
    "cross_entropy", ("logits", "target"), _ce_shape, _ce_forward, _ce_backward,
    lambda k: 5 * k, "fused softmax-cross-entropy: (softmax - onehot)/N",
    "Cross-entropy of logits with softmax fused (torch.nn.functional.cross_entropy, "
    "reduction='mean'): mean over the batch of logsumexp(z) - z[target]. The target is either "
    "class indices (a class label with K classes) or a float [K] tensor of one-hot or class "
    "probabilities (torch's probability targets: -sum t * log_softmax(z)). Computed through "
    "log-sum-exp, finite for logits of +-1e4; backward (softmax * sum(t) - t) / N, i.e. "
    "(softmax - onehot) / N for class labels.",
    (Sample(((5,), ()), classes={1: 5}), Sample(((10,), ()), classes={1: 10}),
     Sample(((3,), ()), classes={1: 3}), Sample(((7,), (7,))),
     Sample(((4,), (4,)), batched=(True, False)),
     Sample(((5,), ()), classes={1: 5}, batched=(False, False)),
     Sample(((5,), (5,)), batched=(False, False))))


# ---- hinge (multiclass SVM) ---------------------------------------------------------

def _hinge_shape(in_types, attrs):
    _classes_shape(in_types, "hinge", allow_float=False)
    return SCALAR


def _hinge_forward(ctx, s, t):
    k = ctx.in_types[0].shape[0]
    s2 = _rows(s, k)
    n = s2.shape[0]
    rows, y = np.arange(n), _class_index(t)
    # margin - s_y + s_j for every j; the j = y term is left out of the sum (set to 0).
    viol = (s2 - s2[rows, y][:, None]) + s.dtype.type(ctx.attrs["margin"])
    viol[rows, y] = 0
    np.maximum(viol, 0, out=viol)
    ctx.saved["active"] = viol > 0
    return _store(ctx, viol.sum() / (k * n))


def _hinge_backward(ctx, g, args, out):
    if not ctx.needs[0]:
        return [None, None]
    s, t = args
    k = ctx.in_types[0].shape[0]
    active = ctx.saved["active"]
    n = active.shape[0]
    scale = _scale(g, k * n)
    # Each active term (margin - s_y + s_j > 0) adds +1 to s_j and -1 to s_y. A tie at the
    # hinge (exactly 0) is inactive: subgradient 0, as torch's multi_margin_loss.
    gs = active * scale
    gs[np.arange(n), _class_index(t)] = -active.sum(axis=1) * scale
    return [gs.astype(s.dtype, copy=False).reshape(s.shape), None]


_loss(
    "hinge", ("scores", "target"), _hinge_shape, _hinge_forward, _hinge_backward,
    lambda k: 4 * k, "multiclass hinge: +1/(K N) to each violating class, minus their count to the true class",
    "Multiclass SVM hinge loss (torch.nn.functional.multi_margin_loss, p=1): per sample "
    "sum over j != y of max(0, margin - s_y + s_j), divided by the number of classes K as "
    "torch.nn.MultiMarginLoss does (the textbook SVM loss does not divide); mean over the batch. "
    "The target is a class label with K classes. Tie rule: a term exactly at the hinge "
    "(margin - s_y + s_j = 0) gets subgradient 0, as in torch.",
    (Sample(((5,), ()), classes={1: 5}), Sample(((3,), ()), classes={1: 3}, attrs={"margin": 0.5}),
     Sample(((7,), ()), classes={1: 7}, attrs={"margin": 2.0}),
     Sample(((4,), ()), classes={1: 4}, batched=(False, False))),
    attrs=(Attr("margin", "float", 1.0, "the margin delta by which the true class must win"),),
    nondiff=frozenset({"target"}))


# ---- mse ---------------------------------------------------------------------------

def _mse_forward(ctx, x, t):
    diff = x - t
    ctx.saved["diff"] = diff
    return _store(ctx, np.vdot(diff, diff) / diff.size)


def _mse_backward(ctx, g, args, out):
    diff = ctx.saved["diff"]
    grad = diff * (2 * _scale(g, diff.size))
    return [grad if ctx.needs[0] else None,
            np.negative(_target_grad(ctx, grad)) if ctx.needs[1] else None]


_PAIR_SAMPLES = (Sample(((5,), (5,))), Sample(((3, 4), (3, 4))), Sample(((), ())),
                 Sample(((2, 3), (2, 3)), batched=(True, False)),
                 Sample(((7,), (7,)), batched=(False, False)))

_loss(
    "mse", ("input", "target"), _pair_shape, _mse_forward, _mse_backward,
    lambda size: 3 * size, "mse: 2 (input - target) / numel",
    "Mean squared error (torch.nn.functional.mse_loss, reduction='mean'): the mean of "
    "(input - target)^2 over ALL elements (batch and features), with no factor 1/2.",
    _PAIR_SAMPLES, saves="none")


# ---- kl_div -------------------------------------------------------------------------

def _kl_forward(ctx, x, t):
    # target * (log target - input), with 0 where target is 0 (torch's xlogy).
    positive = t > 0
    log_t = np.log(t, out=np.zeros_like(t), where=positive)
    ctx.saved["log_t"] = log_t
    return _store(ctx, np.sum(t * (log_t - x)) / _kl_denominator(ctx, x))


def _kl_denominator(ctx, x) -> int:
    reduction = ctx.attrs["reduction"]
    if reduction == "batchmean":
        return batch_size(ctx.in_types[0], x)
    return x.size if reduction == "mean" else 1


def _kl_backward(ctx, g, args, out):
    x, t = args
    scale = _scale(g, _kl_denominator(ctx, x))
    gx = np.broadcast_to(t * -scale, x.shape).copy() if ctx.needs[0] else None
    gt = None
    if ctx.needs[1]:
        # d/dt [t log t - t x] = log t + 1 - x; where t = 0 only the -x term is kept.
        log_t = ctx.saved["log_t"]
        gt = _target_grad(ctx, (np.where(t > 0, log_t + 1, 0) - x) * scale)
    return [gx, gt]


_loss(
    "kl_div", ("input", "target"), _pair_shape, _kl_forward, _kl_backward,
    lambda size: 4 * size, "kl_div: -target / D for the input, log target + 1 - input for the target",
    "Kullback-Leibler divergence as torch.nn.functional.kl_div (log_target=False): the input "
    "holds log-probabilities, the target probabilities; pointwise target * (log target - input), "
    "0 where the target is 0. reduction: 'batchmean' (default, as PyTorch recommends: the sum "
    "divided by the batch size; an unbatched input counts as one sample), 'mean' (over all "
    "elements) or 'sum'. Any positive target is accepted; it need not sum to 1.",
    _PAIR_SAMPLES + (Sample(((4, 3), (4, 3)), attrs={"reduction": "mean"}),
                     Sample(((5,), (5,)), attrs={"reduction": "sum"})),
    attrs=(Attr("reduction", "str", "batchmean", "how pointwise terms are reduced",
                choices=("batchmean", "mean", "sum")),),
    domain="unit")


# ---- binary cross-entropy -----------------------------------------------------------

def _bce_forward(ctx, p, t):
    # torch clamps each log at -100 so p = 0 or 1 gives a finite loss.
    with np.errstate(divide="ignore"):
        log_p = np.maximum(np.log(p), -100)
        log_q = np.maximum(np.log1p(-p), -100)
    ctx.saved["log_p"], ctx.saved["log_q"] = log_p, log_q
    return _store(ctx, -np.sum(t * log_p + (1 - t) * log_q) / p.size)


def _bce_backward(ctx, g, args, out):
    p, t = args
    scale = _scale(g, p.size)
    gp = gt = None
    if ctx.needs[0]:
        # torch's binary_cross_entropy_backward: (p - t) / max(p (1 - p), 1e-12).
        gp = (p - t) / np.maximum(p * (1 - p), p.dtype.type(1e-12)) * scale
    if ctx.needs[1]:
        gt = _target_grad(ctx, (ctx.saved["log_q"] - ctx.saved["log_p"]) * scale)
    return [gp, gt]


_loss(
    "binary_cross_entropy", ("input", "target"), _pair_shape, _bce_forward, _bce_backward,
    lambda size: 6 * size, "bce: (p - t) / (p (1 - p)) / numel",
    "Binary cross-entropy of probabilities (torch.nn.functional.binary_cross_entropy, "
    "reduction='mean'): -(t log p + (1 - t) log(1 - p)), each log clamped at -100 as torch "
    "does, averaged over all elements. The input must lie in [0, 1].",
    _PAIR_SAMPLES, domain="unit")


def _bce_logits_forward(ctx, x, t):
    # torch's stable form: max(x, 0) - x t + log(1 + exp(-|x|)); exp never overflows.
    e = np.exp(-np.abs(x))
    ctx.saved["exp_neg_abs"] = e
    loss = np.maximum(x, 0) - x * t + np.log1p(e)
    return _store(ctx, np.sum(loss) / loss.size)


def _bce_logits_backward(ctx, g, args, out):
    x, t = args
    scale = _scale(g, x.size)
    gx = gt = None
    if ctx.needs[0]:
        e = ctx.saved["exp_neg_abs"]
        sig = np.asarray(1 / (1 + e))   # an array even for 0-d logits (out= below)
        np.multiply(sig, e, out=sig, where=x < 0)    # sigmoid(x) without overflow
        gx = (sig - t) * scale
    if ctx.needs[1]:
        gt = _target_grad(ctx, x * -scale)
    return [gx, gt]


_loss(
    "binary_cross_entropy_with_logits", ("logits", "target"), _pair_shape, _bce_logits_forward,
    _bce_logits_backward, lambda size: 6 * size, "bce with logits: (sigmoid(x) - t) / numel",
    "Binary cross-entropy on logits with the sigmoid fused "
    "(torch.nn.functional.binary_cross_entropy_with_logits, reduction='mean'): "
    "max(x, 0) - x t + log(1 + exp(-|x|)), averaged over all elements; stable for any x.",
    _PAIR_SAMPLES)
