"""The op registry: the single place that knows an op.

Input: `OpDef` records registered by the family modules (gates, reduce, shape,
layers, pooling, activations, norm, losses, regularize). Output: `lookup(name)`
(raises on an unknown name), `find(name)` (None on an unknown name, for the
builder, which reports it with a span) and `all_ops()` for every later stage.
One `OpDef` holds an op's signature, shape rule, parameters, running state,
forward kernel, backward rule (VJP), FLOP count, documentation and gradcheck
samples. Adding an op means writing one OpDef; `build`, `infer`, `plan`,
`execute`, `check`, `viz` and the parametrized tests all find it here. Every
entry is validated when it is registered, i.e. at import: its callables, its
string fields (family, domain, saves, attribute kinds, parameter layouts and
initialisers) and its names.

Kernel contract (read this before writing an op):
- `shape_rule(in_types, attrs) -> TensorType` is the only code that decides an
  output shape. It raises `ShapeError(message, help, arg)`.
- `warn_rule(in_types, attrs, out_type) -> list[OpWarning]` (optional): what is
  legal but probably not meant for these types (a conv whose rounding leaves
  input rows unread). infer reports each as a `warning:` at the call's span.
- `resolve(attrs) -> dict` (optional): attributes that depend on each other,
  after defaults (`pad=same` becomes numbers from the kernel). It raises
  `AttrError(name, message, help)`; every later stage sees only its result.
- `forward(ctx, *args)` receives the input arrays then the parameter arrays
  (in `params` order). Batched inputs have the batch as their leading axis.
  It writes its result into the planned buffer `ctx.out` and returns it —
  except ops with `returns_view=True`, which return a view of their first input.
  It may stash *derived* arrays in `ctx.saved` (a dict, one per step), never
  references to its arguments or its output: the plan reuses those buffers.
- `backward(ctx, grad_out, args, out) -> list` returns one gradient per
  input and parameter (same shape as the argument at run time), or None where
  `ctx.needs[i]` is False or the input is not differentiable. It never
  modifies grad_out or its arguments; it may return grad_out itself (the
  executor never accumulates into an array it did not allocate).
  `args` and `out` hold the forward arguments and result only when `saves`
  says backward reads them ("inputs", "output", "both"); otherwise None.
- `flops(in_types, out_type, attrs) -> int`: forward FLOPs per sample (a
  multiply-add counts 2).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from graphc.ops.init import INITIALISERS, check_initialiser
from graphc.signature import REQUIRED, SignatureError  # REQUIRED: one "no default" marker everywhere
from graphc.tensor_type import TensorType

# Attribute kinds the language can pass to an op.
ATTR_KINDS = ("int", "float", "bool", "str", "pair", "ints", "axis", "number")
# Op families: the viz colours one per family (tests check the colour table covers these).
FAMILIES = ("gate", "reduce", "shape", "layer", "activation", "norm", "loss", "regularize")
# Gradcheck input values (see tests/op_harness.draw).
DOMAINS = ("normal", "positive", "unit", "distinct")
# How a parameter's fans are computed (see ops/init.fans).
LAYOUTS = ("linear", "conv", "other")
# What backward reads.
SAVES = ("none", "inputs", "output", "both")


@dataclass(frozen=True)
class Attr:
    """A keyword (or trailing positional) argument of an op that is not a tensor."""

    name: str
    kind: str                      # one of ATTR_KINDS
    default: Any = REQUIRED
    doc: str = ""
    choices: tuple = ()            # for kind "str"; for "pair", names accepted besides numbers (`same`)
    minimum: float | None = None   # for kinds "int", "float", "pair"

    @property
    def required(self) -> bool:
        """True when a call must give this argument."""
        return self.default is REQUIRED


@dataclass(frozen=True)
class ParamSpec:
    """A learnable tensor an op creates, named `<node>.<role>`."""

    role: str
    shape: Callable[[list[TensorType], dict], tuple[int, ...]]
    init: str = "he"               # default initialiser: a key of ops/init.INITIALISERS
    init_args: tuple = ()          # keyword arguments of the initialiser, as (name, value) pairs
    layout: str = "other"          # one of LAYOUTS: "linear" [in,out], "conv" [out,in,kh,kw], "other"
    decay: bool = True             # weight decay / L1 apply unless the user says otherwise
    follows_default: bool = True   # the train section's `init` overrides `init` (weights yes, biases no)
    enabled: Callable[[dict], bool] | None = None   # e.g. bias=false turns the bias off


@dataclass(frozen=True)
class StateSpec:
    """Non-learnable running state (batchnorm's statistics), saved with the weights."""

    role: str
    shape: Callable[[list[TensorType], dict], tuple[int, ...]]
    fill: float = 0.0


@dataclass(frozen=True)
class Sample:
    """One gradcheck configuration: per-sample input shapes and attributes.

    `classes` maps input index -> K for class-index inputs; `batched` gives,
    per input, whether it carries the batch dimension (default: all do).
    """

    shapes: tuple[tuple[int, ...], ...]
    attrs: dict = field(default_factory=dict)
    classes: dict = field(default_factory=dict)
    batched: tuple[bool, ...] | None = None


@dataclass(frozen=True)
class OpWarning:
    """A warning a `warn_rule` returns: what, how to fix it, and which argument it is about
    (an input index or attribute name; None: the whole call)."""

    message: str
    help: str | None = None
    arg: int | str | None = None


@dataclass(frozen=True)
class OpDef:
    """Everything graphc knows about one op."""

    name: str
    family: str                     # one of FAMILIES
    inputs: tuple[str, ...]         # tensor inputs, in order
    shape_rule: Callable[[list[TensorType], dict], TensorType]
    forward: Callable
    backward: Callable
    flops: Callable[[list[TensorType], TensorType, dict], int]
    grad_rule: str                  # how the gradient is formed, e.g. "mul: swap" (shown by compile/viz)
    doc: str                        # which definition it follows (PyTorch's), its tie rule
    samples: tuple[Sample, ...]     # gradcheck configurations, used by the registry tests
    attrs: tuple[Attr, ...] = ()
    params: tuple[ParamSpec, ...] = ()
    state: tuple[StateSpec, ...] = ()
    nondiff: frozenset = frozenset()   # names of inputs that get no gradient (labels)
    zero_grad: frozenset = frozenset()  # names of inputs whose gradient is zero everywhere (step): lint warns
    variadic: bool = False          # the last input may repeat (concat)
    saves: str = "inputs"           # one of SAVES: what backward reads
    returns_view: bool = False      # forward returns a view of its first input (reshape)
    inplace: bool = False           # forward may write over its first input (the plan decides when)
    domain: str = "normal"          # one of DOMAINS: gradcheck input values
    other_names: tuple[str, ...] = ()  # other names the language accepts (affine -> linear)
    expansion: str | None = None    # the op written with gates, for the fused-vs-gates test
    shape_doc: str = ""             # the shape rule in words, for `graphc ops NAME`: "[C, H, W] -> [C]"
    warn_rule: Callable[[list[TensorType], dict, TensorType], list[OpWarning]] | None = None  # see the contract
    resolve: Callable[[dict], dict] | None = None   # attributes that depend on each other (see the contract)

    def attr(self, name: str) -> Attr | None:
        """Return the attribute called `name`, or None."""
        for a in self.attrs:
            if a.name == name:
                return a
        return None

    def active_params(self, attrs: dict) -> tuple[ParamSpec, ...]:
        """Return the parameters this op creates for the given attributes."""
        return tuple(p for p in self.params if p.enabled is None or p.enabled(attrs))


class Ctx:
    """Per-step context handed to forward and backward.

    There is no batch size here: a kernel reads it from its arrays' leading axis
    (an unbatched input counts as one sample), so it cannot disagree with them.
    """

    __slots__ = ("attrs", "in_types", "out_type", "train", "saved", "state", "rng", "needs", "out")

    def __init__(self, attrs: dict, in_types: list[TensorType], out_type: TensorType,
                 *, train: bool = False, state: dict | None = None, rng=None,
                 needs: tuple[bool, ...] = (), out=None):
        self.attrs = attrs
        self.in_types = in_types
        self.out_type = out_type
        self.train = train
        self.saved: dict = {}
        self.state = state if state is not None else {}
        self.rng = rng
        self.needs = needs
        self.out = out


_REGISTRY: dict[str, OpDef] = {}
_OTHER_NAMES: dict[str, str] = {}


def register(op: OpDef) -> OpDef:
    """Validate an OpDef, add it to the registry and return it (raises TypeError when incomplete)."""
    problems = _validate(op)
    if problems:
        raise TypeError(f"op {op.name!r} is not a complete registry entry: " + "; ".join(problems))
    for name in (op.name, *op.other_names):
        if name in _REGISTRY or name in _OTHER_NAMES:
            raise TypeError(f"op name {name!r} registered twice")
    _REGISTRY[op.name] = op
    for other in op.other_names:
        _OTHER_NAMES[other] = op.name
    return op


def find(name: str) -> OpDef | None:
    """Return the OpDef called `name` (or one of its other names), or None when there is none.

    Only the builder asks about names that may not be ops (it reports them with a span);
    every later stage uses `lookup`.
    """
    op = _REGISTRY.get(name)
    if op is None and name in _OTHER_NAMES:
        op = _REGISTRY[_OTHER_NAMES[name]]
    return op


# Names people look for that the language writes another way: name -> how (a help line).
WRITTEN_OTHERWISE = {
    "split": "a split is several slices: a = slice(x, 0, 0, 3) and b = slice(x, 0, 3)",
    "cat": "it is called `concat`",
    "narrow": "it is called `slice`: slice(x, axis, start, end)",
    "adaptive_avg_pool2d": "global_avgpool(x) is adaptive_avg_pool2d(x, 1).flatten(1)",
    "adaptive_max_pool2d": "global_maxpool(x) is adaptive_max_pool2d(x, 1).flatten(1)",
}


def lookup(name: str) -> OpDef:
    """Return the OpDef called `name` (or one of its other names); raise KeyError for an unknown op."""
    op = find(name)
    if op is None:
        raise KeyError(f"no op called {name!r} is registered (known: {', '.join(all_names())})")
    return op


def all_ops() -> list[OpDef]:
    """Return every registered op, sorted by family then name."""
    return sorted(_REGISTRY.values(), key=lambda op: (op.family, op.name))


def all_names() -> list[str]:
    """Return every name the language accepts for an op, other names included."""
    return sorted([*_REGISTRY, *_OTHER_NAMES])


def _validate(op: OpDef) -> list[str]:
    """Return what is wrong with an OpDef (empty when it is a complete entry)."""
    problems = []
    for field_name in ("shape_rule", "forward", "backward", "flops"):
        if not callable(getattr(op, field_name)):
            problems.append(f"{field_name} is not callable")
    for field_name in ("warn_rule", "resolve"):
        if getattr(op, field_name) is not None and not callable(getattr(op, field_name)):
            problems.append(f"{field_name} is neither None nor callable")
    if not op.doc.strip():
        problems.append("doc is empty")
    if not op.grad_rule.strip():
        problems.append("grad_rule is empty")
    if not op.samples:
        problems.append("no gradcheck samples")
    for what, value, allowed in (("family", op.family, FAMILIES), ("domain", op.domain, DOMAINS),
                                 ("saves", op.saves, SAVES)):
        if value not in allowed:
            problems.append(f"{what}={value!r} is not one of {', '.join(allowed)}")
    names = [*op.inputs, *(a.name for a in op.attrs)]
    if len(set(names)) != len(names):
        problems.append("input/attribute names repeat")
    for a in op.attrs:
        if a.kind not in ATTR_KINDS:
            problems.append(f"attribute {a.name} has unknown kind {a.kind!r}")
    problems += _param_problems(op.params)
    unknown = set(op.nondiff) - set(op.inputs)
    if unknown:
        problems.append(f"nondiff names unknown inputs {sorted(unknown)}")
    unknown = set(op.zero_grad) - set(op.inputs)
    if unknown:
        problems.append(f"zero_grad names unknown inputs {sorted(unknown)}")
    return problems


def _param_problems(params: tuple[ParamSpec, ...]) -> list[str]:
    """Return what is wrong with an op's parameter specs: unknown layouts, initialisers or their keywords."""
    problems = []
    for p in params:
        if p.layout not in LAYOUTS:
            problems.append(f"parameter {p.role} has layout {p.layout!r}, not one of {', '.join(LAYOUTS)}")
        if p.init not in INITIALISERS:
            problems.append(f"parameter {p.role} has initialiser {p.init!r}, not one of {', '.join(INITIALISERS)}")
        else:
            try:
                check_initialiser(p.init, (), dict(p.init_args))
            except SignatureError as e:
                problems.append(f"parameter {p.role}: {e}")
    return problems
