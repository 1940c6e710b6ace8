"""A grammar- and registry-aware `.nn` program generator, and the driver that runs each program.

Not a test: tests/test_fuzz_programs.py (2,000 cases in CI) and bench/fuzz_long.py (the long
run) use it. `generate(seed)` returns a `Case`: a main file and sometimes included files,
built from the grammar's constructs (inputs, labels, params with options, calls, `->` chains,
operators, blocks with parameters, nested blocks, `repeat N`, includes, train sections) and
from the op registry: every call names an op of `graphc.ops.all_ops()` with arguments drawn
from its attributes (kinds, defaults, minimums, choices). The generator asks each op's own
shape rule whether a call fits, so most programs are valid and reach infer, plan and a
forward/backward pass; a share (NEAR_MISS) may carry one deliberate mistake (a wrong shape, a
bad attribute, a bad train setting, a missing include), and a few (HOSTILE) are hostile (huge literals,
deep nesting, big shapes, exponential block doubling, nested repeats, long include chains).

Every construct adds a tag to the case (`op:relu`, `op:relu:unbatched`, `hostile:doubling`,
`include:chain`, ...); `generate(seed, exclude=...)` never makes a case whose tags match a
pattern in `exclude` (fnmatch), so that a known crash class can be set aside by name.

`run_case(case)` is the driver: it writes the files to a temporary folder, checks the main
file in-process, and for a valid program builds the plan and runs one forward and backward
pass in float64 on random feeds of batch 2 (plus an optimizer step and the schedule when the
program has a train section). Its `Outcome` says "ok", "diagnostic" (a GraphcError at check
time, as expected of a near-miss), "late" (check accepted, the run raised a GraphcError),
"crash" (any other exception: a bug) or "slow" (over the limit of CPU seconds, or four times
that in wall-clock time; interrupted by a signal).
"""
from __future__ import annotations

import fnmatch
import random
import signal
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graphc.diagnostics import GraphcError
from graphc.ops import REQUIRED, all_ops, resolve_attrs
from graphc.ops.init import INITIALISERS
from graphc.program import Program, check_file
from graphc.runtime.feeds import random_feeds
from graphc.tensor_type import CLASS, TensorType
from graphc.tools.summary import render_summary
from graphc.training.optim import OPTIMIZER_SIGNATURES, SCHEDULES, make_optimizer, make_schedule

OPS = {op.name: op for op in all_ops()}
SCALAR = TensorType((), batched=False)
BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/", "matmul": "@", "pow": "**"}
DATASETS = ["xor", "spiral", "digits", "mnist", "fashion-mnist", "data.npz", "points.csv"]
FAMILY_WEIGHTS = {"gate": 6, "activation": 6, "layer": 4, "reduce": 3, "shape": 3, "norm": 3, "loss": 2,
                  "regularize": 1}
NEAR_MISS = 0.15     # share of cases with one deliberate mistake
HOSTILE = 0.06       # share of cases with one hostile construct
WALL_FACTOR = 4      # a case may take this many times its CPU limit in wall-clock time
RUN_ELEMENTS = 2_000_000   # a valid program is run only if its tensors hold fewer elements than this


@dataclass
class Var:
    """A name the program can use, with the type the generator believes it has."""

    name: str
    type: TensorType


@dataclass
class Case:
    """One generated program: its files (relative path -> text, the main file first) and its tags."""

    seed: int
    files: dict[str, str]
    tags: set[str] = field(default_factory=set)

    @property
    def main(self) -> str:
        """Return the main file's text."""
        return self.files["main.nn"]

    def show(self) -> str:
        """Return every file of the case, each under a header line, for a failure message."""
        return "\n".join(f"# ---- {path}\n{text}" for path, text in self.files.items())


class Excluded(Exception):
    """The generator was about to make something an excluded tag names; the caller retries."""


