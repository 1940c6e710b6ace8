"""Parameter initialisers, following torch.nn.init's formulas.

Input: a shape, a scheme name with its keywords, a numpy Generator and the
tensor's fan-in/fan-out (the caller knows graphc's weight layouts; `fans`
computes them). Output: a new array of the requested float dtype.

Random values are drawn in float64 and then cast, so a given generator state
gives the same values (up to rounding) whatever the dtype.
"""
from __future__ import annotations

import math

import numpy as np

from graphc.diagnostics import GraphcError
from graphc.signature import (
    ANY_NUMBER,
    NON_NEGATIVE,
    REQUIRED,
    Keyword,
    Signature,
    SignatureError,
    check_call,
)


def _low_at_most_high(values: dict) -> tuple[str, str] | None:
    if values["low"] > values["high"]:
        return (f"`uniform` needs low <= high, got low={values['low']}, high={values['high']}",
                "swap low and high")
    return None


def _gain(scheme: str) -> Signature:
    return Signature(scheme, (Keyword("gain", 1.0, NON_NEGATIVE),))


def _slope(scheme: str) -> Signature:
    # `a` is the negative slope of a leaky relu; only a**2 enters the gain, so any number works.
    return Signature(scheme, (Keyword("a", 0.0, ANY_NUMBER),))


# scheme -> its signature: keywords with defaults (REQUIRED: must be given) and the values they accept.
INITIALISERS: dict[str, Signature] = {
    "zeros": Signature("zeros", ()),
    "ones": Signature("ones", ()),
    "constant": Signature("constant", (Keyword("value", REQUIRED, ANY_NUMBER),)),
    "normal": Signature("normal", (Keyword("std", 0.01, NON_NEGATIVE), Keyword("mean", 0.0, ANY_NUMBER))),
    "uniform": Signature("uniform", (Keyword("low", -0.05, ANY_NUMBER), Keyword("high", 0.05, ANY_NUMBER)),
                         rule=_low_at_most_high),
    "xavier": _gain("xavier"),
    "xavier_normal": _gain("xavier_normal"),
    "xavier_uniform": _gain("xavier_uniform"),
    "he": _slope("he"),
    "he_normal": _slope("he_normal"),
    "he_uniform": _slope("he_uniform"),
    "lecun": Signature("lecun", ()),
}


def check_initialiser(scheme: str, args=(), kwargs=None) -> dict:
    """Return the given options of initialiser `scheme` by name, checked (SignatureError if not)."""
    return check_call("initialiser", INITIALISERS, scheme, args, kwargs)


def fans(shape: tuple[int, ...], layout: str) -> tuple[int, int]:
    """Return (fan_in, fan_out) of a tensor of `shape` stored in graphc `layout`.

    "linear": [in, out]; "conv": [out, in, *kernel] (fans multiplied by the
    kernel size, as torch.nn.init._calculate_fan_in_and_fan_out does);
    "other" (biases, scales, ...): both fans are the element count (at least 1).
    """
    shape = tuple(int(d) for d in shape)
    if layout == "linear":
        if len(shape) != 2:
            raise ValueError(f"linear weight must be 2-D [in, out], got shape {list(shape)}")
        return shape[0], shape[1]
    if layout == "conv":
        if len(shape) < 3:
            raise ValueError(f"conv weight must be [out, in, *kernel], got shape {list(shape)}")
        receptive = math.prod(shape[2:])
        return shape[1] * receptive, shape[0] * receptive
    if layout == "other":
        n = max(1, math.prod(shape))
        return n, n
    raise ValueError(f"unknown weight layout {layout!r}; expected 'linear', 'conv' or 'other'")


def _options(scheme: str, kwargs: dict) -> dict:
    """Return every option of `scheme` (defaults filled in); GraphcError with the compiler's message if bad."""
    try:
        given = check_initialiser(scheme, (), kwargs)
    except SignatureError as error:
        raise GraphcError(error.message, help=error.help) from None
    return INITIALISERS[scheme].complete(given)


def _positive_fan(scheme: str, which: str, value: int) -> int:
    if value <= 0:
        raise GraphcError(f"initialiser '{scheme}' needs a positive {which}, got {value}",
                          help="use 'zeros', 'normal' or 'uniform' for tensors without a fan")
    return value


def initialise(shape: tuple[int, ...], scheme: str, rng: np.random.Generator, *,
               fan_in: int, fan_out: int, dtype=np.float32, **kwargs) -> np.ndarray:
    """Return a new array of `shape` and `dtype` filled by `scheme` (a key of INITIALISERS).

    Formulas (torch.nn.init):
      xavier / xavier_normal: N(0, std), std = gain * sqrt(2 / (fan_in + fan_out))
      xavier_uniform:         U(-b, b),  b = gain * sqrt(6 / (fan_in + fan_out))
      he / he_normal:         kaiming_normal_(mode="fan_in", nonlinearity="leaky_relu", a),
                              std = sqrt(2 / (1 + a^2)) / sqrt(fan_in); a=0 is relu: sqrt(2 / fan_in)
      he_uniform:             kaiming_uniform_ likewise, b = sqrt(3) * std, for a=0 sqrt(6 / fan_in)
      lecun:                  N(0, sqrt(1 / fan_in)), kaiming_normal_ with nonlinearity="linear"
      normal (std, mean), uniform (low, high), constant (value), zeros, ones.
    Unknown schemes, keywords or bad values raise GraphcError with the message
    `graphc check` gives for the same `init=` (one checker: `check_initialiser`).
    Deterministic: the same generator state gives the same array.
    """
    opts = _options(scheme, kwargs)
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise GraphcError(f"parameters must have a float dtype, got {dtype}", help="use float32 or float64")
    shape = tuple(int(d) for d in shape)
    if scheme == "zeros":
        return np.zeros(shape, dtype)
    if scheme == "ones":
        return np.ones(shape, dtype)
    if scheme == "constant":
        return np.full(shape, opts["value"], dtype)
    if scheme == "uniform":
        return rng.uniform(opts["low"], opts["high"], size=shape).astype(dtype, copy=False)
    if scheme == "normal":
        return rng.normal(opts["mean"], opts["std"], size=shape).astype(dtype, copy=False)
    if scheme in ("xavier", "xavier_normal", "xavier_uniform"):
        fan_sum = _positive_fan(scheme, "fan_in + fan_out", fan_in + fan_out)
        std = opts["gain"] * math.sqrt(2.0 / fan_sum)
    else:  # he*, lecun: torch's kaiming with mode="fan_in"
        fan = _positive_fan(scheme, "fan_in", fan_in)
        gain = 1.0 if scheme == "lecun" else math.sqrt(2.0 / (1 + opts["a"] ** 2))
        std = gain / math.sqrt(fan)
    if scheme.endswith("_uniform"):
        bound = math.sqrt(3.0) * std  # U(-b, b) has std b / sqrt(3)
        return rng.uniform(-bound, bound, size=shape).astype(dtype, copy=False)
    return rng.normal(0.0, std, size=shape).astype(dtype, copy=False)
