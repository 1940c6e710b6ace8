"""The fuzzer's driver: run one generated case through check, plan and a forward/backward pass; classify it.

`run_case(case)` writes the files to a temporary folder, checks the main file in-process
and, for a valid program, builds the plan and runs one forward and backward pass in
float64 on random feeds of batch 2 (plus an optimizer step and the schedule when the
program has a train section). A program with search spaces goes the way `graphc check`
sends it: `check_spaces` (the model at every choice's options and every range's ends),
the space table `graphc check` prints, then the file compiled directly must refuse
(asking to search or `--set` the values), and filled at the base values through `--set`
texts must give the same graph; the pass then runs on the model at its base values.
Its `Outcome` says "ok", "diagnostic" (a GraphcError at check time, as expected of a
near-miss), "late" (check accepted, the run raised a GraphcError), "crash" (any other
exception: a bug) or "slow" (over the limit of CPU seconds, or WALL_FACTOR times that in
wall-clock time; interrupted by a signal).
"""
from __future__ import annotations

import signal
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fuzz_case import Case

from graphc.cli.check import space_table
from graphc.diagnostics import Diagnostics, GraphcError
from graphc.language.parse import parse_program
from graphc.language.spaces import all_spaces, find_spaces
from graphc.program import Program, check_file
from graphc.runtime.feeds import random_feeds
from graphc.search.variants import base_choice, check_spaces
from graphc.tools.summary import render_summary
from graphc.training.optim import make_optimizer, make_schedule

WALL_FACTOR = 8      # a case may take this many times its CPU limit in wall-clock time (5 agents share 2 cores)
RUN_ELEMENTS = 2_000_000   # a valid program is run only if its tensors hold fewer elements than this

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



def _check(path: Path, model: str | None, out: Outcome):
    """Return the typed graph of the program at `path` as `graphc check` makes it (spaces at their base values)."""
    modules = parse_program(path)
    diagnostics = Diagnostics()
    if not (find_spaces(modules, diagnostics) or diagnostics.has_errors):
        return check_file(path, model)
    out.stage = "spaces"
    graph, spaces, config, notes = check_spaces(modules, model)
    space_table(spaces, config, notes)
    try:   # compiled directly, a file with spaces must ask for a search or `--set` values
        check_file(path, model)
    except GraphcError as error:
        for d in error.diagnostics:
            d.render()
    else:
        raise Mismatch("check_file compiled a file with search spaces")
    written = {s.name: _written(s, base_choice(s)) for s in all_spaces(spaces)}
    again = check_file(path, model, space_values=written)   # `graphc run --set NAME=VALUE` at the base values
    if sorted(again.outputs) != sorted(graph.outputs) or len(list(again.nodes())) != len(list(graph.nodes())):
        raise Mismatch("the model filled through --set at the base values differs from check_spaces' graph")
    return graph


def _written(space, value) -> str:
    """Return the `--set` text of a space's value: the chosen option's label, or the number."""
    return space.labels[value] if space.kind == "choice" else repr(value)


def _stages(path: Path, model: str | None, seed: int, out: Outcome) -> None:
    """Check the program at `path`; if valid, run it forward and backward (and one optimizer step)."""
    graph = _check(path, model, out)
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
            # The limit can fall just as the case ends, even inside this cleanup (a handler runs
            # between any two bytecodes): retry until the timers are off. Seen once in 100,000 cases.
            while True:
                try:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    signal.setitimer(signal.ITIMER_PROF, 0)
                    signal.signal(signal.SIGALRM, previous[0])
                    signal.signal(signal.SIGPROF, previous[1])
                    break
                except CaseTimeout:
                    out.status = "slow"
        out.seconds = time.process_time() - cpu
        if out.seconds > limit and out.status != "crash":
            out.status = "slow"
    return out
