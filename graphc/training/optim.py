"""Optimizers and per-epoch learning-rate schedules, following PyTorch's update formulas.

Input: the model's parameter arrays (name -> float32/float64 ndarray), then one gradient dict per
step. Output: the parameters updated in place, a flat dict of state arrays for checkpoints, and
lr-per-epoch functions for schedules. Each update reproduces the single-tensor (CPU, foreach=False)
path of torch.optim with weight_decay=0 (weight decay is the trainer's job: L1/L2 on weights only);
where the textbook (Deep Learning from Scratch) differs, the class docstring says how to get its form.
Each optimizer and schedule has one signature (OPTIMIZERS, SCHEDULES): its keywords, their defaults
and the values they accept. `graphc check` checks a train section against them (training/config.py)
and `make_optimizer` / `make_schedule` check Python API calls with the same checker and messages.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from graphc.diagnostics import GraphcError, did_you_mean
from graphc.signature import (
    BELOW_ONE,
    FLAG,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    REQUIRED,
    WHOLE,
    Accepts,
    Keyword,
    Signature,
    SignatureError,
    check_call,
)


class Optimizer:
    """Base class: owns per-parameter state buffers and applies `_update` per step.

    Subclasses set `prefix` (used in state-array names) and implement
    `_buffers()` and `_update()`. `hyper` holds every keyword of the optimizer's
    signature but `lr`, already checked and completed by `make_optimizer`.
    """

    prefix = "optimizer"

    def __init__(self, params: dict[str, np.ndarray], lr: float, **hyper):
        self.hyper = hyper
        self.lr = float(lr)
        for name, p in params.items():
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f" or not p.flags.writeable:
                raise GraphcError(f"parameter `{name}` is not a writable float array",
                                  help="parameters must be float32 or float64 numpy arrays")
        # Keep the model's own arrays: updates must be visible to the model without rebinding.
        self.params = dict(params)
        self.state = {buf: {n: np.zeros_like(p) for n, p in self.params.items()}
                      for buf in self._buffers()}
        self.steps = {n: np.zeros((), np.int64) for n in self.params}
        self._scratch = {n: np.empty_like(p) for n, p in self.params.items()}

    def decay_only(self, names) -> None:
        """Limit the optimizer's own weight decay (adamw's) to the parameters `names` (None: all);
        returns None. Optimizers without one ignore it."""

    def _buffers(self) -> tuple[str, ...]:
        """Return the names of the per-parameter state buffers this configuration needs."""
        return ()

    def _update(self, p: np.ndarray, g: np.ndarray, t: np.ndarray, state: dict[str, np.ndarray],
                step: int) -> None:
        """Update p in place from its gradient g; t is scratch of p's shape and `state` maps
        each buffer name to this parameter's buffer."""
        raise NotImplementedError

    def step(self, grads: dict[str, np.ndarray]) -> None:
        """Update, in place, every parameter named in `grads`; returns None."""
        for name, g in grads.items():
            p = self.params.get(name)
            if p is None:
                raise GraphcError(f"unknown parameter `{name}` in gradients",
                                  help=did_you_mean(name, self.params) or "gradients are keyed by parameter name")
            if g.shape != p.shape:
                raise GraphcError(f"gradient for `{name}` has shape {list(g.shape)}, "
                                  f"parameter has {list(p.shape)}",
                                  help="gradients must have the shape of their parameter")
        buffers = tuple(self.state)
        for name, g in grads.items():
            self.steps[name] += 1
            self._update(self.params[name], g, self._scratch[name],
                         {buf: self.state[buf][name] for buf in buffers}, int(self.steps[name]))

    def _live_state(self) -> dict[str, np.ndarray]:
        """Return the state buffers themselves (not copies) under their checkpoint names."""
        live = {f"{self.prefix}.{buf}/{n}": a for buf, d in self.state.items() for n, a in d.items()}
        live.update({f"{self.prefix}.step/{n}": s for n, s in self.steps.items()})
        return live

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Return copies of all state as a flat dict: '<prefix>.<buffer>/<param>' arrays
        and '<prefix>.step/<param>' 0-d int64 step counters."""
        return {k: a.copy() for k, a in self._live_state().items()}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Copy state saved by `state_arrays` into this optimizer's buffers; returns None.

        Keys not shaped like "<prefix>.<buffer>/<param>" (e.g. model weights in the
        same checkpoint) are ignored; missing, unexpected or mis-shaped state raises
        GraphcError.
        """
        targets = self._live_state()
        problems = [f"missing `{k}`" for k in targets if k not in arrays]
        problems += [f"unexpected `{k}`" for k in arrays
                     if k not in targets and k.startswith(self.prefix + ".") and "/" in k]
        problems += [f"`{k}`: saved {list(np.shape(arrays[k]))}, expected {list(t.shape)}"
                     for k, t in targets.items() if k in arrays and np.shape(arrays[k]) != t.shape]
        if problems:
            raise GraphcError(f"optimizer state does not match this {self.prefix} optimizer: "
                              + "; ".join(problems[:10]) + ("; ..." if len(problems) > 10 else ""),
                              help="resume with the same optimizer, options and model it was saved with")
        for k, t in targets.items():
            np.copyto(t, arrays[k], casting="same_kind")


