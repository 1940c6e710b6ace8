"""Initialisers: shapes, dtypes, spreads against torch.nn.init's formulas, determinism, errors."""
import math

import numpy as np
import pytest

from graphc.diagnostics import GraphcError
from graphc.ops.init import INITIALISERS, fans, initialise
from graphc.signature import REQUIRED

SHAPE = (400, 300)  # graphc linear layout [in, out]
FAN_IN, FAN_OUT = 400, 300

# scheme -> (kwargs, expected std, uniform bound or None)
SPREADS = {
    "xavier": ({}, math.sqrt(2 / 700), None),
    "xavier_normal": ({"gain": 2.0}, 2.0 * math.sqrt(2 / 700), None),
    "xavier_uniform": ({}, math.sqrt(6 / 700) / math.sqrt(3), math.sqrt(6 / 700)),
    "he": ({}, math.sqrt(2 / 400), None),
    "he_normal": ({}, math.sqrt(2 / 400), None),
    "he_uniform": ({}, math.sqrt(2 / 400), math.sqrt(6 / 400)),
    "lecun": ({}, math.sqrt(1 / 400), None),
    "normal": ({}, 0.01, None),
    "uniform": ({"low": -0.2, "high": 0.2}, 0.2 / math.sqrt(3), 0.2),
}


def make(scheme, seed=0, dtype=np.float32, shape=SHAPE, **kwargs):
    return initialise(shape, scheme, np.random.default_rng(seed), fan_in=FAN_IN, fan_out=FAN_OUT,
                      dtype=dtype, **kwargs)


