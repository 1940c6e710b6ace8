"""Bench: a compiled Program -> training and inference samples/s, per-node times, peak memory.

Input: a Program (compiled from a `.nn` file) and a batch size. Output: a
`BenchResult` — the median samples/s of full training steps (forward, loss,
backward and the train section's optimizer update, as `graphc run` does
them) and of inference (forward in eval mode of the declared outputs), a
per-node table of forward and backward milliseconds per step (like
`caffe time`, from the executor's `profile=` hook) and the plan's peak
buffer bytes. Data is random, of the declared shapes; nothing is read from
disk. A leaf module: nothing in the pipeline imports it.

Timing: `warmup` untimed steps (buffers, pools and BLAS threads settle), then
`repeats` runs of `steps` steps each; the median run counts. The per-node
table comes from separate profiled runs, so its timer calls never slow the
headline numbers.
"""
from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np

from graphc.program import Program
from graphc.runtime.feeds import random_feeds as draw
from graphc.runtime.parallel import ParallelStep, choose_parts, split_blocker
from graphc.training.config import default_settings
from graphc.training.optim import format_call, make_optimizer


@dataclass
class NodeTime:
    """Milliseconds per training step spent in one plan step."""

    node: str
    op: str
    forward_ms: float
    backward_ms: float


@dataclass
class BenchResult:
    """What `graphc bench` measures (see the module docstring)."""

    model: str
    batch: int
    steps: int
    repeats: int
    threads: int | None
    optimizer: str
    train_samples_per_s: float
    infer_samples_per_s: float
    train_ms_per_step: float
    infer_ms_per_step: float
    train_runs: list[float]            # samples/s of each repeat
    infer_runs: list[float]
    per_node: list[NodeTime]
    optimizer_ms: float                # per step, from the profiled runs
    peak_bytes: int
    activation_bytes: int
    params: int
    flops_per_sample: int
    parts: int = 1                     # the batch split across this many threads (1: serial step)
    split_note: str = ""               # why the step is (not) split
    rewrites: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """Return the result as JSON-ready data."""
        return asdict(self)


def random_feeds(program: Program, batch: int, seed: int = 0) -> dict:
    """Return random inputs and labels of the model's declared shapes, converted to its dtype."""
    feeds, _ = program.check_feeds(draw(program.graph, batch, seed), need_labels=True)
    return feeds


def optimizer_of(program: Program):
    """Return (name, kwargs, optimizer) from the train section (the default optimizer without one)."""
    name, kwargs = (program.graph.train or default_settings())["optimizer"].value
    return name, dict(kwargs), make_optimizer(name, program.params, **kwargs)


class TrainStep:
    """One training step as the trainer takes it: forward, loss, backward, optimizer update.

    With `parallel` (a ParallelStep), forward and backward run on the batch split
    across its threads; a profiled step is always the serial one.
    """

    def __init__(self, program: Program, feeds: dict, parallel: ParallelStep | None = None):
        self.program, self.feeds, self.parallel = program, feeds, parallel
        self.name, self.kwargs, self.optimizer = optimizer_of(program)
        self.param_names = list(program.params)

    def __call__(self, profile=None) -> float | None:
        program = self.program
        if self.parallel is not None and profile is None:
            values, grads = self.parallel.forward_backward(self.feeds)
        else:
            values, grads = program.forward_backward(self.feeds, train=True, checked=False,
                                                     input_grads=False, profile=profile)
        loss = program.loss_value(values) if program.graph.loss is not None else None
        started = time.perf_counter() if profile is not None else 0.0
        self.optimizer.step({p: grads[p] for p in self.param_names if p in grads})
        if profile is not None:
            profile[1]["<optimizer>"] = profile[1].get("<optimizer>", 0.0) + time.perf_counter() - started
        return loss


class InferStep:
    """One inference step: the declared outputs in eval mode (split across `parallel`'s threads, if given)."""

    def __init__(self, program: Program, feeds: dict, parallel: ParallelStep | None = None):
        self.program, self.parallel = program, parallel
        graph = program.graph
        self.feeds = {k: v for k, v in feeds.items() if k in graph.inputs}
        wanted = tuple(graph.outputs.values()) or ((graph.loss,) if graph.loss else ())
        if not graph.outputs:
            self.feeds = feeds
        self.wanted = wanted
        self.executor = program.executor(wanted, backward=False)
        self.batch = next(iter(feeds.values())).shape[0]

    def __call__(self, profile=None):
        if self.parallel is not None and profile is None:
            return self.parallel.forward(self.feeds, self.wanted)
        p = self.program
        return self.executor.forward(self.feeds, p.params, p.state, train=False, rng=p.rng,
                                     batch=self.batch, profile=profile)


def time_runs(step, steps: int, repeats: int, warmup: int) -> list[float]:
    """Return the seconds per step of each of `repeats` runs of `steps` calls, after warm-up."""
    for _ in range(warmup):
        step()
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(steps):
            step()
        runs.append((time.perf_counter() - started) / steps)
    return runs


@contextmanager
def blas_threads(threads: int | None):
    """Limit BLAS (and OpenMP) threads to `threads` inside the block; None leaves them as they are."""
    if threads is None:
        yield
        return
    # threadpoolctl is optional (the [train] extra): imported only when --threads asks for it.
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=threads):
        yield


