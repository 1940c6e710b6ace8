"""A grammar- and registry-aware `.nn` program generator, and the driver that runs each program.

Not a test: tests/test_fuzz_programs.py (2,000 cases in CI) and bench/fuzz_long.py (the long
run) use it through this module: `from fuzz_programs import Case, generate, run_case`.
The parts:

  tests/fuzz_case.py      `Case` (a program's files and tags) and the generator's shared helpers
  tests/fuzz_generate.py  `generate(seed)`: ops from the registry, chains, blocks, repeats,
                          includes, models, the whole program
  tests/fuzz_train.py     train sections (optimizer, schedule and init calls from their signatures)
  tests/fuzz_spaces.py    search spaces (every distribution, nested and link choices, spaces in
                          train settings), search sections, `data = none` models, hostile spaces
  tests/fuzz_hostile.py   hostile constructs (huge literals, deep nesting, big shapes, doubling)
  tests/fuzz_run.py       `run_case(case)`: check (spaces as `graphc check` does), plan, a
                          forward/backward pass; the `Outcome`

Most programs are valid and reach infer, plan and a forward/backward pass; a share
(NEAR_MISS) carries one deliberate mistake, a few (HOSTILE) are hostile, and a share
(SPACES) carries search spaces. Every construct adds a tag to the case (`op:relu`,
`hostile:doubling`, `space:link`, `data:none`, ...); `generate(seed, exclude=...)` never
makes a case whose tags match a pattern in `exclude` (fnmatch), so that a known crash
class can be set aside by name.
"""
from __future__ import annotations

from fuzz_case import Case
from fuzz_generate import HOSTILE, NEAR_MISS, generate
from fuzz_run import Outcome, run_case
from fuzz_spaces import NO_DATA, SPACES

__all__ = ["Case", "HOSTILE", "NEAR_MISS", "NO_DATA", "Outcome", "SPACES", "generate", "run_case"]