class SGD(Optimizer):
    """torch.optim.SGD: plain, momentum (with dampening) and Nesterov. The textbook's momentum,
    v = momentum*v - lr*g; p += v, gives the same points at a constant lr (v = -lr*buf); under a
    schedule torch applies the new lr to the whole buffer, the book only to the new gradient."""

    prefix = "sgd"

    def _buffers(self):
        return ("momentum",) if self.hyper["momentum"] != 0 else ()

    def _update(self, p, g, t, state, step):
        mom = self.hyper["momentum"]
        if mom != 0:
            buf = state["momentum"]
            if step == 1:
                # torch starts the buffer as a copy of the first gradient (no dampening).
                np.copyto(buf, g, casting="same_kind")
            else:
                buf *= mom
                if self.hyper["dampening"]:
                    np.multiply(g, 1 - self.hyper["dampening"], out=t)
                    buf += t
                else:
                    buf += g
            if self.hyper["nesterov"]:
                np.multiply(buf, mom, out=t)
                t += g
                g = t
            else:
                g = buf
        np.multiply(g, -self.lr, out=t)
        p += t


class Adagrad(Optimizer):
    """torch.optim.Adagrad: clr = lr / (1 + (step-1)*lr_decay); p -= clr * g / (sqrt(sum) + eps).
    The textbook's is the same with eps = 1e-7 (torch: 1e-10): `adagrad(eps=1e-7)` reproduces it."""

    prefix = "adagrad"

    def __init__(self, params, lr, **hyper):
        super().__init__(params, lr, **hyper)
        for s in self.state["sum"].values():
            s.fill(self.hyper["initial_accumulator_value"])

    def _buffers(self):
        return ("sum",)

    def _update(self, p, g, t, state, step):
        clr = self.lr / (1 + (step - 1) * self.hyper["lr_decay"])
        acc = state["sum"]
        np.multiply(g, g, out=t)
        acc += t
        np.sqrt(acc, out=t)
        t += self.hyper["eps"]
        np.divide(g, t, out=t)
        t *= -clr
        p += t


class RMSprop(Optimizer):
    """torch.optim.RMSprop, including centered and momentum variants."""

    prefix = "rmsprop"

    def _buffers(self):
        h = self.hyper
        return ("square_avg",) + (("grad_avg",) if h["centered"] else ()) + \
            (("momentum",) if h["momentum"] > 0 else ())

    def _update(self, p, g, t, state, step):
        h, alpha = self.hyper, self.hyper["alpha"]
        sq = state["square_avg"]
        sq *= alpha
        np.multiply(g, g, out=t)
        t *= 1 - alpha
        sq += t
        if h["centered"]:
            # torch: grad_avg.lerp_(g, 1-alpha); avg = sqrt(square_avg - grad_avg^2)
            ga = state["grad_avg"]
            np.subtract(g, ga, out=t)
            t *= 1 - alpha
            ga += t
            np.multiply(ga, ga, out=t)
            np.subtract(sq, t, out=t)
            np.sqrt(t, out=t)
        else:
            np.sqrt(sq, out=t)
        t += h["eps"]
        np.divide(g, t, out=t)
        if h["momentum"] > 0:
            buf = state["momentum"]
            buf *= h["momentum"]
            buf += t
            np.multiply(buf, -self.lr, out=t)
        else:
            t *= -self.lr
        p += t


