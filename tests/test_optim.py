"""Optimizers and schedules: graphc against torch.optim on the same gradient sequence."""
import tracemalloc

import numpy as np
import pytest

from graphc.diagnostics import GraphcError
from graphc.training.optim import OPTIMIZERS, SCHEDULES, check_optimizer, make_optimizer, make_schedule

SHAPES = {"c1.weight": (3, 4, 2), "c1.bias": (4,), "fc.weight": (5, 3)}
STEPS = 20

CASES = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.1, "momentum": 0.5, "dampening": 0.3}),
    ("sgd", {"lr": 0.1, "momentum": 0.8, "nesterov": True}),
    ("momentum", {"lr": 0.05}),
    ("nesterov", {"lr": 0.05}),
    ("adagrad", {"lr": 0.1}),
    ("adagrad", {"lr": 0.1, "lr_decay": 0.05, "initial_accumulator_value": 0.1, "eps": 1e-6}),
    ("rmsprop", {"lr": 0.01}),
    ("rmsprop", {"lr": 0.01, "centered": True, "momentum": 0.9}),
    ("rmsprop", {"lr": 0.02, "alpha": 0.9, "momentum": 0.5}),
    ("rmsprop", {"lr": 0.02, "centered": True}),
    ("adam", {"lr": 0.01}),
    ("adam", {"lr": 0.01, "amsgrad": True, "beta1": 0.8, "beta2": 0.99}),
    ("adam", {"lr": 0.03, "eps": 1e-3}),
    ("adam", {"lr": 0.01, "betas": [0.8, 0.99]}),      # torch's spelling of beta1, beta2
    ("adamw", {}),                                      # torch.optim.AdamW's defaults, weight_decay=0.01
    ("adamw", {"lr": 0.01, "weight_decay": 0.1}),
    ("adamw", {"lr": 0.02, "weight_decay": 0.05, "amsgrad": True, "betas": [0.85, 0.98]}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw in CASES]


def initial_params(dtype=np.float64):
    rng = np.random.default_rng(1)
    return {n: rng.standard_normal(s).astype(dtype) for n, s in SHAPES.items()}


def gradient_sequence(steps=STEPS, dtype=np.float64):
    """Fixed gradients; the bias gets none on every third step (exercises per-parameter steps)."""
    rng = np.random.default_rng(2)
    seq = []
    for i in range(steps):
        grads = {n: rng.standard_normal(s).astype(dtype) for n, s in SHAPES.items()}
        if i % 3 == 2:
            del grads["c1.bias"]
        seq.append(grads)
    return seq


def torch_optimizer(torch, name, kwargs, tensors):
    h = OPTIMIZERS[name][1].complete(check_optimizer(name, (), kwargs))
    params = list(tensors.values())
    if OPTIMIZERS[name][0].__name__ == "SGD":
        return torch.optim.SGD(params, lr=h["lr"], momentum=h["momentum"], dampening=h["dampening"],
                               nesterov=h["nesterov"], foreach=False)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=h["lr"], lr_decay=h["lr_decay"], eps=h["eps"],
                                   initial_accumulator_value=h["initial_accumulator_value"], foreach=False)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=h["lr"], alpha=h["alpha"], eps=h["eps"],
                                   momentum=h["momentum"], centered=h["centered"], foreach=False)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=h["eps"],
                                 weight_decay=h["weight_decay"], amsgrad=h["amsgrad"], foreach=False)
    assert name == "adam"
    return torch.optim.Adam(params, lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=h["eps"],
                            amsgrad=h["amsgrad"], foreach=False)


