"""The fuzzer's case record and the random helpers every part of the generator shares.

`Case` is one generated program (its files and tags); `Basics` is the mixin that
holds the generator's random number source and its small helpers (tags and
exclusions, fresh names, the one deliberate mistake of a near-miss, shapes,
numbers in the language's spellings, literals). tests/fuzz_generate.py builds the
generator `Gen` on it; tests/fuzz_programs.py says how the parts fit together.
"""
from __future__ import annotations

import fnmatch
import random
from dataclasses import dataclass, field

from graphc.tensor_type import TensorType


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



class Basics:
    """The random source and the small helpers of the generator (`Gen` sets the state they use)."""

    r: random.Random
    exclude: tuple
    tags: set[str]
    counter: int
    near_miss: bool
    missed: bool

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