class Adam(Optimizer):
    """torch.optim.Adam (non-capturable path), optionally AMSGrad.

    torch adds eps to the bias-corrected sqrt(v / (1 - beta2^t)); `eps_hat=true` adds it to the raw sqrt(v):
    Kingma & Ba's efficient form p -= lr*sqrt(1-beta2^t)/(1-beta1^t) * m/(sqrt(v) + eps), Keras's and the
    textbook's (ch. 6, eps 1e-7): `adam(eps=1e-7, eps_hat=true)` reproduces the book.
    """

    prefix = "adam"

    def _buffers(self):
        return ("m", "v") + (("vmax",) if self.hyper["amsgrad"] else ())

    def _update(self, p, g, t, state, step):
        h = self.hyper
        b1, b2 = h["beta1"], h["beta2"]
        m, v = state["m"], state["v"]
        np.subtract(g, m, out=t)  # torch: exp_avg.lerp_(g, 1-beta1)
        t *= 1 - b1
        m += t
        v *= b2
        np.multiply(g, g, out=t)
        t *= 1 - b2
        v += t
        step_size = self.lr / (1 - b1 ** step)
        bc2_sqrt = (1 - b2 ** step) ** 0.5
        if h["amsgrad"]:
            vmax = state["vmax"]
            np.maximum(vmax, v, out=vmax)
            v = vmax
        # torch: denom = sqrt(v)/sqrt(bc2) + eps; p.addcdiv_(m, denom, value=-lr/bc1).
        # The same step with bc2 multiplied through, one pass fewer:
        # p -= (lr/bc1 * sqrt(bc2)) * m / (sqrt(v) + eps * sqrt(bc2)).
        np.sqrt(v, out=t)
        # eps_hat: eps on the uncorrected sqrt(v) (Kingma & Ba's efficient form, the textbook's).
        t += h["eps"] if h.get("eps_hat") else h["eps"] * bc2_sqrt
        np.divide(m, t, out=t)
        t *= -step_size * bc2_sqrt
        p += t


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay, p *= 1 - lr * weight_decay before the Adam step.

    The decay applies to every parameter (as torch.optim.AdamW given all of them) unless
    `decay_only` names fewer: the trainer names the graph's weights, so biases and norm scales
    are not decayed, the same set the train setting `weight_decay` (an L2 term added to the
    gradient) uses.
    """

    prefix = "adamw"

    def __init__(self, params, lr, **hyper):
        super().__init__(params, lr, **hyper)
        self.decay_only(None)

    def decay_only(self, names) -> None:
        # The model's arrays stay the same objects for the optimizer's life, so their ids name them.
        self._decayed = {id(p) for n, p in self.params.items() if names is None or n in names}

    def _update(self, p, g, t, state, step):
        wd = self.hyper["weight_decay"]
        if wd and id(p) in self._decayed:
            p *= 1 - self.lr * wd
        super()._update(p, g, t, state, step)


def _nesterov_rule(values: dict) -> tuple[str, str] | None:
    if values["nesterov"] and (values["momentum"] <= 0 or values["dampening"] != 0):
        return ("Nesterov momentum needs momentum > 0 and dampening = 0",
                "set momentum=0.9 and dampening=0, or nesterov=false")
    return None


# Keywords people bring from torch.optim that graphc spells differently.
_TORCH_HABITS = {"weight_decay": "weight decay is the train setting `weight_decay` (an L2 term on weights only); "
                                 "adamw(weight_decay=0.01) is the decoupled kind",
                 "betas": "`betas` is a keyword of adam and adamw: adam(betas=[0.9, 0.999])"}


def _sgd(name: str, lr: float, momentum: float, nesterov: bool) -> Signature:
    return Signature(name, (Keyword("lr", lr, NON_NEGATIVE), Keyword("momentum", momentum, NON_NEGATIVE),
                            Keyword("dampening", 0.0, FRACTION), Keyword("nesterov", nesterov, FLAG)),
                     rule=_nesterov_rule, hints=_TORCH_HABITS)


_ADAM_KEYWORDS = (Keyword("lr", 1e-3, NON_NEGATIVE), Keyword("beta1", 0.9, BELOW_ONE),
                  Keyword("beta2", 0.999, BELOW_ONE), Keyword("eps", 1e-8, NON_NEGATIVE),
                  Keyword("amsgrad", False, FLAG))


# name -> (class, its one signature: every keyword with its default). The lr defaults are torch's,
# except plain sgd's: 0.01, the rate a train section without `optimizer` has always used.
OPTIMIZERS: dict[str, tuple[type[Optimizer], Signature]] = {
    "sgd": (SGD, _sgd("sgd", 1e-2, 0.0, False)),
    "momentum": (SGD, _sgd("momentum", 1e-3, 0.9, False)),
    "nesterov": (SGD, _sgd("nesterov", 1e-3, 0.9, True)),
    "adagrad": (Adagrad, Signature("adagrad", (
        Keyword("lr", 1e-2, NON_NEGATIVE), Keyword("eps", 1e-10, NON_NEGATIVE),
        Keyword("initial_accumulator_value", 0.0, NON_NEGATIVE), Keyword("lr_decay", 0.0, NON_NEGATIVE)),
        hints=_TORCH_HABITS)),
    "rmsprop": (RMSprop, Signature("rmsprop", (
        Keyword("lr", 1e-2, NON_NEGATIVE), Keyword("alpha", 0.99, FRACTION), Keyword("eps", 1e-8, NON_NEGATIVE),
        Keyword("momentum", 0.0, NON_NEGATIVE), Keyword("centered", False, FLAG)), hints=_TORCH_HABITS)),
    # beta = 1 would divide by 1 - beta**t = 0: betas lie in [0, 1).
    # eps_hat (adam only): eps added to the uncorrected sqrt(v), the textbook's and Keras's form.
    "adam": (Adam, Signature("adam", (*_ADAM_KEYWORDS, Keyword("eps_hat", False, FLAG)), hints=_TORCH_HABITS)),
    # torch.optim.AdamW's defaults: weight_decay=0.01 (decoupled: not an L2 term in the gradient).
    "adamw": (AdamW, Signature("adamw", (*_ADAM_KEYWORDS[:4], Keyword("weight_decay", 1e-2, NON_NEGATIVE),
                                         _ADAM_KEYWORDS[4]), hints=_TORCH_HABITS)),
}
OPTIMIZER_SIGNATURES: dict[str, Signature] = {name: signature for name, (_, signature) in OPTIMIZERS.items()}


def check_optimizer(name: str, args=(), kwargs=None) -> dict:
    """Return the given keywords of optimizer `name` by name, checked (SignatureError if not).

    torch's `betas=[beta1, beta2]` is accepted where the optimizer has beta1 and beta2 (adam,
    adamw) and returned as those two keywords.
    """
    kwargs = dict(kwargs or {})
    signature = OPTIMIZER_SIGNATURES.get(name)
    if "betas" in kwargs and signature is not None and signature.keyword("beta1") is not None:
        betas = kwargs.pop("betas")
        if not (isinstance(betas, (list, tuple)) and len(betas) == 2):
            raise SignatureError(f"`betas` of `{name}` must be a list of two numbers, got {betas!r}",
                                 "e.g. betas=[0.9, 0.999]", "betas", at_value=True)
        twice = [k for k in ("beta1", "beta2") if k in kwargs]
        if twice:
            raise SignatureError(f"`{twice[0]}` is given twice: by itself and in `betas`",
                                 "give betas=[...] or beta1=... and beta2=..., not both", "betas")
        kwargs["beta1"], kwargs["beta2"] = betas
    return check_call("optimizer", OPTIMIZER_SIGNATURES, name, args, kwargs)


def make_optimizer(name: str, params: dict[str, np.ndarray], *, decayed=None, **kwargs) -> Optimizer:
    """Return a new optimizer `name` (a key of OPTIMIZERS) over `params`.

    Keywords not given take the defaults of the optimizer's signature; an unknown
    name or keyword or a bad value raises GraphcError with `graphc check`'s message.
    `decayed` names the parameters adamw's decoupled weight decay applies to (None: all).
    """
    try:
        given = check_optimizer(name, (), kwargs)
    except SignatureError as error:
        raise GraphcError(error.message, help=error.help) from None
    cls, signature = OPTIMIZERS[name]
    optimizer = cls(params, **signature.complete(given))
    if decayed is not None:
        optimizer.decay_only(frozenset(decayed))
    return optimizer


# Every schedule can start with a linear warm-up: `cosine(warmup=2)`. Counted in epochs, because
# every schedule sets the lr once per epoch (one clock, and checkpoints resume at epoch boundaries).
_WARMUP = (Keyword("warmup", 0, Accepts(lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                                        "a whole number of epochs >= 0")),
           Keyword("warmup_factor", 1 / 3, Accepts(lambda v: FRACTION.test(v) and v > 0, "a number in (0, 1]")))
_WARMUP_NAMES = tuple(k.name for k in _WARMUP)

# name -> its signature; REQUIRED marks keywords without a default.
SCHEDULES: dict[str, Signature] = {
    "constant": Signature("constant", _WARMUP),
    "step": Signature("step", (Keyword("step_size", REQUIRED, WHOLE), Keyword("gamma", 0.1, NON_NEGATIVE),
                               *_WARMUP)),
    "exponential": Signature("exponential", (Keyword("gamma", REQUIRED, NON_NEGATIVE), *_WARMUP)),
    # t_max defaults to the number of epochs after the warm-up, which only the run knows.
    "cosine": Signature("cosine", (Keyword("t_max", None, POSITIVE), Keyword("eta_min", 0.0, NON_NEGATIVE),
                                   *_WARMUP)),
}
# torch.optim.lr_scheduler's spellings that mean the same keyword here.
_SCHEDULE_SPELLINGS = {"T_max": "t_max"}


def check_schedule(name: str, args=(), kwargs=None) -> dict:
    """Return the given keywords of schedule `name` by name, checked (SignatureError if not);
    torch's `T_max` is read as `t_max`."""
    kwargs = {_SCHEDULE_SPELLINGS.get(k, k): v for k, v in (kwargs or {}).items()}
    return check_call("schedule", SCHEDULES, name, args, kwargs)