def run_torch(torch, name, kwargs, params, grad_seq):
    tensors = {n: torch.nn.Parameter(torch.from_numpy(p.copy())) for n, p in params.items()}
    opt = torch_optimizer(torch, name, kwargs, tensors)
    for grads in grad_seq:
        for n, t in tensors.items():
            t.grad = torch.from_numpy(grads[n].copy()) if n in grads else None
        opt.step()
    return {n: t.detach().numpy() for n, t in tensors.items()}


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_matches_torch_float64(name, kwargs):
    torch = pytest.importorskip("torch")
    params, seq = initial_params(), gradient_sequence()
    expected = run_torch(torch, name, kwargs, params, seq)
    opt = make_optimizer(name, params, **kwargs)
    for grads in seq:
        opt.step(grads)
    for n in SHAPES:
        np.testing.assert_allclose(params[n], expected[n], rtol=1e-10, atol=1e-13, err_msg=n)
        assert not np.array_equal(params[n], initial_params()[n])


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_float32_keeps_dtype_in_place_and_matches_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    params, seq = initial_params(np.float32), gradient_sequence(dtype=np.float32)
    expected = run_torch(torch, name, kwargs, params, seq)
    originals = dict(params)
    opt = make_optimizer(name, params, **kwargs)
    for grads in seq:
        opt.step(grads)
    for n in SHAPES:
        assert params[n] is originals[n] and opt.params[n] is originals[n]
        assert params[n].dtype == np.float32
        np.testing.assert_allclose(params[n], expected[n], rtol=2e-5, atol=2e-6, err_msg=n)
    for key, arr in opt.state_arrays().items():
        assert arr.dtype == (np.int64 if ".step/" in key else np.float32), key


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_state_round_trip_continues_identically(name, kwargs):
    seq = gradient_sequence()
    a_params = initial_params()
    a = make_optimizer(name, a_params, **kwargs)
    for grads in seq[:10]:
        a.step(grads)
    saved = {k: v.copy() for k, v in a.state_arrays().items()}
    assert all(k.startswith(a.prefix + ".") for k in saved)
    assert saved[f"{a.prefix}.step/c1.bias"].shape == ()
    b_params = {n: p.copy() for n, p in a_params.items()}
    b = make_optimizer(name, b_params, **kwargs)
    b.load_state_arrays({**saved, "c1.weight": np.zeros(1)})  # non-state keys are ignored
    for grads in seq[10:]:
        a.step(grads)
        b.step(grads)
    for n in SHAPES:
        np.testing.assert_array_equal(a_params[n], b_params[n])
    for k, v in a.state_arrays().items():
        np.testing.assert_array_equal(v, b.state_arrays()[k])


def test_state_arrays_are_copies():
    params = initial_params()
    opt = make_optimizer("adam", params)
    opt.step(gradient_sequence(1)[0])
    state = opt.state_arrays()
    state["adam.m/fc.weight"][...] = 123.0
    assert not np.any(opt.state_arrays()["adam.m/fc.weight"] == 123.0)


def test_load_state_mismatch_is_reported():
    adam = make_optimizer("adam", initial_params())
    sgd = make_optimizer("momentum", initial_params())
    with pytest.raises(GraphcError, match="missing `sgd.momentum/c1.weight`"):
        sgd.load_state_arrays(adam.state_arrays())
    state = adam.state_arrays()
    state["adam.m/c1.bias"] = np.zeros(7)
    with pytest.raises(GraphcError, match=r"`adam.m/c1.bias`: saved \[7\], expected \[4\]"):
        adam.load_state_arrays(state)


def test_step_is_allocation_light():
    params = {"w": np.zeros((1000, 1000), np.float32)}
    grads = {"w": np.ones((1000, 1000), np.float32)}
    for name, kwargs in CASES:
        opt = make_optimizer(name, params, **kwargs)
        opt.step(grads)
        tracemalloc.start()
        opt.step(grads)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 100_000, (name, kwargs, peak)  # a temporary would be 4 MB


def test_only_named_params_are_updated():
    params = initial_params()
    before = {n: p.copy() for n, p in params.items()}
    opt = make_optimizer("sgd", params, lr=0.1)
    opt.step({"fc.weight": np.ones(SHAPES["fc.weight"])})
    np.testing.assert_array_equal(params["fc.weight"], before["fc.weight"] - 0.1)
    np.testing.assert_array_equal(params["c1.weight"], before["c1.weight"])
    opt.lr = 0.5
    opt.step({"fc.weight": np.ones(SHAPES["fc.weight"])})
    np.testing.assert_allclose(params["fc.weight"], before["fc.weight"] - 0.6)