class Gen:
    """The state of one program being generated: its names, blocks, files and tags."""

    def __init__(self, seed: int, exclude=()):
        self.r = random.Random(seed)
        self.seed = seed
        self.exclude = tuple(exclude)
        self.tags: set[str] = set()
        self.counter = 0
        self.blocks: list[tuple[str, list[TensorType], dict, TensorType, str]] = []   # name, arg types, kw, out, text
        self.near_miss = self.r.random() < NEAR_MISS
        self.missed = False
        self.block_params: list[tuple[str, int]] = []   # the enclosing block's integer parameters
        self.block_stack: list[str] = []
        self.has_loss = False   # model `m` declares `loss`
        self.model_name = ""

    # ---- helpers -------------------------------------------------------------
    def tag(self, *tags: str) -> None:
        """Add tags; raise Excluded when one matches an excluded pattern."""
        for t in tags:
            if any(fnmatch.fnmatchcase(t, p) for p in self.exclude):
                raise Excluded(t)
        self.tags.update(tags)

    def fresh(self, prefix: str) -> str:
        """Return a new name: the prefix and a number no other name of the program has."""
        self.counter += 1
        return f"{prefix}{self.counter}"

    def miss(self, p: float = 0.3) -> bool:
        """True once per near-miss case, at a random opportunity: make this construct wrong."""
        if self.near_miss and not self.missed and self.r.random() < p:
            self.missed = True
            self.tag("near-miss")
            return True
        return False

    def dim(self) -> int:
        """Return a small dimension."""
        return self.r.choice([1, 2, 2, 3, 3, 4, 4, 5, 6, 8])

    def shape(self, rank: int | None = None) -> tuple[int, ...]:
        """Return a small per-sample shape (often [C, H, W] with H = W, for conv and pooling)."""
        rank = self.r.choice([0, 1, 1, 1, 2, 2, 3]) if rank is None else rank
        if rank == 3 and self.r.random() < 0.7:
            side = self.r.choice([4, 5, 6, 7, 8])
            return (self.r.choice([1, 2, 3]), side, side)
        return tuple(self.dim() for _ in range(rank))

    @staticmethod
    def shape_text(shape) -> str:
        """Return a shape as the language writes it."""
        return "[" + ", ".join(str(d) for d in shape) + "]"

    def number(self, value) -> str:
        """Return a number written in one of the language's spellings."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            if value >= 0 and self.r.random() < 0.1:
                return self.r.choice([hex(value), bin(value), oct(value), f"{value:_}"])
            return str(value)
        return self.r.choice([repr(value), f"{value:g}", f"{value:.3e}"])

    # ---- attributes ----------------------------------------------------------
    def attr_value(self, op, a, in_types):
        """Return a value for attribute `a` of `op` that usually fits the inputs."""
        r, t = self.r, in_types[0] if in_types else SCALAR
        rank = t.rank
        if op.name == "reshape":
            return self.factor(t.size)
        if a.name == "groups":
            channels = t.shape[0] if t.shape else 1
            return r.choice([g for g in range(1, channels + 1) if channels % g == 0])
        if a.kind == "axis":
            if rank == 0 or r.random() < 0.3:
                return None
            if r.random() < 0.3:
                return sorted(r.sample(range(rank), r.randint(1, rank)))
            return r.randrange(-rank, rank)
        if a.name == "axis":
            return r.randrange(-max(rank, 1), max(rank, 1))
        if a.kind == "str":
            return r.choice(a.choices) if a.choices else "x"
        if a.kind == "bool":
            return r.random() < 0.5
        if a.kind == "pair":
            low = int(a.minimum or 0)
            one = lambda: r.randint(low, low + 2)  # noqa: E731
            return one() if r.random() < 0.6 else [one(), one()]
        if a.kind == "ints":
            return [self.dim() for _ in range(r.randint(1, 3))]
        if a.kind == "int":
            low = int(a.minimum) if a.minimum is not None else 0
            return r.randint(low, low + 5)
        low = a.minimum if a.minimum is not None else -2.0
        if a.name in ("p",):
            return round(r.uniform(0, 0.9), 2)
        if a.name == "eps":
            return r.choice([1e-5, 1e-3, 0.1])
        return round(r.uniform(low, low + 3), 3)

    def factor(self, n: int) -> list[int]:
        """Return a random list of whole numbers whose product is n (a reshape target)."""
        dims, rest = [], n
        for _ in range(self.r.randint(0, 2)):
            divisors = [d for d in range(1, rest + 1) if rest % d == 0] if rest < 10_000 else [1, rest]
            d = self.r.choice(divisors)
            dims.append(d)
            rest //= d
        dims.append(rest)
        self.r.shuffle(dims)
        return dims

    def literal(self, value) -> str:
        """Return an attribute value as the language writes it (names bare, lists in brackets)."""
        if value is None:
            return "none"
        if isinstance(value, str):
            return value
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(self.literal(v) for v in value) + "]"
        return self.number(value)

    # ---- calls ---------------------------------------------------------------
    def pick_op(self):
        """Return a random op: gates and activations more often than the rest."""
        family = self.r.choices(list(FAMILY_WEIGHTS), weights=list(FAMILY_WEIGHTS.values()))[0]
        return self.r.choice([op for op in OPS.values() if op.family == family])

    def inputs_for(self, op, first: Var | None, env: list[Var]) -> list[Var]:
        """Return tensor arguments for `op` (the first one given when it is the head of a link)."""
        r = self.r
        floats = [v for v in env if v.type.kind != CLASS] or [Var("1.5", SCALAR)]
        args = [first] if first is not None else []
        if not args:
            if r.random() < 0.04:    # an op applied to a literal: `elu(2)`
                args.append(Var(self.number(r.choice([2, 0.5, -1.0])), SCALAR))
            else:
                args.append(r.choice(floats))
        a = args[0].type
        if op.variadic:
            same = [v for v in floats if v.type.rank == a.rank and v.type.batched == a.batched]
            args += [r.choice(same or floats) for _ in range(r.randint(1, 2))]
        for _ in op.inputs[1:]:
            if op.family == "loss":
                labels = [v for v in env if v.name.startswith("y") or v.name.startswith("t")]
                if op.name in ("cross_entropy", "hinge"):
                    classes = [v for v in env if v.type.kind == CLASS]
                    args.append(r.choice(classes) if classes else r.choice(floats))
                else:
                    fits = [v for v in labels + floats if v.type.shape == a.shape and v.type.kind != CLASS]
                    args.append(r.choice(fits) if fits else r.choice(floats))
                continue
            if op.name == "matmul":
                fits = [v for v in floats if v.type.rank >= 1 and a.rank >= 1 and v.type.shape[0] == a.shape[-1]]
            else:
                fits = [v for v in floats if v.type.shape == a.shape or v.type.shape == a.shape[1:]]
            choice = r.random()
            if fits and choice < 0.7:
                args.append(r.choice(fits))
            elif choice < 0.9 and op.name != "matmul":
                args.append(Var(self.number(r.choice([2, 0.5, 1e-3, 3.0, 10])), SCALAR))
            else:
                args.append(r.choice(floats))
        return args

    def attrs_for(self, op, in_types) -> dict:
        """Return the attributes a call gives: every required one, some optional ones."""
        attrs = {}
        for a in op.attrs:
            if a.required or self.r.random() < 0.3:
                value = self.attr_value(op, a, in_types)
                if value is not None:   # `none` is what leaving the attribute out means
                    attrs[a.name] = value
        if self.block_params and self.r.random() < 0.5:
            for a in op.attrs:
                if a.name in attrs and a.kind == "int" and (a.minimum or 0) >= 1 and a.name in ("units", "filters"):
                    pname, value = self.r.choice(self.block_params)
                    attrs[a.name] = (pname, value)
        return attrs

    def args_text(self, op, args: list[Var], attrs: dict, skip_first: bool) -> str:
        """Return the text between a call's parentheses."""
        parts = [v.name for v in (args[1:] if skip_first else args)]
        positional = True
        for a in op.attrs:
            if a.name not in attrs:
                positional = False
                continue
            value = attrs[a.name]
            text = value[0] if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) \
                else self.literal(value)
            if positional and not op.variadic and self.r.random() < 0.5:
                parts.append(text)
            else:
                positional = False
                parts.append(f"{a.name}={text}")
        return ", ".join(parts)

    def call(self, env: list[Var], first: Var | None = None) -> tuple[str, TensorType] | None:
        """Return (text, type) of one op call that fits its shape rule, or None after a few tries.

        With `first`, the text is a link (`relu`, `linear(4)`) applied to it; else a whole call.
        """
        for _ in range(12):
            op = self.pick_op()
            args = self.inputs_for(op, first, env)
            in_types = [v.type for v in args]
            attrs = self.attrs_for(op, in_types)
            plain = {k: (v[1] if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) else v)
                     for k, v in attrs.items()}
            try:
                out = op.shape_rule(in_types, resolve_attrs(op, plain))
            except Exception:   # noqa: BLE001 - a misfit (or a shape-rule bug the driver will meet)
                if not self.miss(0.05):
                    continue
                out = in_types[0]
            tags = [f"op:{op.name}"]
            if not any(t.batched for t in in_types):
                tags.append(f"op:{op.name}:unbatched")
                if in_types[0].rank == 0:
                    tags.append(f"op:{op.name}:scalar")     # one 0-d value: `elu(2)`, `sigmoid(w)` of `param w: []`
            if len(args) == 2 and in_types[0].batched != in_types[1].batched:
                lone = args[1] if in_types[0].batched else args[0]
                if lone.type.rank == 0 and lone.name[0].isalpha():   # a 0-d tensor, not a literal
                    tags.append(f"op:{op.name}:mixed-scalar")
            self.tag(*tags)
            name = self.r.choice([op.name, *op.other_names])
            if first is not None:
                inner = self.args_text(op, args, attrs, skip_first=True)
                return (f"{name}({inner})" if inner or self.r.random() < 0.3 else name), out
            if op.name in BINARY and self.r.random() < 0.7:
                return f"{args[0].name} {BINARY[op.name]} {args[1].name}", out
            if op.name == "neg" and self.r.random() < 0.7:
                return f"-{args[0].name}", out
            return f"{name}({self.args_text(op, args, attrs, skip_first=False)})", out
        return None

    def expression(self, env: list[Var]) -> tuple[str, TensorType] | None:
        """Return (text, type) of a right-hand side: a call, a chain, or a block use."""
        r = self.r
        if r.random() < (0.25 if self.blocks else 0.12):
            use = self.block_use(env)
            if use:
                return use
        if r.random() < 0.35:
            head = r.choice([v for v in env if v.type.kind != CLASS] or env)
            text, t = head.name, head.type
            for _ in range(r.randint(1, 3)):
                link = self.call(env, Var(text, t))
                if link is None:
                    break
                text, t = f"{text} -> {link[0]}", link[1]
            return (text, t) if text != head.name else None
        return self.call(env)

    # ---- blocks --------------------------------------------------------------
    def block_use(self, env: list[Var]) -> tuple[str, TensorType] | None:
        """Return (text, type) of a use of a block that fits a name in `env` (making one if none does)."""
        r = self.r
        floats = [v for v in env if v.type.kind != CLASS]
        if not floats:
            return None
        fitting = [(b, v) for b in self.blocks for v in floats if b[1][0] == v.type]
        if not fitting or r.random() < 0.3:
            v = r.choice(floats)
            made = self.block(v.type, depth=len(self.block_stack))
            if made is None:
                return None
            fitting = [(made, v)]
        (name, arg_types, kwargs, out, _), v = r.choice(fitting)
        given = self.block_args(kwargs)
        if out == arg_types[0] and r.random() < 0.4:
            self.tag("repeat")
            count = r.choice([1, 2, 3])
            return f"{v.name} -> repeat {count} {name}" + (f"({given})" if given else ""), out
        if r.random() < 0.4:
            return f"{v.name} -> {name}" + (f"({given})" if given else ""), out
        return f"{name}({v.name}" + (f", {given}" if given else "") + ")", out

    def block_args(self, kwargs: dict) -> str:
        """Return a block call's arguments after the tensor: positional while in order, then keywords."""
        parts, in_order = [], True
        for position, (name, (value, index)) in enumerate(sorted(kwargs.items(), key=lambda kv: kv[1][1])):
            in_order = in_order and index == position and self.r.random() < 0.5
            parts.append(str(value) if in_order else f"{name}={value}")
        return ", ".join(parts)

    def block(self, arg: TensorType, depth: int):
        """Define a block over one tensor argument of type `arg`; return its record or None."""
        if depth >= 3:
            return None
        r = self.r
        name = self.fresh("blk")
        self.tag("block", f"block-depth:{depth + 1}")
        params = [(f"n{i}", r.randint(1, 6)) for i in range(r.randint(0, 2))]
        defaults = {p: r.random() < 0.6 for p, _ in params}
        saved = self.block_params
        self.block_params = params
        self.block_stack.append(name)
        try:
            env = [Var("x", arg)]
            lines = []
            for _ in range(r.randint(1, 3)):
                made = self.expression(env)
                if made is None:
                    continue
                h = self.fresh("b")
                lines.append(f"  {h} = {made[0]}")
                env.append(Var(h, made[1]))
        finally:
            self.block_params = saved
            self.block_stack.pop()
        ret = env[-1]
        params.sort(key=lambda pv: defaults[pv[0]])   # parameters with defaults come last
        header = ", ".join(["x", *(f"{p} = {v}" if defaults[p] else p for p, v in params)])
        text = f"block {name}({header}) {{\n" + "\n".join(lines) + f"\n  return {ret.name}\n}}\n"
        kwargs = {p: (v, i) for i, (p, v) in enumerate(params) if not defaults[p] or r.random() < 0.4}
        record = (name, [arg], kwargs, ret.type, text)
        self.blocks.append(record)
        return record

    # ---- the model -----------------------------------------------------------
    def model(self, name: str) -> str:
        """Return a model's text; blocks it uses are added to self.blocks."""
        r = self.r
        lines, env = [], []
        self.model_name = name
        for _ in range(r.randint(1, 3)):
            v = Var(self.fresh("x"), TensorType(self.shape()))
            env.append(v)
            lines.append(f"  input {v.name}: {self.shape_text(v.type.shape)}")
        classes = None
        if r.random() < 0.6:
            classes = r.randint(2, 6) if not self.miss(0.1) else r.choice([0, 1])
            lines.append(f"  label y: class[{classes}]")
            env.append(Var("y", TensorType((), CLASS, classes=max(classes, 1))))
        if r.random() < 0.3:
            t = Var("t", TensorType(r.choice([v.type.shape for v in env if v.type.kind != CLASS])))
            env.append(t)
            lines.append(f"  label t: {self.shape_text(t.type.shape)}")
        for _ in range(r.choice([0, 0, 1, 2])):
            shape = self.shape(r.choice([0, 1, 2]))
            if not shape:
                self.tag("param:scalar")
            p = Var(self.fresh("w"), TensorType(shape, batched=False))
            options = ""
            if r.random() < 0.4:
                options += " init=" + self.init_call()
            if r.random() < 0.2:
                options += " decay=" + ("false" if r.random() < 0.5 else "true")
            lines.append(f"  param {p.name}: {self.shape_text(shape)}{options}")
            env.append(p)
        for _ in range(r.randint(1, 7)):
            made = self.expression(env)
            if made is None:
                continue
            h = self.fresh("h")
            lines.append(f"  {h} = {made[0]}")
            env.append(Var(h, made[1]))
        lines += self.ending(env, classes)
        sep = "\n" if r.random() < 0.85 else "; "
        return f"model {name} {{\n" + sep.join(lines) + "\n}\n"

    def ending(self, env: list[Var], classes) -> list[str]:
        """Return the loss and output lines."""
        r = self.r
        lines = []
        floats = [v for v in env if v.type.kind != CLASS and v.type.batched]
        last = floats[-1] if floats else None
        vectors = [v for v in floats if v.type.rank >= 1]
        if classes and vectors and r.random() < 0.7:
            last = vectors[-1]
            logits = f"linear({last.name}, {classes})" if last.type.shape != (classes,) else last.name
            if last.type.rank > 1:
                logits = f"{last.name} -> flatten -> linear({classes})"
            loss = r.choice(["cross_entropy", "hinge"])
            lines.append(f"  loss = {loss}({logits}, y)")
        elif last is not None and r.random() < 0.6:
            lines.append(f"  loss = {r.choice(['mean', 'sum'])}({last.name})")
        params = [v for v in env if not v.type.batched and v.name.startswith("w")]
        if lines and params and r.random() < 0.3:   # an L2 penalty on a declared param
            self.tag("op:add:mixed-scalar" if params[0].type.rank == 0 else "penalty")
            lines[-1] += f" + {r.choice(['0.01', '1e-4'])} * sum({params[0].name} * {params[0].name})"
        self.has_loss = self.has_loss or (bool(lines) and self.model_name == "m")
        if last is not None and (not lines or r.random() < 0.6):
            lines.append(f"  output {self.fresh('o')} = {last.name}")
        elif not lines:
            lines.append(f"  output {self.fresh('o')} = {env[-1].name}")
        return lines

    # ---- the train section ---------------------------------------------------
    def keyword_value(self, accepts):
        """Return a value that a signature keyword accepts (its `words` say which)."""
        r, words = self.r, accepts.words
        if self.miss(0.1):
            return r.choice([-1, "true", 1e400, 2])
        if "true or false" in words:
            return r.random() < 0.5
        if "whole" in words:
            return r.randint(1, 5)
        if "[0, 1)" in words:
            return round(r.uniform(0, 0.99), 3)
        if "[0, 1]" in words:
            return round(r.uniform(0, 1), 3)
        if "> 0" in words:
            return round(r.uniform(0.1, 10), 3)
        if ">= 0" in words:
            return r.choice([0, 1e-3, 0.01, 0.1, 0.5])
        return round(r.uniform(-1, 1), 3)

    def named_call(self, table: dict) -> str:
        """Return a call of a random entry of a signature table, with some of its keywords."""
        name = self.r.choice(sorted(table))
        sig = table[name]
        kws = [k for k in sig.keywords if k.default is REQUIRED or self.r.random() < 0.4]
        if name == "uniform" or (table is OPTIMIZER_SIGNATURES and name in ("sgd", "momentum", "nesterov")):
            # rules over several keywords (low <= high; nesterov needs momentum > 0, dampening 0)
            kws = [k for k in kws if k.name == "lr"]
        args = ", ".join(f"{k.name}={self.literal(self.keyword_value(k.accepts))}" for k in kws)
        return f"{name}({args})" if args or self.r.random() < 0.3 else name

    def init_call(self) -> str:
        """Return an initialiser, e.g. `normal(std=0.1)` or `he`."""
        return self.named_call(INITIALISERS)

    def train(self, model: str | None) -> str:
        """Return a train section with random settings."""
        r = self.r
        self.tag("train")
        settings = {
            "data": lambda: (lambda d: d if d.isidentifier() else f'"{d}"')(r.choice(DATASETS)),
            "batch": lambda: str(r.randint(1, 64)),
            "epochs": lambda: str(r.randint(1, 5)),
            "optimizer": lambda: self.named_call(OPTIMIZER_SIGNATURES),
            "init": self.init_call,
            "schedule": lambda: self.named_call(SCHEDULES),
            "weight_decay": lambda: r.choice(["0", "1e-4", "0.01"]),
            "l1": lambda: r.choice(["0", "1e-5"]),
            "validation": lambda: r.choice(["0", "0.1", "0.25"]),
            "seed": lambda: str(r.randint(0, 99)),
            "early_stop": lambda: str(r.randint(0, 3)),
            "scale": lambda: r.choice(["unit", "standard"]),
        }
        keys = r.sample(sorted(settings), r.randint(0, len(settings)))
        lines = [f"{k} = {settings[k]()}" for k in keys]
        if self.miss(0.3):
            lines.append(r.choice(["optimiser = sgd", "batch = 0", "validation = 1", "optimizer = sgd(lr=-1)",
                                   "init = normal(std=-1)", "optimizer = adam(beta1=1)", "scale = none"]))
        head = f"train {model} " if model else "train "
        if r.random() < 0.5:
            return head + "{ " + "; ".join(lines) + " }\n"
        return head + "{\n" + "".join(f"  {line}\n" for line in lines) + "}\n"

    # ---- hostile constructs ----------------------------------------------------
    def hostile(self) -> tuple[list[str], list[str], dict[str, str]]:
        """Return (block texts, model lines, extra files) of one hostile construct (its tag added)."""
        values = ["huge-int", "huge-float", "deep-parens", "deep-negation", "long-chain", "big-shape",
                  "high-rank", "prime-groupnorm", "wide"]
        structures = ["doubling", "nested-repeat", "huge-repeat", "include-chain", "include-self",
                      "include-missing", "include-device"]
        kind = self.r.choice(values + structures)
        self.tag(f"hostile:{kind}")
        if kind in values:
            return [], ["  input x: [3]", *self.hostile_value(kind)], {}
        return self.hostile_structure(kind)

    def hostile_value(self, kind: str) -> list[str]:
        """Return model lines (after `input x: [3]`) with a hostile value or expression of this kind."""
        r = self.r
        if kind == "huge-int":
            digits = r.choice([300, 4300, 4301, 5000, 20000])
            if digits > 4300:   # Python's int-string conversion limit
                self.tag("hostile:huge-int:over-4300-digits")
            return [f"  output o = x * 1{'0' * (digits - 1)}" if r.random() < 0.5
                    else f"  output o = linear(x, {'9' * digits})"]
        if kind == "huge-float":
            return [f"  output o = x * {r.choice(['1e400', '1e-400', '1' * 400 + '.5', '1e99999999'])}"]
        if kind == "deep-parens":
            depth = r.choice([50, 150, 199, 200, 201, 400, 3000])
            return ["  output o = " + "(" * depth + "x" + ")" * depth]
        if kind == "deep-negation":
            return ["  output o = " + "-" * r.choice([50, 199, 201, 1000]) + "x"]
        if kind == "long-chain":
            return ["  output o = x" + " -> relu" * r.choice([100, 1000, 3000])]
        if kind == "big-shape":
            shape = r.choice([[100000, 100000], [2 ** 41], [2 ** 20, 2 ** 20, 2], [10 ** 30]])
            return [f"  input big: {self.shape_text(shape)}", "  output o = relu(big)"]
        if kind == "high-rank":
            rank = r.choice([8, 32, 64, 65, 67])
            if rank > 64 - 1:   # NumPy arrays have at most 64 axes, and the batch takes one
                self.tag("hostile:high-rank:over-63")
            return [f"  output o = reshape(x, [{', '.join(['1'] * (rank - 1))}, 3])"]
        if kind == "prime-groupnorm":
            return [f"  input p: [{r.choice([1000000007, 999983])}]", "  output o = groupnorm(p, 2)"]
        n = r.choice([500, 2000])   # wide: many statements
        return [f"  h{i} = x + {i}" for i in range(n)] + \
            ["  output o = concat(" + ", ".join(f"h{i}" for i in range(0, n, 7)) + ")"]

    def hostile_structure(self, kind: str) -> tuple[list[str], list[str], dict[str, str]]:
        """Return (block texts, model lines, extra files) of a hostile block or include structure."""
        r = self.r
        lines = ["  input x: [3]", "  output o = relu(x)"]
        files = {}
        if kind == "doubling":
            levels = r.choice([5, 10, 16, 20, 25])
            blocks = ["block d0(x) { return relu(x) }\n"]
            blocks += [f"block d{i}(x) {{ return d{i - 1}(d{i - 1}(x)) }}\n" for i in range(1, levels + 1)]
            lines[1] = f"  output o = d{levels}(x)"
        elif kind in ("nested-repeat", "huge-repeat"):
            count, levels = r.choice([(10, 2), (100, 2), (1000, 3), (10000, 2)]) if kind == "nested-repeat" \
                else (r.choice([10001, 10 ** 6, 10 ** 30]), 1)
            blocks = ["block r0(x) { return relu(x) }\n"]
            blocks += [f"block r{i}(x) {{ return x -> repeat {count} r{i - 1} }}\n" for i in range(1, levels + 1)]
            lines[1] = f"  output o = r{levels}(x)"
        elif kind == "include-chain":
            depth = r.choice([10, 63, 64, 65, 100])
            for i in range(depth):
                files[f"chain/c{i}.nn"] = f'include "c{i + 1}.nn"\n' if i + 1 < depth else \
                    "block tail(x) { return relu(x) }\n"
            blocks = ['include "chain/c0.nn"\n']
            lines[1] = "  output o = tail(x)"
        elif kind == "include-self":
            files["loop_a.nn"] = 'include "loop_b.nn"\n'
            files["loop_b.nn"] = 'include "loop_a.nn"\nblock lb(x) { return x }\n'
            blocks = [r.choice(['include "main.nn"\n', 'include "loop_a.nn"\n'])]
        elif kind == "include-missing":
            blocks = [r.choice(['include "nowhere.nn"\n', 'include "chain"\n', 'include ""\n', 'include "."\n'])]
        else:   # include-device
            blocks = [r.choice(['include "/dev/null"\n', 'include "/dev/zero"\n', 'include "/proc/self/status"\n'])]
        return blocks, lines, files

    # ---- the whole program ---------------------------------------------------
    def program(self) -> Case:
        """Return the generated case: files, tags and (in `self.model_name`) the model to check."""
        r = self.r
        if r.random() < HOSTILE:
            blocks, lines, files = self.hostile()
            main = "".join(blocks) + "model m {\n" + "\n".join(lines) + "\n}\n"
            return Case(self.seed, {"main.nn": main, **files}, self.tags)
        names = ["m"] if r.random() < 0.85 else ["m", "other"]
        models = [self.model(name) for name in names]
        items = [b[4] for b in self.blocks]
        files = {}
        if items and r.random() < 0.25:
            self.tag("include")
            moved = items[: r.randint(1, len(items))]
            items = items[len(moved):]
            path = r.choice(["lib.nn", "sub/lib.nn"])
            if len(moved) > 1 and r.random() < 0.5:   # the included file includes another, relative to itself
                self.tag("include:nested")
                files["sub/deeper.nn"] = "".join(moved[1:])
                moved = [f'include "{"deeper.nn" if path.startswith("sub/") else "sub/deeper.nn"}"\n', moved[0]]
            files[path] = "".join(moved)
            if self.miss(0.5):
                path = path.replace("lib", "libb")
            items.insert(0, f'include "{path}"\n')
        items += models
        if r.random() < 0.5 and (self.has_loss or self.miss(0.5)):   # training needs a loss
            items.append(self.train("m" if len(names) > 1 or r.random() < 0.2 else None))
        if r.random() < 0.1:
            self.tag("shuffled-items")
            head = [i for i in items if i.startswith("include")]
            rest = [i for i in items if not i.startswith("include")]
            r.shuffle(rest)
            items = head + rest
        sep = r.choice(["\n", "\n\n", "\n# a comment\n"])
        main = sep.join(items)
        return Case(self.seed, {"main.nn": main, **files}, self.tags)


