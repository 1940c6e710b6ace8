"""Normalisation: batchnorm, layernorm, instancenorm, groupnorm and lrn.

The first four subtract a mean and divide by a standard deviation, then apply
an optional learned affine map y = gamma * xhat + beta; they differ only in
which axes the statistics run over. Each is computed on a view of the input
with three parts: the axes the statistics reduce over, the axes that keep a
separate statistic, and where the affine parameters vary:

    op            view of (N, *per-sample)     statistics over    gamma/beta
    batchnorm     (N, C, S)                    N and S            [C]
    layernorm     (N, D)                       D                  per-sample shape
    instancenorm  (N, C, S)                    S                  [C]
    groupnorm     (N, G, C/G, S)               C/G and S          [C]

(S = product of the spatial sizes, D = product of the whole per-sample shape.)
All use the biased variance for normalising, as PyTorch does. The backward
pass goes through the statistics with the standard formula
    dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),
means over the statistics axes, dxhat = gamma * grad_out. lrn (AlexNet's local
response normalisation across channels) is a windowed sum of squares instead.
"""
from __future__ import annotations

import numpy as np

from graphc.diagnostics import GraphcError
from graphc.ops.kernels import batch_size
from graphc.ops.registry import Attr, OpDef, ParamSpec, Sample, StateSpec, register
from graphc.tensor_type import ShapeError, float_inputs, format_shape