@pytest.mark.parametrize("scheme", sorted(INITIALISERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shape_and_dtype(scheme, dtype):
    kwargs = {"value": 0.5} if scheme == "constant" else {}
    for shape in [(3, 4), (6, 1, 5, 5), (7,), ()]:
        out = make(scheme, dtype=dtype, shape=shape, **kwargs)
        assert out.shape == shape and out.dtype == dtype
        assert np.all(np.isfinite(out))


@pytest.mark.parametrize("scheme", sorted(SPREADS))
def test_empirical_spread_matches_formula(scheme):
    kwargs, std, bound = SPREADS[scheme]
    out = make(scheme, dtype=np.float64, **kwargs)
    assert abs(out.std() / std - 1) < 0.02, (out.std(), std)
    assert abs(out.mean()) < 0.02 * std
    if bound is not None:
        assert np.abs(out).max() <= bound
        assert np.abs(out).max() > 0.99 * bound


def test_he_leaky_relu_slope_follows_torch_gain():
    std = math.sqrt(2 / (1 + 0.2 ** 2)) / math.sqrt(FAN_IN)
    out = make("he", dtype=np.float64, a=0.2)
    assert abs(out.std() / std - 1) < 0.02


@pytest.mark.parametrize("scheme,torch_fn,torch_kwargs", [
    ("xavier_normal", "xavier_normal_", {}),
    ("xavier_uniform", "xavier_uniform_", {}),
    ("he_normal", "kaiming_normal_", {"mode": "fan_in", "nonlinearity": "relu"}),
    ("he_uniform", "kaiming_uniform_", {"mode": "fan_in", "nonlinearity": "relu"}),
    ("lecun", "kaiming_normal_", {"mode": "fan_in", "nonlinearity": "linear"}),
])
def test_spread_matches_torch(scheme, torch_fn, torch_kwargs):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    # torch's linear weight is [out, in]: the transpose of graphc's [in, out].
    t = torch.empty(FAN_OUT, FAN_IN, dtype=torch.float64)
    getattr(torch.nn.init, torch_fn)(t, **torch_kwargs)
    ref = t.numpy()
    ours = make(scheme, dtype=np.float64)
    assert abs(ours.std() / ref.std() - 1) < 0.02
    assert abs(np.abs(ours).max() / np.abs(ref).max() - 1) < (0.01 if "uniform" in scheme else 0.5)


def test_fans_match_torch():
    torch = pytest.importorskip("torch")
    calc = torch.nn.init._calculate_fan_in_and_fan_out
    assert fans((400, 300), "linear") == calc(torch.empty(300, 400)) == (400, 300)
    assert fans((6, 1, 5, 5), "conv") == calc(torch.empty(6, 1, 5, 5)) == (25, 150)
    assert fans((16, 6, 3, 3), "conv") == calc(torch.empty(16, 6, 3, 3)) == (54, 144)


def test_fans_layouts():
    assert fans((400, 300), "linear") == (400, 300)
    assert fans((6, 1, 5, 5), "conv") == (25, 150)
    assert fans((8,), "other") == (8, 8)
    assert fans((), "other") == (1, 1)
    with pytest.raises(ValueError):
        fans((3,), "linear")
    with pytest.raises(ValueError):
        fans((3, 3), "dense")


def test_deterministic():
    for scheme in ["xavier", "he_uniform", "normal", "uniform", "lecun"]:
        np.testing.assert_array_equal(make(scheme, seed=3), make(scheme, seed=3))
        assert not np.array_equal(make(scheme, seed=3), make(scheme, seed=4))
    # Values are drawn in float64 and cast, so dtype does not change the stream.
    np.testing.assert_array_equal(make("he", seed=5, dtype=np.float64).astype(np.float32),
                                  make("he", seed=5, dtype=np.float32))


def test_constants():
    assert not np.any(make("zeros"))
    assert np.all(make("ones") == 1)
    assert np.all(make("constant", value=0.25, dtype=np.float64) == 0.25)
    assert np.all(make("normal", std=0.0, mean=3.0) == 3.0)
    out = make("uniform", low=1.0, high=2.0)
    assert out.min() >= 1.0 and out.max() <= 2.0


def test_zero_fans_only_fail_when_needed():
    rng = np.random.default_rng(0)
    assert initialise((4,), "zeros", rng, fan_in=0, fan_out=0).shape == (4,)
    with pytest.raises(GraphcError, match="fan_in"):
        initialise((4,), "he", rng, fan_in=0, fan_out=4)
    with pytest.raises(GraphcError, match="fan_in"):
        initialise((4,), "xavier", rng, fan_in=0, fan_out=0)


def test_errors():
    # The messages `graphc check` gives for the same `init=` (one checker), names in backticks.
    with pytest.raises(GraphcError) as err:
        make("xavir")
    assert "unknown initialiser `xavir`" in str(err.value)
    assert "did you mean `xavier`?" in str(err.value) and "he_uniform" in str(err.value)
    with pytest.raises(GraphcError, match="did you mean `std`"):
        make("normal", stdev=0.1)
    with pytest.raises(GraphcError, match="its arguments: none"):
        make("lecun", gain=2.0)
    with pytest.raises(GraphcError, match="needs value"):
        make("constant")
    with pytest.raises(GraphcError, match="`std` of `normal` must be a number >= 0, got -1.0"):
        make("normal", std=-1.0)
    with pytest.raises(GraphcError, match="low <= high"):
        make("uniform", low=1.0, high=0.0)
    with pytest.raises(GraphcError, match="`gain` of `xavier` must be a number >= 0, got nan"):
        make("xavier", gain=float("nan"))
    with pytest.raises(GraphcError, match="`mean` of `normal` must be a finite number, got inf"):
        make("normal", mean=float("inf"))
    with pytest.raises(GraphcError, match="`value` of `constant` must be a finite number, got true"):
        make("constant", value=True)
    with pytest.raises(GraphcError, match="float dtype"):
        make("zeros", dtype=np.int32)


def test_signature_table_matches_the_formulas():
    # Every scheme's keywords are the ones `initialise` reads; REQUIRED only where there is no sensible default.
    assert {k: s.defaults for k, s in INITIALISERS.items() if s.keywords} == {
        "constant": {"value": REQUIRED}, "normal": {"std": 0.01, "mean": 0.0},
        "uniform": {"low": -0.05, "high": 0.05}, "xavier": {"gain": 1.0}, "xavier_normal": {"gain": 1.0},
        "xavier_uniform": {"gain": 1.0}, "he": {"a": 0.0}, "he_normal": {"a": 0.0}, "he_uniform": {"a": 0.0}}
