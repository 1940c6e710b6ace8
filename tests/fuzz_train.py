"""The fuzzer's train sections: random settings, with signature-aware optimizer, schedule and init calls.

`TrainSection` is a mixin of the generator `Gen` (tests/fuzz_generate.py). In a case
that carries search spaces (tests/fuzz_spaces.py), some settings become spaces:
`optimizer = sgd(lr=loguniform(1e-3, 0.1))`, `batch = int(8, 64, step=8)`, ...
"""
from __future__ import annotations

from graphc.ops import REQUIRED
from graphc.ops.init import INITIALISERS
from graphc.training.optim import OPTIMIZER_SIGNATURES, SCHEDULES

DATASETS = ["xor", "spiral", "digits", "mnist", "fashion-mnist", "data.npz", "points.csv"]


class TrainSection:
    """Train sections of the generator (a mixin: `Gen` supplies `r`, `tag`, `miss`, `literal`)."""

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
        if self.no_data:
            lines = self.no_data_train(lines)
        lines = self.train_spaces(lines)
        if self.miss(0.3):
            lines.append(r.choice(["optimiser = sgd", "batch = 0", "validation = 1", "optimizer = sgd(lr=-1)",
                                   "init = normal(std=-1)", "optimizer = adam(beta1=1)", "scale = none"]))
        head = f"train {model} " if model else "train "
        if r.random() < 0.5:
            return head + "{ " + "; ".join(lines) + " }\n"
        return head + "{\n" + "".join(f"  {line}\n" for line in lines) + "}\n"

