"""Random `.nn` programs for the formatter and span tests: random spacing, redundant
parentheses, separators and comments. Not every generated text is a valid program
(a test skips those that do not parse)."""
from __future__ import annotations

import random


class ProgramGen:
    """Random programs with random spacing, redundant parentheses, separators and comments."""

    def __init__(self, seed: int):
        self.r = random.Random(seed)
        self.n = 0

    def sp(self) -> str:
        return self.r.choice(["", " ", "  ", "\t"])

    def comment(self) -> str:
        self.n += 1
        return f"# c{self.n}"

    def wrap(self) -> str:
        """Whitespace allowed inside brackets: maybe a newline, maybe after a comment."""
        choice = self.r.random()
        if choice < 0.1:
            return f"  {self.comment()}\n    "
        if choice < 0.2:
            return "\n      "
        return self.sp()

    def number(self) -> str:
        return self.r.choice(["1", "0x1F", "1_000", "2.5", "1e-3", ".5", "3.", "0b11", "0o7", "42"])

    def atom(self, depth: int) -> str:
        kind = self.r.random()
        if depth <= 0 or kind < 0.3:
            return self.r.choice([self.number(), self.r.choice(["a", "b", "x", "he"]), '"s"'])
        if kind < 0.55:
            return self.call(depth)
        if kind < 0.65:
            items = [self.expr(depth - 1) for _ in range(self.r.randint(0, 3))]
            return "[" + ("," + self.wrap()).join(items) + ("," if items and self.r.random() < 0.3 else "") + "]"
        return "(" + self.wrap() + self.expr(depth - 1) + self.wrap() + ")"

    def call(self, depth: int, link: bool = False) -> str:
        args = [self.expr(depth - 1) for _ in range(self.r.randint(0, 2))]
        args += [f"k{i}{self.sp()}={self.sp()}{self.expr(depth - 1)}" for i in range(self.r.randint(0, 2))]
        name = self.r.choice(["f", "conv", "linear"])
        if link and not args and self.r.random() < 0.5:
            return name
        return f"{name}({self.wrap()}" + ("," + self.wrap()).join(args) + ")"

    def unary(self, depth: int) -> str:
        if self.r.random() < 0.15:
            return "-" + self.sp() + self.unary(depth - 1)
        base = self.atom(depth)
        if self.r.random() < 0.15:
            return base + self.sp() + "**" + self.sp() + self.unary(depth - 1)
        return base

    def expr(self, depth: int) -> str:
        text = self.unary(depth)
        for _ in range(self.r.randint(0, 2) if depth > 0 else 0):
            text += self.sp() + self.r.choice(["+", "-", "*", "/", "@"]) + self.sp() + self.unary(depth - 1)
        if depth > 0 and self.r.random() < 0.2:
            for _ in range(self.r.randint(1, 2)):
                if self.r.random() < 0.2:
                    text += f" -> repeat {self.r.choice(['2', 'n'])} {self.call(depth - 1, link=True)}"
                else:
                    text += "->" + self.sp() + self.call(depth - 1, link=True)
        return text

    def separator(self) -> str:
        return self.r.choice(["\n", "\n", "\n\n", "\n\n\n", ";", " ; ", f"  {self.comment()}\n",
                              f"\n{self.comment()}\n", f"\n\n  {self.comment()}\n\n"])

    def statement(self) -> str:
        name = self.r.choice(["x", "y", "h1", "loss"])
        shape = "[" + ", ".join(self.number() for _ in range(self.r.randint(0, 3))) + "]"
        return self.r.choice([
            f"input {name}:{self.sp()}{shape}",
            f"label {name}: class[{self.expr(1)}]",
            f"label {name}: {shape}",
            f"param {name}: {shape}" + "".join(f" o{i}={self.expr(1)}" for i in range(self.r.randint(0, 2))),
            f"output {name} = {self.expr(3)}",
            f"{name}{self.sp()}={self.sp()}{self.expr(3)}",
            f"{name} = {self.expr(3)}",
            f"return {self.expr(2)}",
        ])

    def body(self, make) -> str:
        parts = [make() for _ in range(self.r.randint(0, 4))]
        inner = "".join(self.separator() + p for p in parts)
        if self.r.random() < 0.5:
            inner += self.separator()
        return "{" + self.sp() + inner + self.sp() + "}"

    def item(self) -> str:
        kind = self.r.random()
        if kind < 0.35:
            return f"model {self.r.choice(['m', 'n'])} " + self.body(self.statement)
        if kind < 0.6:
            params = [self.r.choice(["x", "k=5", "pad=0", f"s={self.expr(1)}"]) for _ in range(self.r.randint(0, 3))]
            return "block b(" + ("," + self.wrap()).join(params) + ") " + self.body(self.statement)
        if kind < 0.85:
            name = self.r.choice(["", " m"])
            return f"train{name} " + self.body(lambda: f"{self.r.choice(['data', 'batch', 'optimizer'])}"
                                                      f"{self.sp()}={self.sp()}{self.expr(2)}")
        return f'include "{self.r.choice(["a", "b"])}.nn"'

    def program(self) -> str:
        text = self.r.choice(["", f"{self.comment()}\n", f"{self.comment()}\n\n"])
        for _ in range(self.r.randint(0, 4)):
            text += self.item() + self.r.choice(["\n", "\n\n", f"  {self.comment()}\n", f"\n{self.comment()}\n", " "])
        return text
