"""Which is faster per model: the batch split across threads, or the serial step with BLAS threads?

    python -m bench.data_parallel [--models lenet5,simple_convnet,mlp] [--repeats 7] [--threads 2] [--no-torch]

The evidence behind `runtime/parallel.choose_parts`'s rule. It times, interleaved
with pauses (see compare.settle), full training steps three ways: the serial step
with `--threads` BLAS threads, the data-parallel step (`ParallelStep`: the batch
split into `--threads` parts, one thread each, BLAS at one thread), and PyTorch
eager; and prints the medians and ratios. Models the split cannot handle exactly
(batchnorm, reductions over the batch) are reported and skipped.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

from bench import compare
from graphc import compile_file
from graphc.runtime.parallel import ParallelStep, split_blocker
from graphc.tools.bench import TrainStep, blas_threads, random_feeds

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="lenet5,simple_convnet,mlp")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-torch", action="store_true")
    args = p.parse_args(argv)
    torch = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(args.threads)
        except ImportError:
            torch = None
    print(f"batch {args.batch}, {args.threads} threads; median (best) samples/s of {args.repeats} interleaved runs")
    for name in args.models.split(","):
        program = compile_file(ROOT / "models" / f"{name}.nn")
        blocker = split_blocker(program.graph)
        if blocker is not None:
            print(f"{name:15s} not split: {blocker}")
            continue
        feeds = random_feeds(program, args.batch)
        serial = TrainStep(program, feeds)
        split_program = compile_file(ROOT / "models" / f"{name}.nn")
        split = TrainStep(split_program, feeds, ParallelStep(split_program, args.threads))
        contenders = {"serial": serial, "split": split}
        if torch is not None:
            contenders["torch"] = compare.TorchSteps(name, program, serial, feeds).train
        steps = {"mlp": 100, "lenet5": 30, "simple_convnet": 20}.get(name, 20)
        runs = {k: [] for k in contenders}
        with blas_threads(args.threads), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for _ in range(args.repeats):
                for who, step in contenders.items():
                    compare.settle(step)
                    runs[who].append(args.batch / compare.timed(step, steps))
        split.parallel.close()
        cells = "  ".join(f"{who} {statistics.median(v):8,.0f} ({max(v):,.0f})" for who, v in runs.items())
        ratio = f"  split/serial {statistics.median(runs['split']) / statistics.median(runs['serial']):.2f}"
        if torch is not None:
            t = statistics.median(runs["torch"])
            ratio += (f"  vs torch: serial {statistics.median(runs['serial']) / t:.2f},"
                      f" split {statistics.median(runs['split']) / t:.2f}")
        print(f"{name:15s} {cells}{ratio}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
