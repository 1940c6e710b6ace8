"""Probe: what would a data-parallel training step buy? (evidence for an executor change)

    python -m bench.data_parallel [--models lenet5,simple_convnet,mlp] [--repeats 7] [--no-torch]

NumPy runs each kernel on one core, and most of graphc's GEMMs are small
enough that OpenBLAS runs them on one core too, so a training step uses about
one of this machine's two cores. Splitting single kernels over Python threads
did not pay (a fork/join per kernel costs ~40 us in thread wake-ups and GIL
hand-offs; see bench/README.md). This probe splits the *batch* instead: two
executors (two Programs sharing one params dict), each running forward and
backward on half of the batch in its own thread with BLAS limited to one
thread, then the two halves' parameter gradients averaged and one optimizer
step taken. One fork/join per step.

It times, interleaved with pauses (see compare.settle): the serial step as
`graphc run` takes it (BLAS threads as given), the data-parallel step, and
PyTorch. Valid only for models whose ops treat samples independently (no
batchnorm in training mode); dropout would need one generator per half.
"""
from __future__ import annotations

import argparse
import queue
import statistics
import sys
import threading
from pathlib import Path

import numpy as np

from bench import compare
from graphc import compile_file
from graphc.program import Program
from graphc.tools.bench import TrainStep, blas_threads, random_feeds

ROOT = Path(__file__).resolve().parent.parent


class DataParallelStep:
    """Forward + backward of each half batch in its own thread, then one optimizer step."""

    def __init__(self, program: Program, feeds: dict, optimizer):
        self.programs = [program, Program(program.graph, dtype=str(program.dtype))]
        self.programs[1].params = program.params          # one set of weights
        n = next(iter(feeds.values())).shape[0]
        self.halves = [{k: v[:n // 2] for k, v in feeds.items()}, {k: v[n // 2:] for k, v in feeds.items()}]
        self.weights = [(n // 2) / n, (n - n // 2) / n]
        self.optimizer, self.names = optimizer, list(program.params)
        self._jobs, self._done = queue.SimpleQueue(), queue.SimpleQueue()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            job = self._jobs.get()
            try:
                self._done.put(job())
            except BaseException as error:      # handed to the caller
                self._done.put(error)

    def _half(self, i):
        return self.programs[i].forward_backward(self.halves[i], train=True, checked=False, input_grads=False)

    def __call__(self):
        self._jobs.put(lambda: self._half(1))
        _, first = self._half(0)
        second = self._done.get()
        if isinstance(second, BaseException):
            raise second
        _, second = second
        grads = {}
        for name in self.names:
            g = first[name] * self.weights[0]
            g += second[name] * self.weights[1]
            grads[name] = g
        self.optimizer.step(grads)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="lenet5,simple_convnet,mlp")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--no-torch", action="store_true")
    args = p.parse_args(argv)
    torch = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(2)
        except ImportError:
            torch = None
    print(f"batch {args.batch}; median (best) samples/s of {args.repeats} interleaved runs")
    for name in args.models.split(","):
        program = compile_file(ROOT / "models" / f"{name}.nn")
        feeds = random_feeds(program, args.batch)
        serial = TrainStep(program, feeds)
        dp_program = compile_file(ROOT / "models" / f"{name}.nn")
        dp_train = TrainStep(dp_program, feeds)            # its optimizer, for the parallel step
        parallel = DataParallelStep(dp_program, feeds, dp_train.optimizer)
        contenders = {"serial": (serial, None), "data-parallel": (parallel, 1)}
        if torch is not None:
            contenders["torch"] = (compare.TorchSteps(name, program, serial, feeds).train, None)
        steps = {"mlp": 100, "lenet5": 30, "simple_convnet": 20}.get(name, 20)
        runs = {k: [] for k in contenders}
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for _ in range(args.repeats):
                for who, (step, blas) in contenders.items():
                    with blas_threads(blas):
                        compare.settle(step)
                        runs[who].append(args.batch / compare.timed(step, steps))
        cells = "  ".join(f"{who} {statistics.median(v):8,.0f} ({max(v):,.0f})" for who, v in runs.items())
        ratio = ""
        if torch is not None:
            t = statistics.median(runs["torch"])
            ratio = (f"  ratio serial {statistics.median(runs['serial']) / t:.2f},"
                     f" data-parallel {statistics.median(runs['data-parallel']) / t:.2f}")
        print(f"{name:15s} {cells}{ratio}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