def parallel_step(program: Program, threads: int | None, split: str = "auto") -> tuple[ParallelStep | None, str]:
    """Return (the ParallelStep that splits the batch, or None for the serial step; why) for `threads`
    cores and a split policy (runtime/parallel.choose_parts)."""
    parts = choose_parts(program.graph, threads, split)
    if parts > 1:
        return ParallelStep(program, parts), f"batch split across {parts} threads, BLAS at 1 thread each"
    blocker = split_blocker(program.graph)
    if blocker is not None:
        return None, f"serial step: {blocker}"
    if split == "blas":
        return None, "serial step (--split blas)"
    return None, "serial step (one thread)"


def bench(program: Program, batch: int = 100, *, steps: int = 50, warmup: int = 10, repeats: int = 5,
          threads: int | None = None, profile_steps: int | None = None, seed: int = 0,
          split: str = "auto") -> BenchResult:
    """Return the training and inference speed of a program at a batch size (see the module docstring).

    `threads`: the cores to use (None: all); `split` (auto, batch, blas): whether they
    run parts of the batch or BLAS threads (runtime/parallel.choose_parts).
    """
    feeds = random_feeds(program, batch, seed)
    parallel, note = parallel_step(program, threads, split)
    with blas_threads(threads), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        train = TrainStep(program, feeds, parallel)
        infer = InferStep(program, feeds, parallel)
        train_runs = time_runs(train, steps, repeats, warmup)
        infer_runs = time_runs(infer, steps, repeats, warmup)
        if parallel is not None:
            parallel.close()
        # The per-node table: separate, profiled steps (never mixed into the numbers above).
        n = profile_steps or max(1, min(steps, 20))
        fwd, bwd = {}, {}
        for _ in range(n):
            train(profile=(fwd, bwd))
    plan = program.executor_for_backward(input_grads=False).plan
    per_node = [NodeTime(s.node, s.op, 1e3 * fwd.get(s.node, 0.0) / n, 1e3 * bwd.get(s.node, 0.0) / n)
                for s in plan.forward]
    train_s, infer_s = statistics.median(train_runs), statistics.median(infer_runs)
    graph = program.graph
    flops = sum((plan.graph or graph).node(s.node).flops for s in plan.forward)
    return BenchResult(
        model=graph.model, batch=batch, steps=steps, repeats=repeats, threads=threads,
        optimizer=format_call(train.name, train.kwargs),
        train_samples_per_s=batch / train_s, infer_samples_per_s=batch / infer_s,
        train_ms_per_step=1e3 * train_s, infer_ms_per_step=1e3 * infer_s,
        train_runs=[batch / s for s in train_runs], infer_runs=[batch / s for s in infer_runs],
        per_node=per_node, optimizer_ms=1e3 * bwd.get("<optimizer>", 0.0) / n,
        peak_bytes=plan.peak_bytes(batch, program.dtype.itemsize),
        activation_bytes=plan.activation_bytes(batch, program.dtype.itemsize),
        params=sum(int(v.size) for v in program.params.values()), flops_per_sample=flops,
        parts=parallel.parts if parallel is not None else 1, split_note=note, rewrites=list(plan.rewrites))


def render(result: BenchResult) -> str:
    """Return the human-readable report of a BenchResult."""
    r = result
    lines = [f"{r.model}: batch {r.batch}, {r.optimizer}, {r.params:,} parameters, "
             f"{r.flops_per_sample / 1e6:.2f} MFLOP/sample forward"
             + (f", {r.threads} threads" if r.threads else ""),
             *([f"  {r.split_note}"] if r.split_note else []),
             f"  train      {r.train_samples_per_s:>10,.0f} samples/s   {r.train_ms_per_step:8.3f} ms/step"
             f"   (median of {r.repeats} x {r.steps} steps; runs {_spread(r.train_runs)})",
             f"  inference  {r.infer_samples_per_s:>10,.0f} samples/s   {r.infer_ms_per_step:8.3f} ms/step"
             f"   (runs {_spread(r.infer_runs)})",
             f"  peak buffer memory {_bytes(r.peak_bytes)} (without reuse {_bytes(r.activation_bytes)})",
             *[f"  {line}" for line in r.rewrites],
             "",
             "per node, ms per training step (the serial step, profiled separately):"]
    width = max([len(n.node) for n in r.per_node] + [8])
    lines.append(f"  {'node'.ljust(width)}  {'op':<14} {'forward':>9} {'backward':>9} {'total':>9}")
    total_f = total_b = 0.0
    for n in r.per_node:
        total_f += n.forward_ms
        total_b += n.backward_ms
        lines.append(f"  {n.node.ljust(width)}  {n.op:<14} {n.forward_ms:9.3f} {n.backward_ms:9.3f} "
                     f"{n.forward_ms + n.backward_ms:9.3f}")
    lines.append(f"  {'optimizer'.ljust(width)}  {'':<14} {'':>9} {r.optimizer_ms:9.3f} {r.optimizer_ms:9.3f}")
    lines.append(f"  {'total'.ljust(width)}  {'':<14} {total_f:9.3f} {total_b + r.optimizer_ms:9.3f} "
                 f"{total_f + total_b + r.optimizer_ms:9.3f}")
    return "\n".join(lines)


def _spread(runs: list[float]) -> str:
    return f"{min(runs):,.0f}..{max(runs):,.0f}" if len(runs) > 1 else f"{runs[0]:,.0f}"


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