def test_errors():
    params = initial_params()
    # The messages `graphc check` gives for the same train setting (one checker), names in backticks.
    with pytest.raises(GraphcError) as err:
        make_optimizer("adma", params)
    assert "unknown optimizer `adma`" in str(err.value)
    assert "did you mean `adam`?" in str(err.value) and "rmsprop" in str(err.value)
    with pytest.raises(GraphcError) as err:
        make_optimizer("sgd", params, weight_decay=1e-4)
    assert "`sgd` has no argument `weight_decay`" in str(err.value) and "train setting `weight_decay`" in str(err.value)
    with pytest.raises(GraphcError, match="did you mean `beta1`"):
        make_optimizer("adam", params, beta_1=0.5)
    with pytest.raises(GraphcError, match="Nesterov"):
        make_optimizer("sgd", params, nesterov=True)
    with pytest.raises(GraphcError, match="`lr` of `sgd` must be a number >= 0, got -1.0"):
        make_optimizer("sgd", params, lr=-1.0)
    with pytest.raises(GraphcError, match=r"`beta1` of `adam` must be a number in \[0, 1\), got 1.0"):
        make_optimizer("adam", params, beta1=1.0)
    with pytest.raises(GraphcError, match="true or false"):
        make_optimizer("adam", params, amsgrad="yes")
    with pytest.raises(GraphcError, match="alpha"):
        make_optimizer("rmsprop", params, alpha=float("nan"))
    # torch's betas is accepted by adam and adamw (test_matches_torch_float64), refused where it means nothing.
    with pytest.raises(GraphcError, match="`sgd` has no argument `betas`"):
        make_optimizer("sgd", params, betas=(0.9, 0.99))
    with pytest.raises(GraphcError, match="`beta1` is given twice"):
        make_optimizer("adam", params, betas=(0.9, 0.99), beta1=0.8)
    with pytest.raises(GraphcError, match="a list of two numbers"):
        make_optimizer("adamw", params, betas=0.9)
    with pytest.raises(GraphcError, match=r"`beta2` of `adam` must be a number in \[0, 1\), got 1.5"):
        make_optimizer("adam", params, betas=[0.9, 1.5])
    opt = make_optimizer("sgd", params)
    with pytest.raises(GraphcError, match="unknown parameter"):
        opt.step({"nope": np.zeros(3)})
    with pytest.raises(GraphcError, match="shape"):
        opt.step({"c1.bias": np.zeros(5)})
    with pytest.raises(GraphcError, match="float"):
        make_optimizer("sgd", {"w": np.zeros(3, np.int64)})


def test_optimizer_table():
    assert set(OPTIMIZERS) == {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"}
    assert OPTIMIZERS["adamw"][1].defaults == {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                                               "weight_decay": 1e-2, "amsgrad": False}   # torch's AdamW
    assert OPTIMIZERS["momentum"][1].defaults["momentum"] == 0.9
    assert OPTIMIZERS["nesterov"][1].defaults["nesterov"] is True
    for name, (cls, signature) in OPTIMIZERS.items():
        assert signature.name == name and signature.keywords[0].name == "lr"
        assert not hasattr(cls, "defaults"), "one defaults table per optimizer: its signature"


def test_sgd_default_lr_is_one_number():
    # Regression: the train section's default optimizer said lr 0.01, OPTIMIZERS said 1e-3.
    params = initial_params()
    assert make_optimizer("sgd", params).lr == 0.01
    assert OPTIMIZERS["sgd"][1].defaults["lr"] == 0.01


SCHEDULE_CASES = [
    ("constant", 12, {}),
    ("step", 12, {"step_size": 3}),
    ("step", 12, {"step_size": 4, "gamma": 0.5}),
    ("exponential", 15, {"gamma": 0.9}),
    ("cosine", 10, {}),
    ("cosine", 20, {"t_max": 6, "eta_min": 0.001}),
]


@pytest.mark.parametrize("name,epochs,kwargs", SCHEDULE_CASES)
def test_schedules_match_torch(name, epochs, kwargs):
    torch = pytest.importorskip("torch")
    base = 0.1
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    sched = {
        "constant": lambda: torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0),
        "step": lambda: torch.optim.lr_scheduler.StepLR(opt, **kwargs),
        "exponential": lambda: torch.optim.lr_scheduler.ExponentialLR(opt, **kwargs),
        "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=kwargs.get("t_max", epochs), eta_min=kwargs.get("eta_min", 0.0)),
    }[name]()
    expected = []
    for _ in range(epochs):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    schedule = make_schedule(name, base, epochs, **kwargs)
    got = [schedule(e) for e in range(epochs)]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


