"""The ops and settings of issue 10: global pooling, slice, pad, adamw and warm-up from a train
section, `--set` of one optimizer keyword, and the friction fixes (tuples, `fashion-mnist`).

Registry samples of the new ops are gradchecked by test_ops.py and compared with PyTorch by
test_torch.py; here: what the samples do not reach (ties, index rules, errors with spans) and
the ops inside a compiled model."""
from __future__ import annotations

import re

import numpy as np
import pytest
from op_harness import run_op

import graphc
from graphc.diagnostics import GraphcError
from graphc.program import check_source
from graphc.tensor_type import ShapeError, TensorType
from graphc.training.config import train_config

IMAGE = TensorType((2, 3, 3))


# ---- global pooling ------------------------------------------------------------------

def test_global_maxpool_ties_route_to_the_first_maximum_like_torch():
    torch = pytest.importorskip("torch")
    x = np.zeros((2, 2, 3, 3))
    x[0, 0] = 5.0                                   # every value ties: the first (0, 0) gets it all
    x[0, 1, 1, 2] = x[0, 1, 2, 0] = 3.0              # two maxima: the earlier in row-major order
    x[1, 0, 2, 2] = x[1, 0, 0, 1] = 1.0
    x[1, 1] = np.arange(9.0).reshape(3, 3)
    grad_out = np.array([[1.0, 2.0], [3.0, 4.0]])
    out, (dx,), _ = run_op("global_maxpool", [x], [IMAGE], grad_out=grad_out)
    expected = np.zeros_like(x)
    expected[0, 0, 0, 0], expected[0, 1, 1, 2], expected[1, 0, 0, 1], expected[1, 1, 2, 2] = 1, 2, 3, 4
    np.testing.assert_array_equal(dx, expected)
    t = torch.tensor(x, requires_grad=True)
    ref = torch.nn.functional.adaptive_max_pool2d(t, 1).flatten(1)
    ref.backward(torch.tensor(grad_out))
    np.testing.assert_array_equal(out, ref.detach().numpy())
    np.testing.assert_array_equal(dx, t.grad.numpy())


def test_global_pools_drop_the_spatial_axes():
    x = np.arange(2 * 18.0).reshape(2, 2, 3, 3)
    mean, (dx,), _ = run_op("global_avgpool", [x], [IMAGE], grad_out=np.ones((2, 2)))
    np.testing.assert_allclose(mean, x.mean(axis=(2, 3)))
    np.testing.assert_allclose(dx, np.full(x.shape, 1 / 9))
    biggest, _, _ = run_op("global_maxpool", [x], [IMAGE])
    np.testing.assert_array_equal(biggest, x.max(axis=(2, 3)))
    with pytest.raises(ShapeError, match=r"expects a per-sample shape \[channels, height, width\]"):
        run_op("global_avgpool", [np.zeros((2, 4))], [TensorType((4,))])


# ---- slice and pad -------------------------------------------------------------------

@pytest.mark.parametrize("attrs,index", [
    ({"axis": 0, "start": 1, "end": 3}, np.s_[:, 1:3]),
    ({"axis": 0, "start": -2}, np.s_[:, -2:]),
    ({"axis": -1, "start": 0, "end": -1}, np.s_[:, :, :-1]),
    ({"axis": 1, "start": 2, "end": 3}, np.s_[:, :, 2:3]),
    ({"axis": 1, "start": -3, "end": 3}, np.s_[:, :, 0:3]),
])
def test_slice_follows_python_indexing_on_the_per_sample_axes(attrs, index):
    x = np.random.default_rng(0).standard_normal((2, 4, 3))
    out, (dx,), _ = run_op("slice", [x], [TensorType((4, 3))], attrs, grad_out=np.ones_like(x[index]))
    np.testing.assert_array_equal(out, x[index])
    expected = np.zeros_like(x)
    expected[index] = 1
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("attrs,says", [
    ({"axis": 2, "start": 0}, "axis 2 is out of range for per-sample shape [4, 3]"),
    ({"axis": 0, "start": 5}, "slice start 5 is outside axis 0 of size 4"),
    ({"axis": 0, "start": 0, "end": -5}, "slice end -5 is outside axis 0 of size 4"),
    ({"axis": 0, "start": 2, "end": 2}, "is empty"),
    ({"axis": 1, "start": -1, "end": 1}, "is empty"),
])
def test_slice_out_of_range_or_empty_is_an_error(attrs, says):
    with pytest.raises(ShapeError, match=re.escape(says)):
        run_op("slice", [np.zeros((2, 4, 3))], [TensorType((4, 3))], attrs)


