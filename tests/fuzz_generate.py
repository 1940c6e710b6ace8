"""The fuzzer's program generator: `generate(seed)` returns a `Case` built from the grammar and the op registry.

`Gen` makes programs from the grammar's constructs (inputs, labels, params with options,
calls, `->` chains, operators, blocks with parameters, nested blocks, `repeat N`,
includes, train sections) and from the op registry: every call names an op of
`graphc.ops.all_ops()` with arguments drawn from its attributes (kinds, defaults,
minimums, choices). It asks each op's own shape rule whether a call fits, so most
programs are valid. Its mixins add train sections (tests/fuzz_train.py), hostile
constructs (tests/fuzz_hostile.py) and search spaces, search sections and `data = none`
models (tests/fuzz_spaces.py); tests/fuzz_case.py holds `Case` and the shared helpers.
"""
from __future__ import annotations

import random

from fuzz_case import Basics, Case, Excluded, Var
from fuzz_hostile import Hostile
from fuzz_spaces import SearchSpaces
from fuzz_train import TrainSection

from graphc.ops import all_ops, resolve_attrs
from graphc.tensor_type import CLASS, TensorType

OPS = {op.name: op for op in all_ops()}
SCALAR = TensorType((), batched=False)
BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/", "matmul": "@", "pow": "**"}
FAMILY_WEIGHTS = {"gate": 6, "activation": 6, "layer": 4, "reduce": 3, "shape": 3, "norm": 3, "loss": 2,
                  "regularize": 1}
NEAR_MISS = 0.15     # share of cases with one deliberate mistake
HOSTILE = 0.06       # share of cases with one hostile construct


class Gen(Basics, TrainSection, Hostile, SearchSpaces):
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
        self.choose_kind(seed)

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
                else self.attr_text(a, value)
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

    def statements(self, env: list[Var], lines: list[str], count: int, prefix: str) -> None:
        """Append up to `count` assignments of generated expressions to `lines` (and their values to `env`)."""
        for _ in range(count):
            made = self.expression(env)
            if made is None:
                continue
            h = self.fresh(prefix)
            lines.append(f"  {h} = {made[0]}")
            env.append(Var(h, made[1]))

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
            if text != head.name:
                text, t = self.link_space(text, t)
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
            self.statements(env, lines, r.randint(1, 3), "b")
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
        self.statements(env, lines, r.randint(1, 7), "h")
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
            self.classifier = self.classifier or self.model_name == "m"
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


    # ---- the whole program ---------------------------------------------------
    def program(self) -> Case:
        """Return the generated case: files, tags and (in `self.model_name`) the model to check."""
        r = self.r
        if self.space_hostile:
            return self.hostile_space()
        if self.no_data:
            return self.no_data_program()
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
        if self.spaces:
            items = self.space_items(items, files)
        sep = r.choice(["\n", "\n\n", "\n# a comment\n"])
        main = sep.join(items)
        return Case(self.seed, {"main.nn": main, **files}, self.tags)

    def no_data_program(self) -> Case:
        """Return a case whose model has no inputs: a loss over parameters, trained with `data = none`."""
        items = [self.no_data_model()]
        items = [b[4] for b in self.blocks] + items
        if self.r.random() < 0.8:
            items.append(self.train(None))
        files: dict[str, str] = {}
        if self.spaces:
            items = self.space_items(items, files)
        return Case(self.seed, {"main.nn": "\n".join(items), **files}, self.tags)


def generate(seed: int, exclude=()) -> Case:
    """Return the program of `seed`, avoiding every tag that matches a pattern in `exclude`."""
    for attempt in range(100):
        try:
            return Gen(seed if attempt == 0 else seed * 7919 + attempt, exclude).program()
        except Excluded:
            continue
    return Case(seed, {"main.nn": "model m {\n  input x: [3]\n  output o = x\n}\n"}, {"fallback"})