def test_schedule_errors():
    with pytest.raises(GraphcError, match="did you mean `cosine`"):
        make_schedule("cosin", 0.1, 10)
    with pytest.raises(GraphcError, match="step_size"):
        make_schedule("step", 0.1, 10)
    with pytest.raises(GraphcError, match="did you mean `gamma`"):
        make_schedule("exponential", 0.1, 10, gama=0.9)
    with pytest.raises(GraphcError, match="step_size"):
        make_schedule("step", 0.1, 10, step_size=0)
    with pytest.raises(GraphcError, match="t_max"):
        make_schedule("cosine", 0.1, 0)
    with pytest.raises(GraphcError, match="`gamma` of `exponential` must be a number >= 0, got `fast`"):
        make_schedule("exponential", 0.1, 10, gamma="fast")
    assert set(SCHEDULES) == {"constant", "step", "exponential", "cosine"}
    with pytest.raises(GraphcError, match=r"`warmup_factor` of `cosine` must be a number in \(0, 1\]"):
        make_schedule("cosine", 0.1, 10, warmup=2, warmup_factor=0)
    with pytest.raises(GraphcError, match="`warmup` of `step` must be a whole number of epochs >= 0"):
        make_schedule("step", 0.1, 10, step_size=2, warmup=-1)


WARMUP_CASES = [
    ("constant", 8, {"warmup": 3}),
    ("cosine", 12, {"warmup": 3}),
    ("cosine", 12, {"warmup": 2, "warmup_factor": 0.1, "T_max": 5, "eta_min": 0.01}),   # torch's T_max spelling
    ("step", 10, {"warmup": 1, "warmup_factor": 0.5, "step_size": 2, "gamma": 0.5}),
    ("exponential", 9, {"warmup": 4, "gamma": 0.8}),
]


@pytest.mark.parametrize("name,epochs,kwargs", WARMUP_CASES)
def test_warmup_matches_torch_linear_lr_then_sequential_lr(name, epochs, kwargs):
    """warmup=W is torch's SequentialLR([LinearLR(start_factor, total_iters=W), schedule], milestones=[W]),
    stepped once per epoch; cosine's t_max defaults to the epochs after the warm-up."""
    torch = pytest.importorskip("torch")
    base, warmup = 0.1, kwargs["warmup"]
    rest = {k: v for k, v in kwargs.items() if not k.startswith("warmup")}
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    scheduler = torch.optim.lr_scheduler
    after = {
        "constant": lambda: scheduler.ConstantLR(opt, factor=1.0),
        "step": lambda: scheduler.StepLR(opt, **rest),
        "exponential": lambda: scheduler.ExponentialLR(opt, **rest),
        "cosine": lambda: scheduler.CosineAnnealingLR(opt, T_max=rest.get("T_max", epochs - warmup),
                                                      eta_min=rest.get("eta_min", 0.0)),
    }[name]
    warm = scheduler.LinearLR(opt, start_factor=kwargs.get("warmup_factor", 1 / 3), total_iters=warmup)
    sched = scheduler.SequentialLR(opt, [warm, after()], milestones=[warmup])
    expected = []
    for _ in range(epochs):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    schedule = make_schedule(name, base, epochs, **kwargs)
    np.testing.assert_allclose([schedule(e) for e in range(epochs)], expected, rtol=1e-12, atol=1e-15)


def test_warmup_longer_than_the_run_only_warms_up():
    schedule = make_schedule("cosine", 0.3, 2, warmup=4, warmup_factor=0.2)
    np.testing.assert_allclose([schedule(0), schedule(1)], [0.06, 0.12])


def test_adamw_decays_only_the_named_parameters():
    params = initial_params()
    before = {n: p.copy() for n, p in params.items()}
    opt = make_optimizer("adamw", params, lr=0.1, weight_decay=0.5, decayed=["fc.weight"])
    zero = {n: np.zeros(s) for n, s in SHAPES.items()}
    opt.step(zero)     # a zero gradient: Adam's step is 0, only the decay moves a parameter
    np.testing.assert_allclose(params["fc.weight"], before["fc.weight"] * (1 - 0.1 * 0.5))
    np.testing.assert_array_equal(params["c1.weight"], before["c1.weight"])
    np.testing.assert_array_equal(params["c1.bias"], before["c1.bias"])
