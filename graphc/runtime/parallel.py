"""Data-parallel steps: one batch split across threads, gradients summed (both cores for all the work).

Input: a Program, a number of parts, and a batch of feeds. Output: the
(values, grads) of one forward and backward pass over the whole batch, as
`Program.forward_backward` returns them, computed by `parts` executors on
consecutive slices of the batch at once, one per thread, BLAS at one thread
each; and the forward-only values of inference the same way.

Why. NumPy runs every ufunc, copy and strided loop on one core, and most of
these models' GEMMs are small enough that OpenBLAS runs them on one core
too: a serial step keeps about one of two cores busy. Splitting single
kernels over threads never paid (a fork/join per kernel, ~20-40 us of
wake-ups and GIL hand-offs, see bench/README.md); splitting the batch costs
one fork/join per step, and NumPy releases the GIL inside its loops, copies
and BLAS calls, so the halves really run at once. Measured (bench/README.md):
+30-45% on the conv nets on a quiet machine, 3-6x on every reference model under load
(`choose_parts`).

Exactness. Each part's objective is seeded with 1/N (N the whole batch), as
the serial step seeds it, so the parts' parameter gradients are sums of the
same per-sample terms and their sum is the serial gradient up to float
rounding (the order of the additions differs). Only models whose ops treat
samples independently can be split (`split_blocker` says why not): running
statistics (batchnorm normalises with the whole batch's statistics), or an
objective or node that reduces over the batch, keep the serial step.
Random ops (dropout) draw from one generator per part, seeded from the
program's generator each step: reproducible for a seed and a number of parts
(not the serial step's masks: hence the checkpoint records the parts).
"""
from __future__ import annotations

import os
import queue
import threading

import numpy as np

from graphc.diagnostics import GraphcError
from graphc.runtime.execute import Executor

# Ops that draw from ctx.rng (each part gets a generator of its own).
RANDOM_OPS = frozenset({"dropout"})
# Ops whose kernels mix samples (reductions over the batch aside, which types reveal).
BATCH_COUPLED_OPS = frozenset({"batchnorm"})


