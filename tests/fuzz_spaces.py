"""The fuzzer's search spaces, search sections and `data = none` models (graphc/language/spaces.py).

`SearchSpaces` is a mixin of the generator `Gen` (tests/fuzz_generate.py). A share of
cases (SPACES) carries search spaces: numeric attributes become `int(...)`,
`uniform(...)`, `loguniform(...)` or `choice(...)` whose base value (a range's low
end, a choice's first option) is the value the generator chose, so the model at its
base values type-checks; chains gain a link choice (`x -> choice(relu, tanh)`, with
nested choices and options that hold spaces); train settings become spaces
(tests/fuzz_train.py); and a `search { }` section gets random valid settings. In a
near-miss, one space or search setting is malformed, or a space stands where none may
(a block, an included file, a search section). A share of space cases (SPACE_HOSTILE)
is hostile instead (a choice of 10,000 options, deep nested choices, thousands of
spaces, huge integer ranges, non-numeric bounds, spaces in shapes). Independently, a
share (NO_DATA) is a model without inputs trained with `data = none`. Every construct
is tagged `space:<kind>`, `space-miss:<kind>`, `hostile:space-<kind>` or `data:none`.

Which cases carry spaces is drawn from a random source of its own, so a case without
them is the program the generator made before spaces existed.
"""
from __future__ import annotations

import random

from fuzz_case import Case, Var

from graphc.ops import all_ops, resolve_attrs
from graphc.tensor_type import CLASS, TensorType

SPACES = 0.15          # share of cases with search spaces
SPACE_HOSTILE = 0.06   # share of those that are one hostile space construct instead
NO_DATA = 0.04         # share of cases that are a model without inputs (`data = none`)
LINK_OPS = ("relu", "tanh", "sigmoid", "elu", "leaky_relu", "identity", "softmax", "step")
SAMPLERS = ("tpe", "random", "grid", "cmaes")
PRUNERS = ("median", "hyperband", "none")
HOSTILE_KINDS = ("choice-wide", "link-choice-wide", "nested-deep", "nested-wide", "many-spaces", "int-huge",
                 "huge-bounds", "non-numeric", "in-shape", "deep-bound", "search-weird")