def generate(seed: int, exclude=()) -> Case:
    """Return the program of `seed`, avoiding every tag that matches a pattern in `exclude`."""
    for attempt in range(100):
        try:
            return Gen(seed if attempt == 0 else seed * 7919 + attempt, exclude).program()
        except Excluded:
            continue
    return Case(seed, {"main.nn": "model m {\n  input x: [3]\n  output o = x\n}\n"}, {"fallback"})


# ---- the driver ---------------------------------------------------------------

class CaseTimeout(BaseException):
    """Raised by SIGALRM when a case runs over its time limit (a BaseException: no `except Exception` eats it)."""


@dataclass
class Outcome:
    """What happened to one case."""

    seed: int
    status: str          # ok, diagnostic, late, crash, slow
    stage: str           # the last stage reached: check, summary, program, run, backward, optimizer
    seconds: float       # CPU seconds, files written to the end
    valid: bool = False  # check accepted the program
    ran: bool = False    # a forward/backward pass ran
    error: str = ""      # the exception's type
    where: str = ""      # the innermost graphc frame that raised: file:line in function
    message: str = ""
    tags: tuple = ()
    longest_diagnostic: int = 0   # characters in the longest rendered diagnostic

    @property
    def crash_class(self) -> str:
        """Return a key that groups crashes with one cause: the exception type and where it was raised."""
        return f"{self.error} at {self.where.split(':')[0]}:{self.where.split(' in ')[-1]}" if self.where \
            else self.error