def make_schedule(name: str, base_lr: float, epochs: int, **kwargs) -> Callable[[int], float]:
    """Return a function mapping a 0-based epoch index to that epoch's learning rate.

    Values equal torch.optim.lr_scheduler's (StepLR, ExponentialLR,
    CosineAnnealingLR) when its `step()` is called once per epoch. With `warmup=W`
    the first W epochs rise linearly from warmup_factor * lr towards lr and the
    schedule then starts at its own epoch 0: torch's SequentialLR([LinearLR(
    start_factor=warmup_factor, total_iters=W), schedule], milestones=[W]).
    """
    try:
        given = check_schedule(name, (), kwargs)
    except SignatureError as error:
        raise GraphcError(error.message, help=error.help) from None
    o = SCHEDULES[name].complete(given)
    warmup, factor = o["warmup"], o["warmup_factor"]
    base = float(base_lr)
    after = _after_warmup(name, base, epochs - warmup, o) if epochs > warmup or not warmup else (lambda e: base)
    if not warmup:
        return after
    return lambda e: base * (factor + (1 - factor) * e / warmup) if e < warmup else after(e - warmup)


def _after_warmup(name: str, base: float, epochs: int, o: dict) -> Callable[[int], float]:
    """Return the schedule proper (its epoch 0 is the first epoch after the warm-up)."""
    if name == "step":
        step_size, gamma = o["step_size"], o["gamma"]
        return lambda e: base * gamma ** (e // step_size)  # StepLR
    if name == "exponential":
        return lambda e: base * o["gamma"] ** e  # ExponentialLR
    if name == "cosine":
        t_max, eta_min = (epochs if o["t_max"] is None else o["t_max"]), o["eta_min"]
        if not t_max > 0:
            raise GraphcError(f"cosine schedule needs t_max > 0, got {t_max!r}",
                              help="t_max is the number of epochs of one half cosine; it defaults to the "
                                   "epochs after the warm-up")
        # CosineAnnealingLR's closed form (torch's recursive form gives the same values).
        return lambda e: eta_min + (base - eta_min) * (1 + math.cos(math.pi * e / t_max)) / 2
    return lambda e: base


def format_call(name: str, kwargs: dict) -> str:
    """Return a setting as the user writes it: `adam(lr=0.001)`, or just `adam` without arguments."""
    args = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    return f"{name}({args})" if args else name