def test_pad_order_is_torchs_last_axis_first():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).standard_normal((2, 2, 3, 4))
    pads = [1, 2, 0, 3]                    # last axis: 1 left, 2 right; the one before: 0 top, 3 bottom
    out, (dx,), _ = run_op("pad", [x], [TensorType((2, 3, 4))], {"pads": pads, "value": -1.5},
                           grad_out=np.ones((2, 2, 6, 7)))
    assert out.shape == (2, 2, 6, 7)
    np.testing.assert_array_equal(out, torch.nn.functional.pad(torch.tensor(x), pads, value=-1.5).numpy())
    np.testing.assert_array_equal(out[:, :, 0:3, 1:5], x)
    assert np.all(out[:, :, 3:, :] == -1.5) and np.all(out[:, :, :, 0] == -1.5)
    np.testing.assert_array_equal(dx, np.ones_like(x))


@pytest.mark.parametrize("pads,says", [
    ([1], "pad needs pairs (before, after), got 1 number"),
    ([1, 1, 1, 1, 1, 1, 1, 1], "pad gives 4 pairs for a per-sample shape [2, 3, 4] with 3 axes"),
    ([1, -1], "pad widths must be >= 0"),
])
def test_pad_errors(pads, says):
    with pytest.raises(ShapeError, match=re.escape(says)):
        run_op("pad", [np.zeros((1, 2, 3, 4))], [TensorType((2, 3, 4))], {"pads": pads})


NET = """\
model net {
  input image: [1, 6, 6]
  label digit: class[3]
  p = pad(image, [1, 1, 1, 1])
  c = conv(p, 4, kernel=3) -> relu
  g = global_avgpool(c)
  m = global_maxpool(c)
  h = concat(g, m)
  first = slice(h, 0, 0, 3)
  loss = cross_entropy(first, digit)
  output probs = softmax(first)
}
train {
  optimizer = adamw(lr=0.01, betas=[0.8, 0.99])
  schedule = cosine(warmup=1)
  epochs = 3
  batch = 4
}
"""


def test_new_ops_compile_and_gradcheck_in_a_model():
    graph = check_source(NET, "net.nn")
    shapes = {name: graph.type_of(name).shape for name in ("p", "g", "m", "h", "first")}
    assert shapes == {"p": (1, 8, 8), "g": (4,), "m": (4,), "h": (8,), "first": (3,)}
    program = graphc.compile_source(NET, "net.nn", dtype="float64")
    rng = np.random.default_rng(0)
    feeds = {"image": rng.standard_normal((5, 1, 6, 6)), "digit": rng.integers(0, 3, 5)}
    grads = program.gradients(feeds)
    name = next(n for n in program.params if n.endswith("weight"))
    w = program.params[name]
    k = (0, 0, 1, 1)
    old = w[k]
    losses = []
    for delta in (1e-6, -1e-6):
        w[k] = old + delta
        losses.append(program.loss_value(program.run(feeds, train=True)))
    w[k] = old
    assert abs(grads[name][k] - (losses[0] - losses[1]) / 2e-6) < 1e-6


def test_adamw_betas_and_warmup_train_from_the_train_section(tmp_path):
    program = graphc.compile_source(NET, "net.nn")
    cfg = train_config(program.graph, data="digits")
    assert cfg.optimizer == ("adamw", {"lr": 0.01, "beta1": 0.8, "beta2": 0.99})
    assert cfg.schedule == ("cosine", {"warmup": 1})
    rng = np.random.default_rng(0)
    data = {"image": rng.standard_normal((16, 1, 6, 6)).astype(np.float32), "digit": rng.integers(0, 3, 16)}
    result = program.fit(data, out=tmp_path)
    lrs = [record["lr"] for record in result.history]
    # warmup=1: epoch 0 at lr/3, then cosine over the 2 remaining epochs (torch's SequentialLR).
    np.testing.assert_allclose(lrs, [0.01 / 3, 0.01, 0.005], rtol=1e-6)


# ---- --set of one optimizer keyword --------------------------------------------------

SGD_MODEL = NET.replace("optimizer = adamw(lr=0.01, betas=[0.8, 0.99])", "optimizer = sgd(lr=0.1, momentum=0.9)")