class SearchSpaces:
    """Search spaces in generated programs (a mixin: `Gen` supplies `r`, `tag`, `miss`, `literal`, `fresh`)."""

    def choose_kind(self, seed: int) -> None:
        """Decide from a random source of the seed's own whether this case has spaces, is hostile, has no data."""
        side = random.Random(seed * 2_654_435_761 + 97)
        self.spaces = side.random() < SPACES
        self.space_hostile = self.spaces and side.random() < SPACE_HOSTILE
        self.no_data = side.random() < NO_DATA
        self.classifier = False   # the loss of `m` is over class labels (a metric *_acc fits)
        self.validation = False   # the train section holds out validation data (a metric val_* fits)

    # ---- spaces in a model body ------------------------------------------------
    def attr_text(self, a, value) -> str:
        """Return an attribute value's text: in a space case, sometimes a space whose base value is `value`."""
        if not self.spaces or self.block_stack or isinstance(value, (bool, str, list, tuple)) or value is None \
                or self.r.random() < 0.6:
            return self.literal(value)
        if self.miss(0.2):
            return self.malformed(value)
        return self.space_around(value, a.name)

    def space_around(self, value, name: str = "") -> str:
        """Return a well-formed space whose base value is `value` (an int or a float)."""
        r = self.r
        if isinstance(value, int):
            kind = r.choice(["int", "int", "step", "choice", "one"])
            self.tag("space:int" if kind in ("int", "step") else "space:choice")
            if kind == "int":
                return f"int({value}, {value + r.randint(1, 3)})"
            if kind == "step":
                step = r.randint(1, 3)
                self.tag("space:step")
                return f"int({value}, {value + step * r.randint(1, 3)}, step={step})"
            if kind == "one":   # a choice of one value: the value itself (for shape-setting attributes)
                return f"choice({value})"
            return f"choice({value}, {', '.join(str(value + i) for i in range(1, r.randint(2, 4)))})"
        top = min(value + r.choice([0.05, 0.5, 1.0]), 0.95) if name == "p" else value + r.choice([0.05, 0.5, 2.0])
        if top <= value:
            return f"choice({value!r})"
        kind = r.choice(["uniform", "log", "step", "choice"])
        if kind == "log" and value > 0:
            self.tag("space:loguniform")
            return f"loguniform({value!r}, {top!r})"
        if kind == "step":
            self.tag("space:uniform", "space:step")
            return f"uniform({value!r}, {value + 0.5 * (top - value)!r}, step={0.25 * (top - value)!r})"
        if kind == "choice":
            self.tag("space:choice")
            return f"choice({value!r}, {top!r})"
        self.tag("space:uniform")
        return f"uniform({value!r}, {top!r})"

    def malformed(self, value) -> str:
        """Return a malformed space (its kind tagged `space-miss:`): each one a diagnostic, never a crash."""
        r = self.r
        kinds = {
            "reversed": lambda: f"uniform({value!r}, {value - 1!r})",
            "log-zero": lambda: r.choice(["loguniform(0, 1)", "loguniform(-1, 1)", "loguniform(0.0, 1e-3)"]),
            "mixed": lambda: f"choice({value!r}, relu)",
            "int-fraction": lambda: f"int({value + 0.5}, {value + 4})",
            "step-off": lambda: "int(0, 10, step=3)",
            "non-numeric": lambda: r.choice(["uniform(0, n)", 'int("a", 2)', "uniform([1], 2)", "int(relu, 4)"]),
            "empty": lambda: "choice()",
            "keyword": lambda: r.choice(["loguniform(1e-3, 1, step=2)", "choice(1, 2, step=1)", "int(1, 4, by=1)"]),
            "one-bound": lambda: f"int({value})",
            "equal": lambda: f"uniform({value!r}, {value!r})",
            "bad-step": lambda: r.choice(["uniform(0, 1, step=-0.1)", "uniform(0, 1, step=0)", "int(0, 4, step=0)"]),
        }
        kind = r.choice(sorted(kinds))
        self.tag(f"space-miss:{kind}")
        return kinds[kind]()

    def link_space(self, text: str, t: TensorType) -> tuple[str, TensorType]:
        """Return (text, type) of the chain `text` with, in a space case, a link choice of shape-keeping ops."""
        r = self.r
        if not self.spaces or self.block_stack or t.kind == CLASS or r.random() < 0.6:
            return text, t
        fits = [name for name in LINK_OPS if _keeps(name, t)]
        if len(fits) < 2:
            return text, t
        options = r.sample(fits, r.randint(1, min(4, len(fits))))
        self.tag("space:link", "space:choice")
        if "leaky_relu" in options and r.random() < 0.5:   # an option holding a space of its own
            self.tag("space:nested")
            options[options.index("leaky_relu")] = "leaky_relu(slope=uniform(0.01, 0.3))"
        if "elu" in options and r.random() < 0.5:
            self.tag("space:nested")
            options[options.index("elu")] = "elu(alpha=loguniform(0.1, 2))"
        if len(fits) > len(options) and r.random() < 0.3:   # a choice as an option of a choice
            self.tag("space:nested-choice")
            rest = [f for f in fits if f not in options]
            options.append(f"choice({', '.join(rest[:2])})")
        return f"{text} -> choice({', '.join(options)})", t

    # ---- spaces in the train section and the search section ------------------------
    def train_spaces(self, lines: list[str]) -> list[str]:
        """Return train setting lines with, in a space case, some settings made spaces (or replaced by one)."""
        r = self.r
        self.validation = any(line.startswith("validation = 0.") for line in lines)
        if not self.spaces:
            return lines
        spaces = {
            "optimizer": lambda: r.choice([
                "sgd(lr=loguniform(1e-3, 0.1))", "adam(lr=loguniform(1e-4, 1e-2), beta1=uniform(0.8, 0.95))",
                "choice(sgd(lr=loguniform(1e-3, 0.1)), adam(lr=loguniform(1e-4, 1e-2)), momentum)",
                "choice(sgd, adam, rmsprop)"]),
            "weight_decay": lambda: r.choice(["loguniform(1e-8, 1e-3)", "uniform(0, 0.01)", "choice(0, 1e-4)"]),
            "init": lambda: r.choice(["choice(he, xavier, normal(std=loguniform(1e-3, 0.1)))", "choice(he, xavier)",
                                      "uniform(-0.1, 0.1)", "normal(std=uniform(0.01, 0.1))"]),
            "batch": lambda: r.choice(["int(8, 64, step=8)", "choice(16, 32, 64)", "int(1, 64)"]),
            "epochs": lambda: r.choice(["int(1, 3)", "choice(1, 2)"]),
            "l1": lambda: r.choice(["loguniform(1e-6, 1e-3)", "choice(0, 1e-5)"]),
            "seed": lambda: "int(0, 9)",
        }
        by_key = dict(line.split(" = ", 1) for line in lines)
        for key in r.sample(sorted(spaces), r.randint(1, 3)):
            if key == "epochs" and key not in by_key:
                continue
            by_key[key] = spaces[key]()
            self.tag(f"space:train-{key}")
        if "data" in by_key and by_key["data"] in ("xor", "spiral") and r.random() < 0.2:
            by_key["data"] = "choice(xor, spiral)"
            self.tag("space:train-data")
        return [f"{k} = {v}" for k, v in by_key.items()]

    def search_section(self) -> str:
        """Return a `search { }` section with random valid settings (one malformed setting in a near-miss)."""
        r = self.r
        self.tag("search")
        metrics = ["train_loss"] + (["train_acc"] if self.classifier else []) + \
            (["val_loss"] if self.validation else []) + (["val_acc"] if self.classifier and self.validation else [])
        settings = {
            "trials": lambda: str(r.randint(1, 200)),
            "sampler": lambda: r.choice(SAMPLERS),
            "pruner": lambda: r.choice(PRUNERS),
            "metric": lambda: r.choice(metrics),
            "direction": lambda: r.choice(["maximize", "minimize"]),
            "timeout": lambda: r.choice(["60", "0.5", "3600", "1e9"]),
            "seed": lambda: str(r.randint(0, 99)),
        }
        keys = r.sample(sorted(settings), r.randint(0, len(settings)))
        lines = [f"{k} = {settings[k]()}" for k in keys]
        if self.miss(0.5):
            bad = r.choice(["trials = 0", "sampler = bayes", "metirc = val_acc", "pruner = sha", "timeout = -1",
                            "seed = 1.5", "trials = choice(1, 2)", "sampler = uniform(0, 1)", 'sampler = "tpe"',
                            "trials = 2.5", "metric = val_acc", "direction = up", "seed = -3"])
            self.tag("space-miss:search-" + bad.split(" = ")[0])
            lines.append(bad)
            if r.random() < 0.3 and lines:
                lines.append(lines[0])   # a setting twice
        head = r.choice(["search ", "search ", "search m "])
        if r.random() < 0.5:
            return head + "{ " + "; ".join(lines) + " }\n"
        return head + "{\n" + "".join(f"  {line}\n" for line in lines) + "}\n"

    def space_items(self, items: list[str], files: dict[str, str]) -> list[str]:
        """Return the main file's items with a search section and, in a near-miss, a space where none may stand."""
        r = self.r
        if r.random() < 0.7:
            items = items + [self.search_section()]
        if self.miss(0.5):
            kind = r.choice(["in-block", "in-include", "in-include-train", "in-block-default"])
            self.tag(f"space-miss:{kind}")
            block = "block sb(x) {\n  return x -> choice(relu, tanh)\n}\n"
            if kind == "in-block":
                items = [block] + items
            elif kind == "in-block-default":
                items = ["block sd(x, n = int(1, 4)) {\n  return x * n\n}\n"] + items
            else:
                files["spaces.nn"] = block if kind == "in-include" else "train { batch = int(8, 16) }\n"
                items = ['include "spaces.nn"\n'] + items
        return items

    # ---- models without inputs ---------------------------------------------------
    def no_data_model(self) -> str:
        """Return a model of parameters only, its loss over them (trained with `data = none`)."""
        r = self.r
        self.tag("data:none")
        lines, env = [], []
        for _ in range(r.randint(1, 3)):
            shape = self.shape(r.choice([0, 1, 1, 2]))
            v = Var(self.fresh("w"), TensorType(shape, batched=False))
            init = f" init={self.init_call()}" if r.random() < 0.3 else ""
            lines.append(f"  param {v.name}: {self.shape_text(shape)}{init}")
            env.append(v)
        if self.miss(0.2):   # an input, though the train section says there is no data
            self.tag("data:none:with-input")
            lines.insert(0, "  input x: [3]")
        self.statements(env, lines, r.randint(0, 3), "h")
        last = [v for v in env if v.type.kind != CLASS][-1]
        reduce = r.choice(["sum", "mean"])
        lines.append(f"  loss = {reduce}({last.name} * {last.name})" if r.random() < 0.6 else
                     f"  loss = {reduce}({last.name})")
        if r.random() < 0.3:
            lines.append(f"  output {self.fresh('o')} = {last.name}")
        self.has_loss, self.model_name = True, "m"
        return "model m {\n" + "\n".join(lines) + "\n}\n"

    def no_data_train(self, lines: list[str]) -> list[str]:
        """Return train setting lines with `data = none` (and no settings that need data, unless a near-miss)."""
        kept = [line for line in lines if not line.startswith(("data", "validation", "scale", "batch"))]
        if self.miss(0.2):
            self.tag("data:none:miss")
            kept.append(self.r.choice(["validation = 0.2", "batch = 8", "scale = standard"]))
        return ["data = none"] + kept

    # ---- hostile spaces ----------------------------------------------------------
    def hostile_space(self) -> Case:
        """Return a case of one hostile search-space construct (tagged `hostile:space-<kind>`)."""
        r = self.r
        kind = r.choice(HOSTILE_KINDS)
        self.tag(f"hostile:space-{kind}")
        lines = ["  input x: [3]"]
        if kind == "choice-wide":
            n = r.choice([300, 1000, 10_000])
            lines.append(f"  h = linear(x, choice({', '.join(str(i) for i in range(1, n + 1))}))")
        elif kind == "link-choice-wide":
            n = r.choice([300, 1000, 10_000])
            names = [r.choice(["relu", "tanh", "sigmoid"]) for _ in range(n)]   # repeated labels
            lines.append(f"  h = x -> choice({', '.join(names)})")
        elif kind == "nested-deep":
            depth = r.choice([10, 50, 100, 300])
            lines.append("  h = x -> " + "choice(relu, " * depth + "tanh" + ")" * depth)
        elif kind == "nested-wide":
            n = r.choice([30, 100])
            inner = ", ".join(str(i) for i in range(1, n + 1))
            lines.append(f"  h = x -> choice({', '.join(f'linear(choice({inner}))' for _ in range(n))})")
        elif kind == "many-spaces":
            n = r.choice([50, 300, 600])
            lines += [f"  s{i} = x * uniform({i}, {i + 1})" for i in range(n)]
            lines.append("  h = concat(" + ", ".join(f"s{i}" for i in range(0, n, 7)) + ")")
        elif kind == "int-huge":
            high = r.choice(["10 ** 6", "10 ** 30", "2 ** 63", "1" + "0" * 400, "9 ** 64 * 9 ** 64", "(9 ** 64) ** 6"])
            lines.append(r.choice([f"  h = linear(x, int(1, {high}))", f"  h = x * int(0, {high})",
                                   f"  h = x + int(1, {high}, step=1)"]))
        elif kind == "huge-bounds":
            space = r.choice(["uniform(0, 1e308 * 10)", "loguniform(1e-400, 1)", "uniform(-1e400, 1e400)",
                              "uniform(0, 10 ** 400)", "loguniform(1e-300, 1e300)", "uniform(0, 1, step=1e-300)",
                              "uniform(0, 1e300, step=1e-300)", "uniform(1e-320, 1e-310)"])
            lines.append(f"  h = x * {space}")
        elif kind == "non-numeric":
            space = r.choice(["int(true, 4)", "int(false, true)", "uniform(true, 2)", "choice(true, false)",
                              'choice("a", "b")', "uniform(x, 1)", "int(1, 4, step=true)", "choice(x, x)",
                              "choice(none, relu)", "uniform(-true, 1)"])
            lines.append(f"  h = x * {space}")
        elif kind == "in-shape":
            lines = [r.choice(["  input x: [int(2, 4)]", "  input x: [choice(3, 4)]", "  input x: [int(0, 3)]",
                               "  input x: [3, int(1, 2)]"]), "  param w: [int(1, 3)]", "  h = sum(x) + sum(w)"]
            if r.random() < 0.5:
                lines.insert(1, "  label y: class[choice(2, 3)]")
        elif kind == "deep-bound":
            depth = r.choice([50, 200, 1000])
            lines.append(f"  h = x * uniform({'(' * depth}0.1{')' * depth}, {'-' * (2 * (depth // 2))}1)")
        else:   # search-weird
            lines.append("  h = x * uniform(0.5, 2)")
            section = r.choice(["search { trials = " + "9" * 400 + " }", "search { timeout = 1e400 }",
                                "search m { }\nsearch m { }", "search other { trials = 2 }",
                                "search { seed = " + "1" * 5000 + " }", "search { metric = val_acc }",
                                "search {}\nsearch {}"])
            return Case(self.seed, {"main.nn": "model m {\n" + "\n".join(lines) + "\n  output o = h\n}\n"
                                    + section + "\n"}, self.tags)
        main = "model m {\n" + "\n".join(lines) + "\n  output o = h\n}\n"
        return Case(self.seed, {"main.nn": main}, self.tags)


def _keeps(name: str, t: TensorType) -> bool:
    """Return whether op `name` with its default attributes maps type `t` to itself (a link choice's option)."""
    op = OPS_BY_NAME[name]
    try:
        return op.shape_rule([t], resolve_attrs(op, {})) == t
    except Exception:   # noqa: BLE001 - a misfit (softmax of a scalar): not an option here
        return False


OPS_BY_NAME = {op.name: op for op in all_ops()}