def cpu_count() -> int:
    """Return the CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def split_blocker(graph) -> str | None:
    """Return why a training step of `graph` cannot be split by samples, or None when it can.

    A split is exact when every op's output row i depends only on input row i
    (no running state: batchnorm needs the whole batch's statistics; no op that
    mixes samples), and the objective is either per-sample (the executor seeds
    it with 1/N) or a mean over the batch: a loss with a mean reduction, or a
    sum, difference or scaling of such means and of terms that do not depend on
    the data (weight penalties). Then each part's gradient, weighted by its
    share of the batch, sums to the whole batch's.
    """
    if graph.objective is None:
        return "the model has no objective to differentiate"
    if not graph.inputs and not graph.labels:
        return "the model reads no data (a loss over parameters only): there is no batch to split"
    if graph.state:
        owner = next(iter(graph.state.values())).owner
        return f"`{owner}` keeps running statistics (batchnorm needs the whole batch's statistics)"
    batched, data = set(), set()      # per-sample values; values that depend on the data at all
    means = set()                     # unbatched values that are means over the batch
    for name in graph.topological_order():
        node = graph.node(name)
        if node.kind in ("input", "label"):
            batched.add(name)
            data.add(name)
            continue
        if node.kind != "op" or not any(i in data for i in node.inputs):
            continue
        data.add(name)
        if node.op.name in BATCH_COUPLED_OPS:
            return f"`{name}` ({node.op.name}) mixes the samples of a batch"
        if node.type.batched:
            if any(i in data and i not in batched for i in node.inputs):
                return f"`{name}` ({node.op.name}) reads a value reduced over the batch"
            batched.add(name)
        elif _is_mean(node, batched, means, data):
            means.add(name)
        else:
            return f"`{name}` ({node.op.name}) reduces over the batch other than by a mean"
    if graph.objective not in batched and graph.objective not in means and graph.objective in data:
        return f"the objective `{graph.objective}` is not a mean over the batch"
    return None


def _is_mean(node, batched: set, means: set, data: set) -> bool:
    """True when an unbatched op node is a mean over the batch: a mean-reduced loss of per-sample values,
    or a sum/difference/negation of means and data-free terms, or a mean scaled by a data-free factor."""
    inputs = node.inputs
    name = node.op.name
    if node.op.family == "loss":
        return node.attrs.get("reduction", "mean") in ("mean", "batchmean") and \
            all(i in batched or i not in data for i in inputs)
    if name in ("add", "sub", "neg"):
        return all(i in means or i not in data for i in inputs)
    if name == "mul":
        return sum(i in means for i in inputs) == 1 and all(i in means or i not in data for i in inputs)
    if name == "div":
        return len(inputs) == 2 and inputs[0] in means and inputs[1] not in data
    return False


def choose_parts(graph, threads: int | None, split: str = "auto") -> int:
    """Return into how many parts a training batch is split (1: the serial step).

    `threads` is the number of cores to use (None: all this process may use).
    `split`: "blas" never splits (the cores go to BLAS threads), "batch" and
    "auto" split every model that can be split exactly (`split_blocker`).
    Measured with bench/data_parallel.py on the shared 2-core VM under load
    8-17 (2026-12-02): split/serial 4.2x on LeNet-5, 3.3x on SimpleConvNet and
    6.0x on the MLP (two BLAS threads stall whenever one is descheduled; one
    thread per part does not). An earlier probe on a quieter machine had the
    MLP 11% slower split: on a quiet machine, `--split blas` may suit GEMM-only models.
    """
    threads = cpu_count() if threads is None else threads
    if threads < 2 or split == "blas" or split_blocker(graph) is not None:
        return 1
    return threads


class _Worker:
    """A thread that runs the jobs it is handed, one at a time, and hands back their results."""

    def __init__(self):
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.done: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._serve, daemon=True, name="graphc-part")
        self.thread.start()

    def _serve(self):
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                self.done.put((True, job()))
            except BaseException as error:      # handed to the caller, raised there
                self.done.put((False, error))

    def result(self):
        ok, value = self.done.get()
        if not ok:
            raise value
        return value


class SingleBlas:
    """Inside the block BLAS runs one thread per call (each part is already a thread); restores it after.

    threadpoolctl's controller is made once (it scans the loaded libraries, ~ms);
    entering and leaving then cost one C call per BLAS library. Without
    threadpoolctl the block changes nothing (still correct, the cores are oversubscribed).
    """

    def __init__(self):
        try:
            # threadpoolctl is optional (the [train] extra): only data-parallel steps need it.
            from threadpoolctl import ThreadpoolController
        except ImportError:
            self.libs = []
        else:
            self.libs = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
        self._saved: list[int] = []

    def __enter__(self):
        self._saved = [lib.num_threads for lib in self.libs]
        for lib in self.libs:
            lib.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        for lib, n in zip(self.libs, self._saved):
            lib.set_num_threads(n)
        return False


class ParallelStep:
    """Training (and inference) steps of a Program on its batch split into `parts` consecutive slices.

    Use as `step.forward_backward(feeds)`; `close()` (or a `with` block) ends the threads.
    `gather` names values (beyond the objective and the plan's kept ones) that the
    caller reads back from the whole batch, e.g. the classifier scores accuracy is counted on.
    """

    def __init__(self, program, parts: int, gather: tuple[str, ...] = ()):
        blocker = split_blocker(program.graph)
        if blocker is not None:
            raise GraphcError(f"cannot split the batch of `{program.graph.model}` across threads: {blocker}",
                              help="use one thread (--threads 1) or let graphc choose (omit --threads)")
        if parts < 2:
            raise GraphcError("a data-parallel step needs at least 2 parts", help="use --threads 2 or more")
        self.program, self.parts = program, parts
        main = program.executor_for_backward(input_grads=False)
        self.train_executors = [main] + [Executor(main.graph, main.plan, program.dtype) for _ in range(parts - 1)]
        self.gather = tuple(dict.fromkeys((main.plan.objective, *main.plan.keep, *gather)))
        self.random = any(n.op.name in RANDOM_OPS for n in program.graph.nodes() if n.kind == "op")
        self.blas = SingleBlas()
        self.workers = [_Worker() for _ in range(parts - 1)]
        self._infer: dict = {}

    # ---- the training step --------------------------------------------------------
    def forward_backward(self, feeds: dict, *, train: bool = True):
        """Return (values, grads) of the whole batch: the gathered values concatenated over the
        parts (feeds, parameters and constants as given), and the parameter gradients summed."""
        program = self.program
        batch = next(iter(feeds.values())).shape[0]
        bounds = self._bounds(batch)
        rngs = self._rngs()
        per_sample = program.graph.type_of(program.graph.objective).batched

        def part(k):
            lo, hi = bounds[k]
            executor = self.train_executors[k]
            piece = {name: value[lo:hi] for name, value in feeds.items()}
            values = executor.forward(piece, program.params, program.state, train=train, rng=rngs[k],
                                      batch=hi - lo)
            objective = values[executor.plan.objective]
            # The serial step seeds a per-sample objective with 1/N; a mean over the part's
            # samples weighs as the part's share of the batch.
            weight = 1.0 / batch if per_sample else (hi - lo) / batch
            grads = executor.backward(values, np.full(objective.shape, weight, program.dtype))
            return values, grads

        results = self._run(part, len(bounds))
        names = self.train_executors[0].plan.grad_targets
        grads = {}
        for name in names:
            present = [g[name] for _, g in results if name in g]
            if present:
                total = np.add(present[0], present[1]) if len(present) > 1 else np.array(present[0])
                for more in present[2:]:
                    total += more
                grads[name] = total
        # A NaN guard names the node whose backward turned a finite gradient non-finite: it reads
        # every intermediate gradient, which the parts do not hand back. Then (rarely) the serial
        # step recomputes the batch, so the error names the node (a sum is the cheap test).
        with np.errstate(over="ignore", invalid="ignore"):
            finite = all(np.isfinite(np.sum(g)) for g in grads.values())
        if not finite:
            return program.forward_backward(feeds, train=train, checked=False, input_grads=False)
        values = dict(feeds)
        values.update(program.params)
        for name in self.gather:
            parts = [v[name] for v, _ in results if name in v]
            if not parts:
                continue
            t = self.train_executors[0].graph.type_of(name)
            if t is not None and t.batched:
                values[name] = np.concatenate(parts)
            else:   # a mean over each part: the whole batch's is their weighted sum
                shares = [(hi - lo) / batch for lo, hi in bounds]
                values[name] = np.asarray(sum(w * p for w, p in zip(shares, parts)), program.dtype)
        return values, grads

    # ---- inference ------------------------------------------------------------------
    def forward(self, feeds: dict, wanted: tuple[str, ...]) -> dict:
        """Return {node: whole-batch value} of the `wanted` nodes in eval mode, the batch split over the parts."""
        executors = self._infer.get(wanted)
        if executors is None:
            first = self.program.executor(wanted, backward=False)
            executors = self._infer[wanted] = [first] + [Executor(first.graph, first.plan, self.program.dtype)
                                                         for _ in range(self.parts - 1)]
        program = self.program
        batch = next(iter(feeds.values())).shape[0]
        bounds = self._bounds(batch)

        def part(k):
            lo, hi = bounds[k]
            piece = {name: value[lo:hi] for name, value in feeds.items()}
            values = executors[k].forward(piece, program.params, program.state, train=False, rng=program.rng,
                                          batch=hi - lo)
            return {name: values[name] for name in wanted}

        results = self._run(part, len(bounds))
        return {name: np.concatenate([r[name] for r in results]) for name in wanted}

    # ---- the threads ----------------------------------------------------------------
    def _bounds(self, batch: int) -> list[tuple[int, int]]:
        """Consecutive slices, as equal as they come (a batch smaller than the parts uses fewer)."""
        parts = max(1, min(self.parts, batch))
        edges = [batch * k // parts for k in range(parts + 1)]
        return list(zip(edges[:-1], edges[1:]))

    def _rngs(self) -> list:
        """One generator per part, seeded from the program's: reproducible for a seed and a part count."""
        if not self.random:
            return [self.program.rng] * self.parts     # never drawn from
        seeds = self.program.rng.integers(0, 2 ** 63, size=self.parts)
        return [np.random.default_rng(int(s)) for s in seeds]

    def _run(self, part, count: int) -> list:
        """Return [part(0), ..., part(count - 1)], part 0 on this thread, the others on the workers."""
        with self.blas:
            for k in range(1, count):
                self.workers[k - 1].jobs.put(lambda k=k: part(k))
            first_error, results = None, []
            try:
                results.append(part(0))
            except BaseException as error:
                first_error = error
            for k in range(1, count):     # always collect every worker: none may still be writing
                try:
                    results.append(self.workers[k - 1].result())
                except BaseException as error:
                    first_error = first_error or error
        if first_error is not None:
            raise first_error
        return results

    def close(self) -> None:
        """End the worker threads; returns None."""
        for worker in self.workers:
            worker.jobs.put(None)
        self.workers = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def training_step(program, threads: int | None, split: str = "auto", gather: tuple[str, ...] = ()):
    """Return (parts, forward_backward): the step a trainer or bench calls as forward_backward(feeds).

    With one part it is the Program's own serial step (BLAS threads left as
    they are); with more, a ParallelStep's (close it with `close_step`).
    """
    parts = choose_parts(program.graph, threads, split)
    if parts < 2:
        def serial(feeds, *, train=True):
            return program.forward_backward(feeds, train=train, checked=False, input_grads=False)
        return 1, serial
    step = ParallelStep(program, parts, gather)
    return parts, step.forward_backward


def close_step(forward_backward) -> None:
    """End the threads of a step `training_step` returned (nothing to do for a serial one)."""
    owner = getattr(forward_backward, "__self__", None)
    if isinstance(owner, ParallelStep):
        owner.close()