@pytest.mark.parametrize("overrides,optimizer", [
    (["lr=0.5"], ("sgd", {"lr": 0.5, "momentum": 0.9})),
    (["momentum=0.5"], ("sgd", {"lr": 0.1, "momentum": 0.5})),
    (["optimizer.lr=0.2"], ("sgd", {"lr": 0.2, "momentum": 0.9})),
    (["optimizer=adam", "lr=0.003"], ("adam", {"lr": 0.003})),
    (["optimizer=adam", "betas=[0.8, 0.9]"], ("adam", {"beta1": 0.8, "beta2": 0.9})),
    (["optimizer=adam(betas=[0.8, 0.9])", "beta2=0.95"], ("adam", {"beta1": 0.8, "beta2": 0.95})),
    (["lr=0.05 * 2"], ("sgd", {"lr": 0.1, "momentum": 0.9})),
])
def test_set_overrides_one_keyword_of_the_optimizer(overrides, optimizer):
    cfg = train_config(check_source(SGD_MODEL, "m.nn"), overrides, data="digits")
    assert (cfg.optimizer[0], dict(cfg.optimizer[1])) == (optimizer[0], optimizer[1])


@pytest.mark.parametrize("overrides,says,helps", [
    (["epoch=3"], "`epoch` is neither a train setting nor a keyword of `sgd`", "did you mean `epochs`?"),
    (["optimizer=adam", "momentum=0.9"], "`momentum` is neither a train setting nor a keyword of `adam`",
     "`adam` takes lr, beta1, beta2, eps, amsgrad"),
    (["lr=-1"], "`lr` of `sgd` must be a number >= 0, got -1", "e.g. lr=0.01"),
    (["momentum=0.9", "nesterov=true", "dampening=0.5"], "Nesterov momentum needs", "dampening=0"),
])
def test_set_of_a_bad_keyword_says_what_is_wrong(overrides, says, helps):
    with pytest.raises(GraphcError) as error:
        train_config(check_source(SGD_MODEL, "m.nn"), overrides, data="digits")
    text = str(error.value)
    assert says in text and helps in text


# ---- friction: tuples and hyphenated dataset names -----------------------------------

def test_a_tuple_gets_a_help_to_write_a_list():
    source = "model m {\n  input x: [1, 8, 8]\n  y = conv(x, 2, kernel=(3, 5))\n  output z = flatten(y)\n}\n"
    with pytest.raises(GraphcError) as error:
        check_source(source, "m.nn")
    (d,) = error.value.diagnostics
    assert d.message == "`(3, 5)` is a tuple; the language has lists, not tuples"
    assert d.help == "write a list: `[3, 5]`"
    assert (d.span.line, d.span.col) == (3, 25) and d.span.text == "(3, 5)"


@pytest.mark.parametrize("written,line", [("fashion-mnist", "data = fashion-mnist"),
                                          ("my-own-set", "data = my-own-set")])
def test_a_hyphenated_dataset_name_says_how_to_write_it(written, line):
    source = NET.replace("  epochs = 3", f"  {line}\n  epochs = 3")
    with pytest.raises(GraphcError) as error:
        check_source(source, "m.nn")
    (d,) = error.value.diagnostics
    assert d.message == f"`{written}` reads as a subtraction of names"
    assert d.help == f"write `{written.replace('-', '_')}` or \"{written}\""
    assert d.span.text == written


def test_fashion_mnist_is_an_identifier():
    for spelling in ("fashion_mnist", '"fashion-mnist"'):
        graph = check_source(NET.replace("  epochs = 3", f"  data = {spelling}\n  epochs = 3"), "m.nn")
        assert train_config(graph).data == spelling.strip('"')


def test_split_is_not_an_op_and_the_help_says_how_to_write_it():
    source = "model m {\n  input x: [6]\n  a = split(x, 0, [3, 3])\n  output y = a\n}\n"
    with pytest.raises(GraphcError) as error:
        check_source(source, "m.nn")
    d = error.value.diagnostics[0]
    assert d.message == "unknown op `split`" and (d.span.line, d.span.col) == (3, 7)
    assert d.help == "a split is several slices: a = slice(x, 0, 0, 3) and b = slice(x, 0, 3)"
    parts = check_source("model m {\n  input x: [6]\n  output a = slice(x, 0, 0, 3)\n"
                         "  output b = slice(x, 0, 3)\n}\n", "m.nn")
    assert parts.type_of("a").shape == parts.type_of("b").shape == (3,)
