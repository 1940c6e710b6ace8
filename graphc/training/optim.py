"""Optimizers and per-epoch learning-rate schedules, following PyTorch's update formulas.

Input: the model's parameter arrays (name -> float32/float64 ndarray), then one
gradient dict per step. Output: the parameters updated in place, a flat dict of
state arrays for checkpoints, and lr-per-epoch functions for schedules.

Each update reproduces the single-tensor (CPU, ``foreach=False``) code path of
``torch.optim`` with ``weight_decay=0``: weight decay is the trainer's job,
because it applies L1/L2 only to weights.
"""
from __future__ import annotations

import difflib
import math
import numbers
from typing import Callable

import numpy as np

from graphc.diagnostics import GraphcError


class _Required:
    """Marker for a keyword that has no default and must be given."""

    def __repr__(self) -> str:
        return "<required>"


REQUIRED = _Required()


def _unknown(kind: str, name: str, valid, where: str = "") -> GraphcError:
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return GraphcError(f"unknown {kind} '{name}'{where}",
                       help=f"{hint}valid: {', '.join(valid) if valid else '(none)'}")


def _in_range(value, limit: float, inclusive: bool) -> bool:
    """Return True for a finite real number in [0, limit] (or [0, limit) when not inclusive)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        return False
    return 0 <= value and (value <= limit if inclusive else value < limit)


class Optimizer:
    """Base class: owns per-parameter state buffers and applies `_update` per step.

    Subclasses set `prefix` (used in state-array names), `defaults` (allowed
    hyper-parameters) and implement `_buffers()` and `_update()`.
    """

    prefix = "optimizer"
    defaults: dict[str, object] = {}
    upper: dict[str, tuple[float, bool]] = {}  # option -> (limit, inclusive); all numbers are >= 0

    def __init__(self, params: dict[str, np.ndarray], lr: float, **hyper):
        self.hyper = _checked_kwargs("optimizer", self.prefix, self.defaults, hyper)
        self._check_hyper({"lr": lr, **self.hyper})
        self.lr = float(lr)
        for name, p in params.items():
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f" or not p.flags.writeable:
                raise GraphcError(f"parameter '{name}' is not a writable float array",
                                  help="parameters must be float32 or float64 numpy arrays")
        # Keep the model's own arrays: updates must be visible to the model without rebinding.
        self.params = dict(params)
        self.state = {buf: {n: np.zeros_like(p) for n, p in self.params.items()}
                      for buf in self._buffers()}
        self.steps = {n: np.zeros((), np.int64) for n in self.params}
        self._scratch = {n: np.empty_like(p) for n, p in self.params.items()}

    def _check_hyper(self, hyper: dict) -> None:
        """Raise GraphcError for a flag that is not a bool or a number out of range."""
        for key, value in hyper.items():
            limit, inclusive = self.upper.get(key, (math.inf, True))
            if isinstance(self.defaults.get(key), bool):
                ok, want = isinstance(value, (bool, np.bool_)), "true or false"
            else:
                ok = _in_range(value, limit, inclusive)
                want = f"a number in [0, {limit}{']' if inclusive else ')'}" if limit < math.inf else "a number >= 0"
            if not ok:
                raise GraphcError(f"{self.prefix} option {key} must be {want}, got {value!r}",
                                  help=f"the default is {key}={self.defaults.get(key, 0.01)}")

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
                raise _unknown("parameter in gradients", name, self.params)
            if g.shape != p.shape:
                raise GraphcError(f"gradient for '{name}' has shape {list(g.shape)}, "
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
        problems = [f"missing '{k}'" for k in targets if k not in arrays]
        problems += [f"unexpected '{k}'" for k in arrays
                     if k not in targets and k.startswith(self.prefix + ".") and "/" in k]
        problems += [f"'{k}': saved {list(np.shape(arrays[k]))}, expected {list(t.shape)}"
                     for k, t in targets.items() if k in arrays and np.shape(arrays[k]) != t.shape]
        if problems:
            raise GraphcError(f"optimizer state does not match this {self.prefix} optimizer: "
                              + "; ".join(problems[:10]) + ("; ..." if len(problems) > 10 else ""),
                              help="resume with the same optimizer, options and model it was saved with")
        for k, t in targets.items():
            np.copyto(t, arrays[k], casting="same_kind")


class SGD(Optimizer):
    """torch.optim.SGD: plain, momentum (with dampening) and Nesterov."""

    prefix = "sgd"
    defaults = {"momentum": 0.0, "dampening": 0.0, "nesterov": False}
    upper = {"dampening": (1.0, True)}

    def _check_hyper(self, hyper):
        super()._check_hyper(hyper)
        h = self.hyper
        if h["nesterov"] and (h["momentum"] <= 0 or h["dampening"] != 0):
            raise GraphcError("Nesterov momentum needs momentum > 0 and dampening = 0",
                              help="set momentum=0.9 and dampening=0, or nesterov=false")

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
    """torch.optim.Adagrad: clr = lr / (1 + (step-1)*lr_decay); p -= clr * g / (sqrt(sum) + eps)."""

    prefix = "adagrad"
    defaults = {"eps": 1e-10, "initial_accumulator_value": 0.0, "lr_decay": 0.0}

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
    defaults = {"alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "centered": False}
    upper = {"alpha": (1.0, True)}

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
    """torch.optim.Adam (non-capturable path), optionally AMSGrad."""

    prefix = "adam"
    defaults = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "amsgrad": False}
    upper = {"beta1": (1.0, False), "beta2": (1.0, False)}  # beta = 1 divides by 1 - beta**t = 0

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
        t += h["eps"] * bc2_sqrt
        np.divide(m, t, out=t)
        t *= -step_size * bc2_sqrt
        p += t


# name -> (class, allowed keywords with defaults); lr defaults are torch's.
OPTIMIZERS: dict[str, tuple[type[Optimizer], dict[str, object]]] = {
    "sgd": (SGD, {"lr": 1e-3, "momentum": 0.0, "nesterov": False, "dampening": 0.0}),
    "momentum": (SGD, {"lr": 1e-3, "momentum": 0.9, "nesterov": False, "dampening": 0.0}),
    "nesterov": (SGD, {"lr": 1e-3, "momentum": 0.9, "nesterov": True, "dampening": 0.0}),
    "adagrad": (Adagrad, {"lr": 1e-2, "eps": 1e-10, "initial_accumulator_value": 0.0, "lr_decay": 0.0}),
    "rmsprop": (RMSprop, {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "centered": False}),
    "adam": (Adam, {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "amsgrad": False}),
}


def _checked_kwargs(kind: str, name: str, allowed: dict[str, object], kwargs: dict) -> dict:
    for key in kwargs:
        if key == "betas" and "beta1" in allowed:
            raise GraphcError(f"unknown option 'betas' for {kind} '{name}'",
                              help="give beta1=... and beta2=... separately (torch's betas=(beta1, beta2))")
        if key not in allowed:
            raise _unknown("option", key, allowed, f" for {kind} '{name}'")
    merged = {**allowed, **kwargs}
    missing = [k for k, v in merged.items() if v is REQUIRED]
    if missing:
        raise GraphcError(f"{kind} '{name}' needs {', '.join(missing)}",
                          help=f"give {', '.join(f'{k}=...' for k in missing)}")
    return merged


def make_optimizer(name: str, params: dict[str, np.ndarray], **kwargs) -> Optimizer:
    """Return a new optimizer `name` (a key of OPTIMIZERS) over `params`.

    Keywords not given take the defaults listed in OPTIMIZERS; unknown names or
    keywords raise GraphcError listing the valid ones.
    """
    if name not in OPTIMIZERS:
        raise _unknown("optimizer", name, OPTIMIZERS)
    cls, allowed = OPTIMIZERS[name]
    hyper = _checked_kwargs("optimizer", name, allowed, kwargs)
    return cls(params, **hyper)


# name -> allowed keywords with defaults; REQUIRED marks keywords without one.
SCHEDULES: dict[str, dict[str, object]] = {
    "constant": {},
    "step": {"step_size": REQUIRED, "gamma": 0.1},
    "exponential": {"gamma": REQUIRED},
    "cosine": {"t_max": None, "eta_min": 0.0},
}


def make_schedule(name: str, base_lr: float, epochs: int, **kwargs) -> Callable[[int], float]:
    """Return a function mapping a 0-based epoch index to that epoch's learning rate.

    Values equal torch.optim.lr_scheduler's (StepLR, ExponentialLR,
    CosineAnnealingLR) when its `step()` is called once per epoch.
    """
    if name not in SCHEDULES:
        raise _unknown("learning-rate schedule", name, SCHEDULES)
    o = _checked_kwargs("schedule", name, SCHEDULES[name], kwargs)
    for key, value in o.items():
        if value is not None and not _in_range(value, math.inf, True):
            raise GraphcError(f"{name} schedule option {key} must be a number >= 0, got {value!r}",
                              help="e.g. gamma=0.1, step_size=10, t_max=50, eta_min=0")
    base = float(base_lr)
    if name == "step":
        step_size, gamma = o["step_size"], o["gamma"]
        if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1:
            raise GraphcError(f"step schedule needs a whole step_size >= 1, got {step_size!r}",
                              help="e.g. step_size=10 decays the rate every 10 epochs")
        return lambda e: base * gamma ** (e // step_size)  # StepLR
    if name == "exponential":
        return lambda e: base * o["gamma"] ** e  # ExponentialLR
    if name == "cosine":
        t_max, eta_min = (epochs if o["t_max"] is None else o["t_max"]), o["eta_min"]
        if not t_max > 0:
            raise GraphcError(f"cosine schedule needs t_max > 0, got {t_max!r}",
                              help="t_max is the number of epochs of one half cosine; it defaults to epochs")
        # CosineAnnealingLR's closed form (torch's recursive form gives the same values).
        return lambda e: eta_min + (base - eta_min) * (1 + math.cos(math.pi * e / t_max)) / 2
    return lambda e: base
