"""The op registry: the single place that knows an op.

Input: `OpDef` records registered by the family modules (gates, reduce, shape,
layers, activations, norm, losses, regularize). Output: `lookup(name)` and
`all_ops()` for every later stage. One `OpDef` holds an op's signature, shape
rule, parameters, running state, forward kernel, backward rule (VJP), FLOP
count, documentation and gradcheck samples. Adding an op means writing one
OpDef; `build`, `infer`, `plan`, `execute`, `check`, `viz` and the
parametrized tests all find it here. Entries are validated at import.

Kernel contract (read this before writing an op):
- `shape_rule(in_types, attrs) -> TensorType` is the only code that decides an
  output shape. It raises `ShapeError(message, help, arg)`.
- `forward(ctx, *args)` receives the input arrays then the parameter arrays
  (in `params` order). Batched inputs have the batch as their leading axis.
  It writes its result into the planned buffer `ctx.out` and returns it —
  except ops with `aliases=True`, which return a view of their first input.
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

from graphc.tensor_type import TensorType

REQUIRED = object()

# Attribute kinds the language can pass to an op.
ATTR_KINDS = ("int", "float", "bool", "str", "pair", "ints", "axis", "number")


@dataclass(frozen=True)
class Attr:
    """A keyword (or trailing positional) argument of an op that is not a tensor."""

    name: str
    kind: str                      # one of ATTR_KINDS
    default: Any = REQUIRED
    doc: str = ""
    choices: tuple = ()            # for kind "str"
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
    init: str = "he"               # default initialiser (see graphc.init)
    init_args: tuple = ()          # keyword arguments of the initialiser, as (name, value) pairs
    layout: str = "other"          # how fans are computed: "linear" [in,out], "conv" [out,in,kh,kw], "other"
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
class OpDef:
    """Everything graphc knows about one op."""

    name: str
    family: str                     # gate, reduce, shape, layer, activation, norm, loss, regularize
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
    variadic: bool = False          # the last input may repeat (concat)
    saves: str = "inputs"           # what backward reads: none, inputs, output, both
    aliases: bool = False           # forward returns a view of its first input (reshape)
    inplace: bool = False           # forward may write over its first input (the plan decides when)
    domain: str = "normal"          # gradcheck input values: normal, positive, unit, distinct
    aliases_op: tuple[str, ...] = ()  # other names the language accepts (affine -> linear)
    expansion: str | None = None    # the op written with gates, for the fused-vs-gates test

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
    """Per-step context handed to forward and backward."""

    __slots__ = ("attrs", "in_types", "out_type", "train", "saved", "state", "rng", "needs",
                 "out", "batch")

    def __init__(self, attrs: dict, in_types: list[TensorType], out_type: TensorType,
                 *, train: bool = False, state: dict | None = None, rng=None,
                 needs: tuple[bool, ...] = (), out=None, batch: int = 1):
        self.attrs = attrs
        self.in_types = in_types
        self.out_type = out_type
        self.train = train
        self.saved: dict = {}
        self.state = state if state is not None else {}
        self.rng = rng
        self.needs = needs
        self.out = out
        self.batch = batch


class AttrError(ValueError):
    """A bad attribute value: which attribute and what is wrong."""

    def __init__(self, name: str, message: str, help: str | None = None):
        super().__init__(message)
        self.name = name
        self.message = message
        self.help = help


def resolve_attrs(op: OpDef, given: dict) -> dict:
    """Return every attribute of `op` with defaults filled in and values normalised.

    `pair` becomes a 2-tuple, `ints` a tuple, `bool` a bool. Raises AttrError
    for an unknown or missing attribute or a value of the wrong kind.
    """
    if given:
        for name in given:
            if op.attr(name) is None:
                raise AttrError(name, f"`{op.name}` has no argument `{name}`")
    resolved = {}
    for a in op.attrs:
        if a.name in given:
            resolved[a.name] = _normalise(op, a, given[a.name])
        elif a.default is REQUIRED:
            raise AttrError(a.name, f"`{op.name}` needs the argument `{a.name}`")
        else:
            resolved[a.name] = a.default if a.default is None else _normalise(op, a, a.default)
    return resolved


def _bad(op: OpDef, a: Attr, value, expected: str) -> AttrError:
    return AttrError(a.name, f"`{a.name}` of `{op.name}` must be {expected}, got {value!r}")


def _number(op: OpDef, a: Attr, value, v, integer: bool):
    """Return `v` (an item of `value`) as an int or float, checked against the attribute's minimum."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _bad(op, a, value, "an integer" if integer else "a number")
    if integer and not (isinstance(v, int) or float(v).is_integer()):
        raise _bad(op, a, value, "an integer")
    v = int(v) if integer else float(v)
    if a.minimum is not None and v < a.minimum:
        raise AttrError(a.name, f"`{a.name}` of `{op.name}` must be at least {a.minimum:g}, got {v}")
    return v