def _view(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Return a reshaped view of a; never a copy (writes must reach a's buffer)."""
    return np.reshape(a, shape, copy=False)


def _affine_params(full_shape: bool = False, enabled=None) -> tuple[ParamSpec, ...]:
    """Return gamma (ones) and beta (zeros) specs: per channel, or per-sample shaped."""
    shape = (lambda ts, a: ts[0].shape) if full_shape else (lambda ts, a: (ts[0].shape[0],))
    # Normalisation scales and shifts follow torch's init (ones/zeros) whatever the
    # train section's default init says, and are not weight-decayed.
    return (ParamSpec("gamma", shape, init="ones", decay=False, follows_default=False, enabled=enabled),
            ParamSpec("beta", shape, init="zeros", decay=False, follows_default=False, enabled=enabled))


def _eps_attr() -> Attr:
    return Attr("eps", "float", 1e-5, "added to the variance before the square root", minimum=0.0)


# ---- the shared mean/variance kernel ----------------------------------------

def _normalise(ctx, x, gamma, beta, view, axes, pshape):
    """Normalise x over `axes` of `view`, apply gamma/beta (shape `pshape`), write ctx.out.

    Saves xhat, 1/std and a copy of gamma (backward does not read the arguments).
    Returns ctx.out and the mean and biased variance (keepdims) for batchnorm.
    """
    xv = x.reshape(view)   # a view unless x is a non-contiguous alias
    out = _view(ctx.out, view)
    mean = xv.mean(axis=axes, keepdims=True)
    xhat = np.subtract(xv, mean)
    # The output buffer serves as scratch for the squares: two-pass variance, stable.
    np.multiply(xhat, xhat, out=out)
    var = out.mean(axis=axes, keepdims=True)
    inv = 1.0 / np.sqrt(var + ctx.attrs["eps"])
    xhat *= inv
    _affine(ctx, xhat, inv, gamma, beta, out, pshape, stats=True)
    return mean, var


def _affine(ctx, xhat, inv, gamma, beta, out, pshape, *, stats):
    """Write gamma * xhat + beta (or xhat) into out and save what backward needs."""
    if gamma is None:
        np.copyto(out, xhat)
        g = None
    else:
        g = gamma.reshape(pshape).copy()
        np.multiply(xhat, g, out=out)
        out += beta.reshape(pshape)
    ctx.saved.update(xhat=xhat, inv=inv, gamma=g, stats=stats)


def _normalise_backward(ctx, grad_out, view, axes, pshape):
    """Return [dx, dgamma, dbeta] (or [dx] without affine params) from the saved xhat.

    With stats=False (batchnorm in eval mode) the map is affine: dx = gamma/std * g.
    """
    xhat, inv, gamma, stats = (ctx.saved[k] for k in ("xhat", "inv", "gamma", "stats"))
    gv = grad_out.reshape(view)
    paxes = tuple(i for i, d in enumerate(pshape) if d == 1)   # axes gamma is broadcast along
    needs = ctx.needs
    affine = gamma is not None
    dgamma = dbeta = dx = None
    gxh = gv * xhat if (affine and needs[1]) or (stats and needs[0]) else None
    if affine and needs[1]:
        dgamma = gxh.sum(axis=paxes).reshape(ctx.saved["gshape"])
    if affine and needs[2]:
        dbeta = gv.sum(axis=paxes).reshape(ctx.saved["gshape"])
    if needs[0]:
        if not stats:
            dx = gv * (gamma * inv)
        elif affine and paxes == axes:
            # batchnorm: gamma is constant over the statistics axes, so
            # mean(dxhat) = gamma*mean(g) and mean(dxhat*xhat) = gamma*mean(g*xhat).
            m1 = gv.mean(axis=axes, keepdims=True)
            m2 = gxh.mean(axis=axes, keepdims=True)
            dx = np.multiply(xhat, m2, out=gxh)
            np.subtract(gv, dx, out=dx)
            dx -= m1
            dx *= gamma * inv
        else:
            dxhat = gv * gamma if affine else gv
            m1 = dxhat.mean(axis=axes, keepdims=True)
            if affine:
                np.multiply(gxh, gamma, out=gxh)   # now dxhat * xhat
            m2 = gxh.mean(axis=axes, keepdims=True)
            dx = np.multiply(xhat, m2, out=gxh)
            np.subtract(dxhat, dx, out=dx)
            dx -= m1
            dx *= inv
        dx = dx.reshape(grad_out.shape)
    return [dx, dgamma, dbeta] if affine else [dx]


def _flops(in_types, out_type, attrs) -> int:
    """~5 FLOPs per element for the statistics and normalising, 2 more for the affine map."""
    per = 5 + (2 if attrs.get("affine", True) else 0)
    return per * in_types[0].size


def _needs_rank(in_types, name, rank, what, help):
    float_inputs(in_types, 0)
    x = in_types[0]
    if x.rank < rank:
        raise ShapeError(f"{name} needs {what}, got {format_shape(x.shape)}", help=help, arg=0)
    return x


# ---- batchnorm ---------------------------------------------------------------

def _bn_view(x: np.ndarray) -> tuple[int, int, int]:
    return (x.shape[0], x.shape[1], int(np.prod(x.shape[2:], dtype=np.int64)))


def _bn_shape(in_types, attrs):
    x = _needs_rank(in_types, "batchnorm", 1, "a channel axis ([C] or [C, ...spatial])",
                    "batchnorm normalises each channel over the batch; flatten or reshape a scalar to [1]")
    if not x.batched:
        raise ShapeError("batchnorm needs a batched tensor (its statistics run over the batch)",
                         help="apply batchnorm to activations computed from the input", arg=0)
    if attrs["momentum"] > 1:
        raise ShapeError(f"momentum must be between 0 and 1, got {attrs['momentum']:g}",
                         help="torch's default is 0.1", arg="momentum")
    return x.with_shape(x.shape)


def _bn_forward(ctx, x, gamma, beta):
    view = _bn_view(x)
    n, c, s = view
    ctx.saved["gshape"] = (c,)
    pshape = (1, c, 1)
    rm, rv = ctx.state["running_mean"], ctx.state["running_var"]
    if not ctx.train:
        # Eval: the running statistics make batchnorm a per-channel affine map.
        xv = x.reshape(view)
        mean = rm.astype(x.dtype, copy=False).reshape(pshape)
        inv = 1.0 / np.sqrt(rv.astype(x.dtype, copy=False).reshape(pshape) + ctx.attrs["eps"])
        xhat = (xv - mean) * inv
        _affine(ctx, xhat, inv, gamma, beta, _view(ctx.out, view), pshape, stats=False)
        return ctx.out
    m = n * s
    if m < 2:
        raise GraphcError(
            f"batchnorm in training needs more than one value per channel; got a batch of {n} "
            f"with per-sample shape {format_shape(ctx.in_types[0].shape)}",
            help="train with a batch of at least 2 (torch raises the same error)")
    mean, var = _normalise(ctx, x, gamma, beta, view, (0, 2), pshape)
    # Running update as torch: the unbiased batch variance, in place, keeping the state dtype.
    mom = ctx.attrs["momentum"]
    rm *= 1.0 - mom
    rm += (mom * mean).reshape(c)
    rv *= 1.0 - mom
    rv += (mom * m / (m - 1) * var).reshape(c)
    return ctx.out


def _bn_backward(ctx, grad_out, args, out):
    return _normalise_backward(ctx, grad_out, _bn_view(grad_out), (0, 2), (1, grad_out.shape[1], 1))


register(OpDef(
    name="batchnorm", family="norm", inputs=("x",), shape_rule=_bn_shape,
    shape_doc="[C] or [C, ...spatial] -> the same shape (statistics over the batch and spatial axes)",
    forward=_bn_forward, backward=_bn_backward, flops=_flops,
    grad_rule="batchnorm: through the batch statistics (train), affine (eval)",
    doc="Batch normalisation as torch.nn.BatchNorm1d (per-sample [C] or [C, L]) and BatchNorm2d/3d "
        "(per-sample [C, H, W], ...): per channel C (per-sample axis 0), statistics over the batch "
        "and every spatial axis; y = gamma * (x - mean) / sqrt(var + eps) + beta with the biased "
        "variance. Training: batch statistics, and running_mean/running_var updated in place as "
        "running = (1 - momentum) * running + momentum * stat with the UNBIASED variance (torch). "
        "Eval: the running statistics. A training batch with one value per channel (batch 1, no "
        "spatial axes) is an error at run time, as in torch. FLOPs: 7 per element.",
    samples=(Sample(((5,),)),
             Sample(((3, 4),)),
             Sample(((3, 4, 5),)),
             Sample(((2, 3, 3),)),
             Sample(((4,),), attrs={"momentum": 0.3, "eps": 1e-3})),
    attrs=(Attr("momentum", "float", 0.1, "weight of the batch statistics in the running update",
                minimum=0.0),
           _eps_attr()),
    params=_affine_params(),
    state=(StateSpec("running_mean", lambda ts, a: (ts[0].shape[0],), 0.0),
           StateSpec("running_var", lambda ts, a: (ts[0].shape[0],), 1.0)),
    saves="none"))


# ---- layernorm ---------------------------------------------------------------

def _ln_view(ctx, x):
    return (batch_size(ctx.in_types[0], x), ctx.in_types[0].size)


def _ln_shape(in_types, attrs):
    x = _needs_rank(in_types, "layernorm", 1, "at least one per-sample axis",
                    "normalising a single number always gives 0; reshape it to [1] only if you mean it")
    return x.with_shape(x.shape)


def _ln_forward(ctx, x, gamma, beta):
    view = _ln_view(ctx, x)
    ctx.saved["gshape"] = ctx.in_types[0].shape
    _normalise(ctx, x, gamma, beta, view, (1,), (1, view[1]))
    return ctx.out


def _ln_backward(ctx, grad_out, args, out):
    view = _ln_view(ctx, grad_out)
    return _normalise_backward(ctx, grad_out, view, (1,), (1, view[1]))


register(OpDef(
    name="layernorm", family="norm", inputs=("x",), shape_rule=_ln_shape,
    shape_doc="x -> the same shape (statistics over every per-sample axis)",
    forward=_ln_forward, backward=_ln_backward, flops=_flops,
    grad_rule="layernorm: through the per-sample mean and variance",
    doc="Layer normalisation as torch.nn.LayerNorm(normalized_shape = the whole per-sample shape): "
        "each sample is normalised over all its axes, y = gamma * (x - mean) / sqrt(var + eps) + "
        "beta, biased variance, elementwise gamma (ones) and beta (zeros) of the per-sample shape. "
        "FLOPs: 7 per element.",
    samples=(Sample(((5,),)),
             Sample(((3, 4),)),
             Sample(((2, 3, 3),)),
             Sample(((7,),), attrs={"eps": 1e-3})),
    attrs=(_eps_attr(),),
    params=_affine_params(full_shape=True),
    saves="none",
    expansion="(x - mean(x)) / pow(mean((x - mean(x)) * (x - mean(x))) + eps, 0.5) * gamma + beta"))


# ---- instancenorm ------------------------------------------------------------

def _in_view(ctx, x):
    t = ctx.in_types[0]
    return (batch_size(ctx.in_types[0], x), t.shape[0], t.size // t.shape[0])


def _in_shape(in_types, attrs):
    x = _needs_rank(in_types, "instancenorm", 2, "a channel and spatial axes ([C, ...spatial])",
                    "instancenorm normalises each channel of each sample over its spatial axes; "
                    "for [C] use layernorm or batchnorm")
    if x.size // x.shape[0] < 2:
        raise ShapeError(f"instancenorm needs more than one spatial value per channel, got "
                         f"{format_shape(x.shape)}",
                         help="every output would be 0 (torch raises too); use batchnorm", arg=0)
    return x.with_shape(x.shape)


def _in_forward(ctx, x, gamma=None, beta=None):
    view = _in_view(ctx, x)
    ctx.saved["gshape"] = (view[1],)
    _normalise(ctx, x, gamma, beta, view, (2,), (1, view[1], 1))
    return ctx.out


def _in_backward(ctx, grad_out, args, out):
    view = _in_view(ctx, grad_out)
    return _normalise_backward(ctx, grad_out, view, (2,), (1, view[1], 1))


register(OpDef(
    name="instancenorm", family="norm", inputs=("x",), shape_rule=_in_shape,
    shape_doc="[C, ...spatial] -> the same shape (statistics per sample and channel)",
    forward=_in_forward, backward=_in_backward, flops=_flops,
    grad_rule="instancenorm: through each sample's per-channel statistics",
    doc="Instance normalisation as torch.nn.InstanceNorm1d/2d/3d with their defaults (no running "
        "statistics): per-sample [C, ...spatial]; each channel of each sample is normalised over "
        "its spatial axes with the biased variance. affine=true adds gamma (ones) and beta (zeros) "
        "of shape [C]. FLOPs: 5 per element, 7 with affine.",
    samples=(Sample(((3, 5),)),
             Sample(((2, 3, 3),)),
             Sample(((3, 4, 5),), attrs={"affine": True}),
             Sample(((1, 7),), attrs={"affine": True, "eps": 1e-3})),
    attrs=(_eps_attr(),
           Attr("affine", "bool", False, "learn a per-channel scale gamma and shift beta")),
    params=_affine_params(enabled=lambda attrs: attrs["affine"]),
    saves="none"))


# ---- groupnorm ---------------------------------------------------------------

def _gn_view(ctx, x):
    t = ctx.in_types[0]
    c, g = t.shape[0], ctx.attrs["groups"]
    return (batch_size(ctx.in_types[0], x), g, c // g, t.size // c)


def _gn_shape(in_types, attrs):
    x = _needs_rank(in_types, "groupnorm", 1, "a channel axis ([C] or [C, ...spatial])",
                    "groupnorm splits per-sample axis 0 into groups of channels")
    c, g = x.shape[0], attrs["groups"]
    if c % g:
        small = [d for d in range(1, int(c ** 0.5) + 1) if c % d == 0]   # to sqrt(c): to c hung on a prime
        near = sorted({*small, *(c // d for d in small)}, key=lambda d: (abs(d - g), d))[:8]
        raise ShapeError(f"groupnorm: {c} channels do not split into {g} groups",
                         help=f"groups must divide the channel count {c}; choose one of "
                              + ", ".join(map(str, sorted(near))), arg="groups")
    return x.with_shape(x.shape)


def _gn_forward(ctx, x, gamma, beta):
    view = _gn_view(ctx, x)
    ctx.saved["gshape"] = (view[1] * view[2],)
    _normalise(ctx, x, gamma, beta, view, (2, 3), (1, view[1], view[2], 1))
    return ctx.out


def _gn_backward(ctx, grad_out, args, out):
    view = _gn_view(ctx, grad_out)
    return _normalise_backward(ctx, grad_out, view, (2, 3), (1, view[1], view[2], 1))


register(OpDef(
    name="groupnorm", family="norm", inputs=("x",), shape_rule=_gn_shape,
    forward=_gn_forward, backward=_gn_backward, flops=_flops, shape_doc="[C, ...spatial] -> the same shape",
    grad_rule="groupnorm: through each sample's per-group statistics",
    doc="Group normalisation as torch.nn.GroupNorm(groups, C): per-sample [C, ...spatial], the C "
        "channels are split into `groups` consecutive groups and each sample's group is "
        "normalised over its channels and spatial axes (biased variance); per-channel gamma "
        "(ones) and beta (zeros) of shape [C]. groups=1 is layernorm with per-channel affine, "
        "groups=C is instancenorm. FLOPs: 7 per element.",
    samples=(Sample(((6,),), attrs={"groups": 2}),
             Sample(((6, 5),), attrs={"groups": 3}),
             Sample(((4, 3, 3),), attrs={"groups": 2}),
             Sample(((5, 2, 3),), attrs={"groups": 5}),
             Sample(((3, 4),), attrs={"groups": 1, "eps": 1e-3})),
    attrs=(Attr("groups", "int", doc="number of channel groups; must divide C", minimum=1),
           _eps_attr()),
    params=_affine_params(),
    saves="none"))


# ---- lrn ---------------------------------------------------------------------

def _window_sum(a: np.ndarray, before: int, after: int) -> np.ndarray:
    """Return s[:, c] = sum of a[:, c'] for c - before <= c' <= c + after, zero outside [0, C).

    A loop over the window offsets (a handful), each a vectorised slice add.
    """
    s = a.copy()
    c = a.shape[1]
    for d in range(-before, after + 1):
        if d == 0 or abs(d) >= c:
            continue
        if d > 0:
            s[:, :c - d] += a[:, d:]
        else:
            s[:, -d:] += a[:, :c + d]
    return s


def _lrn_shape(in_types, attrs):
    x = _needs_rank(in_types, "lrn", 1, "a channel axis ([C, ...spatial])",
                    "lrn normalises across per-sample axis 0 (channels)")
    return x.with_shape(x.shape)


def _lrn_lead(ctx, x):
    return x if ctx.in_types[0].batched else x[None]


def _lrn_forward(ctx, x):
    a = ctx.attrs
    size = a["size"]
    xv = _lrn_lead(ctx, x)
    # torch pads size//2 channels before and (size-1)//2 after, and averages over
    # `size` (count_include_pad), so the denominator is k + alpha/size * window sum.
    base = _window_sum(xv * xv, size // 2, (size - 1) // 2)
    base *= a["alpha"] / size
    base += a["k"]
    scale = np.power(base, -a["beta"])
    np.multiply(xv, scale, out=_lrn_lead(ctx, ctx.out))
    ctx.saved.update(base=base, scale=scale)
    return ctx.out


def _lrn_backward(ctx, grad_out, args, out):
    if not ctx.needs[0]:
        return [None]
    a = ctx.attrs
    size = a["size"]
    base, scale = ctx.saved["base"], ctx.saved["scale"]
    g, x = _lrn_lead(ctx, grad_out), _lrn_lead(ctx, args[0])
    # y_c = x_c * B_c^-beta with B_c = k + alpha/size * sum_{c' in W(c)} x_c'^2, so
    # dx_j = g_j B_j^-beta - 2 alpha beta / size * x_j * sum_{c : j in W(c)} g_c x_c B_c^(-beta-1).
    # j in W(c) is c in [j - after, j + before]: the window transposed.
    t = g * x
    t *= scale
    t /= base
    back = _window_sum(t, (size - 1) // 2, size // 2)
    back *= x
    back *= -2.0 * a["alpha"] * a["beta"] / size
    back += g * scale
    return [back.reshape(grad_out.shape)]


def _lrn_flops(in_types, out_type, attrs) -> int:
    """Per element: square 1, window sum size-1, scale and shift 2, power ~1, multiply 1."""
    return (attrs["size"] + 4) * in_types[0].size


register(OpDef(
    name="lrn", family="norm", inputs=("x",), shape_rule=_lrn_shape,
    forward=_lrn_forward, backward=_lrn_backward, flops=_lrn_flops, shape_doc="[C, ...] -> the same shape",
    grad_rule="lrn: own scale minus the transposed window of g*y/B",
    doc="Local response normalisation across channels (AlexNet), as "
        "torch.nn.functional.local_response_norm: per-sample [C, ...spatial], "
        "b_c = a_c / (k + alpha/size * sum_{c'} a_c'^2)^beta with c' from c - size//2 to "
        "c + (size-1)//2, channels outside [0, C) counting as zero (torch's zero padding; the "
        "divisor is always `size`). torch needs a spatial axis; a per-sample [C] is treated as "
        "[C, 1]. FLOPs: size + 4 per element.",
    samples=(Sample(((7, 3),)),
             Sample(((6, 2, 3),), attrs={"size": 3, "alpha": 0.5, "beta": 0.6, "k": 2.0}),
             Sample(((4, 3),), attrs={"size": 2, "alpha": 1.0}),
             Sample(((5,),), attrs={"size": 4, "alpha": 0.8, "beta": 1.1}),
             Sample(((3, 2, 2),), attrs={"size": 7, "alpha": 2.0})),
    attrs=(Attr("size", "int", 5, "number of neighbouring channels in the window", minimum=1),
           Attr("alpha", "float", 1e-4, "multiplies the windowed average of squares", minimum=0.0),
           Attr("beta", "float", 0.75, "exponent of the denominator", minimum=0.0),
           Attr("k", "float", 1.0, "added to the denominator before the power", minimum=0.0)),
    saves="inputs"))