def _on_alarm(signum, frame):
    raise CaseTimeout()


def _where(error: BaseException) -> str:
    """Return file:line in function of the innermost graphc frame of the error's traceback."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "/graphc/" in f.filename]
    if not frames:
        frames = traceback.extract_tb(error.__traceback__)[-1:]
    if not frames:
        return ""
    f = frames[-1]
    name = f.filename[f.filename.rfind("graphc/"):] if "graphc/" in f.filename else Path(f.filename).name
    return f"{name}:{f.lineno} in {f.name}"


def _elements(graph) -> int:
    """Return how many elements the graph's tensors and parameters hold at batch 2 (a memory estimate)."""
    total = 0
    for node in graph.nodes():
        if node.type is not None:
            total += node.type.size * (2 if node.type.batched else 1)
    return total + sum(int(_size(info.shape)) for info in graph.params.values())


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


class Mismatch(AssertionError):
    """A value whose run-time shape differs from the one infer gave it (a bug, counted as a crash)."""


def _same_shape(what: str, got, expected) -> None:
    if tuple(got) != tuple(expected):
        raise Mismatch(f"{what} has shape {list(got)} at run time, but infer said {list(expected)}")


def _stages(path: Path, model: str | None, seed: int, out: Outcome) -> None:
    """Check the program at `path`; if valid, run it forward and backward (and one optimizer step)."""
    graph = check_file(path, model)
    out.valid = True
    out.stage = "summary"
    render_summary(graph)
    for w in graph.warnings:
        w.render()
    if _elements(graph) >= RUN_ELEMENTS:
        return
    out.stage = "program"
    prog = Program(graph, dtype="float64", seed=seed % 1000)
    feeds = random_feeds(graph, 2, seed)
    out.stage = "run"
    values = prog.run(feeds, train=False)
    for name, node in graph.outputs.items():
        _same_shape(f"output `{name}`", values[name].shape, graph.type_of(node).runtime_shape(2))
    if graph.objective is None:
        return
    out.stage = "backward"
    grads = prog.gradients(feeds, train=bool(seed % 2))
    for name, grad in grads.items():   # a parameter the objective does not use has no gradient
        expected = prog.params[name].shape if name in prog.params else graph.type_of(name).runtime_shape(2)
        _same_shape(f"the gradient of `{name}`", grad.shape, expected)
    out.ran = True
    if graph.train is None:
        return
    out.stage = "optimizer"
    name, kwargs = graph.train["optimizer"].value
    optimizer = make_optimizer(name, prog.params, **kwargs)
    optimizer.step({k: g for k, g in grads.items() if k in prog.params})
    schedule, schedule_kwargs = graph.train["schedule"].value
    epochs = graph.train["epochs"].value
    rate = make_schedule(schedule, optimizer.lr, epochs, **schedule_kwargs)
    for epoch in range(epochs):
        rate(epoch)
    out.stage = "done"