def _normalise(op: OpDef, a: Attr, value):
    kind = a.kind
    if kind == "int":
        return _number(op, a, value, value, True)
    if kind == "float":
        return _number(op, a, value, value, False)
    if kind == "number":
        return value if isinstance(value, int) and not isinstance(value, bool) else _number(op, a, value, value, False)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise _bad(op, a, value, "true or false")
    if kind == "str":
        if not isinstance(value, str):
            raise _bad(op, a, value, "a name")
        if a.choices and value not in a.choices:
            raise AttrError(a.name, f"`{a.name}` of `{op.name}` must be one of "
                            + ", ".join(a.choices) + f"; got `{value}`")
        return value
    if kind == "pair":
        items = list(value) if isinstance(value, (list, tuple)) else [value, value]
        if len(items) != 2:
            raise _bad(op, a, value, "one integer or a list of two")
        return tuple(_number(op, a, value, v, True) for v in items)
    if kind == "ints":
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, bool) or not isinstance(v, int) for v in items):
            raise _bad(op, a, value, "a list of integers")
        return tuple(items)
    if kind == "axis":
        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            if any(isinstance(v, bool) or not isinstance(v, int) for v in value):
                raise _bad(op, a, value, "an integer or a list of integers")
            return tuple(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(op, a, value, "an integer or a list of integers")
        return value
    raise _bad(op, a, value, kind)


_REGISTRY: dict[str, OpDef] = {}
_ALIASES: dict[str, str] = {}


def register(op: OpDef) -> OpDef:
    """Validate an OpDef, add it to the registry and return it."""
    problems = _validate(op)
    if problems:
        raise TypeError(f"op {op.name!r} is not a complete registry entry: " + "; ".join(problems))
    for name in (op.name, *op.aliases_op):
        if name in _REGISTRY or name in _ALIASES:
            raise TypeError(f"op name {name!r} registered twice")
    _REGISTRY[op.name] = op
    for alias in op.aliases_op:
        _ALIASES[alias] = op.name
    return op


def lookup(name: str) -> OpDef | None:
    """Return the OpDef called `name` (or one of its aliases), or None."""
    op = _REGISTRY.get(name)
    if op is None and name in _ALIASES:
        op = _REGISTRY[_ALIASES[name]]
    return op


def all_ops() -> list[OpDef]:
    """Return every registered op, sorted by family then name."""
    return sorted(_REGISTRY.values(), key=lambda op: (op.family, op.name))


def all_names() -> list[str]:
    """Return every name the language accepts for an op, aliases included."""
    return sorted([*_REGISTRY, *_ALIASES])


def _validate(op: OpDef) -> list[str]:
    problems = []
    for field_name in ("shape_rule", "forward", "backward", "flops"):
        if not callable(getattr(op, field_name)):
            problems.append(f"{field_name} is not callable")
    if not op.doc.strip():
        problems.append("doc is empty")
    if not op.grad_rule.strip():
        problems.append("grad_rule is empty")
    if not op.samples:
        problems.append("no gradcheck samples")
    if op.saves not in ("none", "inputs", "output", "both"):
        problems.append(f"saves={op.saves!r}")
    names = [*op.inputs, *(a.name for a in op.attrs)]
    if len(set(names)) != len(names):
        problems.append("input/attribute names repeat")
    for a in op.attrs:
        if a.kind not in ATTR_KINDS:
            problems.append(f"attribute {a.name} has unknown kind {a.kind!r}")
    unknown = set(op.nondiff) - set(op.inputs)
    if unknown:
        problems.append(f"nondiff names unknown inputs {sorted(unknown)}")
    return problems


# Importing the family modules fills the registry.
from graphc.ops import activations, gates, layers, losses, norm, reduce, regularize, shape  # noqa: E402,F401