def run_case(case: Case, limit: float = 5.0, model: str | None = "m") -> Outcome:
    """Check (and, if valid, run) one case in-process; return its Outcome (never raises, but on Ctrl-C)."""
    out = Outcome(case.seed, "ok", "check", 0.0, tags=tuple(sorted(case.tags)))
    with tempfile.TemporaryDirectory(prefix="graphc-fuzz-") as folder:
        for path, text in case.files.items():
            target = Path(folder, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        # The limit is CPU time (SIGPROF), so that other processes on a shared machine do not make
        # a case slow; a wall-clock alarm at WALL_FACTOR times the limit catches a case that waits.
        previous = signal.signal(signal.SIGALRM, _on_alarm), signal.signal(signal.SIGPROF, _on_alarm)
        signal.setitimer(signal.ITIMER_PROF, limit)
        signal.setitimer(signal.ITIMER_REAL, limit * WALL_FACTOR)
        cpu = time.process_time()
        try:
            with np.errstate(all="ignore"):   # non-finite values are fine; numpy's warnings are noise here
                _stages(Path(folder, "main.nn"), model, case.seed, out)
        except CaseTimeout:
            out.status = "slow"
        except GraphcError as error:
            out.status = "late" if out.valid else "diagnostic"
            out.message = str(error)[:300]
            try:
                if not error.diagnostics:
                    raise AssertionError("a GraphcError without a diagnostic")
                out.longest_diagnostic = max(len(d.render()) for d in error.diagnostics)
            except Exception as bad:   # noqa: BLE001 - a diagnostic that cannot render is a crash
                out.status, out.error, out.where, out.message = "crash", type(bad).__name__, _where(bad), str(bad)
            except CaseTimeout:
                out.status = "slow"
            if out.status == "late":
                out.where = _where(error)
        except Exception as error:   # noqa: BLE001 - every other exception is what the fuzzer looks for
            out.status, out.error, out.where = "crash", type(error).__name__, _where(error)
            if isinstance(error, Mismatch):
                out.where = f"driver:0 in {out.stage} shape check"
            out.message = str(error)[:300]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.signal(signal.SIGALRM, previous[0])
            signal.signal(signal.SIGPROF, previous[1])
        out.seconds = time.process_time() - cpu
        if out.seconds > limit and out.status != "crash":
            out.status = "slow"
    return out
