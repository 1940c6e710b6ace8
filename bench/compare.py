"""graphc against PyTorch on the same CPU, in one process, interleaved.

    python -m bench.compare [--repeats 7] [--batch 100] [--threads N] [--split auto|batch|blas]
                            [--separate | --both] [--quick] [--json FILE]

Builds the three reference models in graphc (models/mlp.nn, models/lenet5.nn,
models/simple_convnet.nn) and the same networks in PyTorch (same layer sizes,
same initial weights, the optimizer of each train section, float32, CPU),
then times training steps (forward, loss, backward, optimizer update) and
inference (forward + softmax in eval mode) alternately — graphc, torch,
graphc, torch, ... — so both see the same machine load. Each timed run is
`--steps` steps after a short pause and two untimed steps (see `settle`: the
other side's spinning thread pools would otherwise slow it down); the table
shows the median run (and the best) as samples/s and the graphc/PyTorch
ratio of the medians. graphc takes its steps as `graphc run` does: with
`--threads` cores (default: all), each batch split across threads
(runtime/parallel.py; `--split blas` gives the cores to BLAS instead).

`--separate` runs each system in a process of its own instead (one
with OpenBLAS's thread pool, one with PyTorch's OpenMP pool, as each is used
alone), still alternating: the parent asks the graphc process for one timed
run, then the torch process, and so on, each waiting idle while the other
runs. `--both` prints the in-process table and then the separate one.

It then times compile speed: `check_source` (parse + build + infer, in
process) on generated chains of linear/relu layers with a residual `+` every
few layers at 1,000 / 10,000 / 50,000 graph nodes, and `python -m graphc
check models/lenet5.nn` as a whole process (median of 5), and says whether
the time per node stays flat (linear growth).

Without torch it prints graphc's numbers only. The machine may be shared:
compare ratios from one run, never absolute numbers across runs.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from graphc import compile_file
from graphc.ops.kernels import retain_freed_memory
from graphc.tools.bench import InferStep, TrainStep, blas_threads, parallel_step, random_feeds

ROOT = Path(__file__).resolve().parent.parent

MODELS = ("mlp", "lenet5", "simple_convnet")


# ---- the same networks in PyTorch -----------------------------------------------------

def torch_model(name: str):
    """Return the torch.nn.Sequential of a reference model (layer sizes as in models/NAME.nn)."""
    import torch.nn as nn
    if name == "mlp":
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                             nn.Linear(256, 10))
    if name == "lenet5":
        return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                             nn.Linear(84, 10))
    if name == "simple_convnet":
        return nn.Sequential(nn.Conv2d(1, 30, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(30 * 12 * 12, 100), nn.ReLU(), nn.Linear(100, 10))
    raise KeyError(name)


def copy_weights(program, model) -> None:
    """Give the torch model graphc's initial weights (linear weights are stored [in, out] in graphc)."""
    import torch
    ours = list(program.params.items())
    theirs = list(model.parameters())
    if len(ours) != len(theirs):
        raise SystemExit(f"{program.graph.model}: graphc has {len(ours)} parameters, torch {len(theirs)}")
    with torch.no_grad():
        for (name, value), p in zip(ours, theirs):
            v = value.T if value.ndim == 2 else value
            if tuple(v.shape) != tuple(p.shape):
                raise SystemExit(f"{name}: graphc {list(v.shape)} vs torch {list(p.shape)}")
            p.copy_(torch.from_numpy(np.ascontiguousarray(v)))


def torch_optimizer(name: str, kwargs: dict, params):
    """Return the torch.optim optimizer of a graphc optimizer name and its keywords."""
    import torch

    from graphc.training.optim import OPTIMIZERS
    h = OPTIMIZERS[name][1].complete(kwargs)
    if name in ("sgd", "momentum", "nesterov"):
        return torch.optim.SGD(params, lr=h["lr"], momentum=h["momentum"], dampening=h["dampening"],
                               nesterov=h["nesterov"])
    if name == "adam":
        return torch.optim.Adam(params, lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=h["eps"],
                                amsgrad=h["amsgrad"])
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=h["lr"], lr_decay=h["lr_decay"], eps=h["eps"],
                                   initial_accumulator_value=h["initial_accumulator_value"])
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=h["lr"], alpha=h["alpha"], eps=h["eps"],
                                   momentum=h["momentum"], centered=h["centered"])
    raise KeyError(name)


class TorchSteps:
    """A torch training step and inference step on fixed data (the same arrays graphc gets)."""

    def __init__(self, name: str, program, train_step, feeds):
        import torch
        import torch.nn.functional as F
        self.torch, self.F = torch, F
        self.model = torch_model(name)
        copy_weights(program, self.model)
        self.optimizer = torch_optimizer(train_step.name, train_step.kwargs, self.model.parameters())
        graph = program.graph
        self.x = torch.from_numpy(feeds[graph.inputs[0]].copy())
        self.y = torch.from_numpy(feeds[graph.labels[0]].copy())

    def train(self) -> float:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.F.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def infer(self):
        self.model.eval()
        with self.torch.inference_mode():
            return self.F.softmax(self.model(self.x), dim=1)


# ---- timing ------------------------------------------------------------------------------

def timed(step, steps: int) -> float:
    """Return seconds per call of `step` over `steps` calls."""
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - started) / steps


def settle(step, pause: float = 0.25, steps: int = 2) -> None:
    """Let the other contender's thread pools go to sleep, then warm this one up again.

    After a BLAS call OpenBLAS's worker threads keep polling (sched_yield) for up to
    ~0.1 s, and OpenMP's spin too: right after a graphc run, torch measured ~20%
    slower than after a pause (MLP 37k vs 46k samples/s, LeNet-5 9.1k vs 11.5k).
    A pause before every timed run, and a couple of untimed steps, gives both sides
    the same start.
    """
    time.sleep(pause)
    for _ in range(steps):
        step()


def graphc_steps(name: str, batch: int, threads: int | None, split: str):
    """Return (program, TrainStep, InferStep, how the step runs) of a reference model, as `graphc run` steps."""
    program = compile_file(ROOT / "models" / f"{name}.nn")
    feeds = random_feeds(program, batch, seed=0)
    parallel, note = parallel_step(program, threads, split)
    return program, TrainStep(program, feeds, parallel), InferStep(program, feeds, parallel), note, feeds


def compare_model(name: str, batch: int, steps: int, warmup: int, repeats: int, use_torch: bool,
                  threads: int | None = None, split: str = "auto") -> dict:
    """Return samples/s of every timed run of graphc and torch, training and inference, interleaved in this process."""
    program, train, infer, note, feeds = graphc_steps(name, batch, threads, split)
    contenders = {"graphc": {"train": train, "infer": infer}}
    if use_torch:
        t = TorchSteps(name, program, train, feeds)
        contenders["torch"] = {"train": t.train, "infer": t.infer}
    runs = {who: {"train": [], "infer": []} for who in contenders}
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for kind in ("train", "infer"):
            for steps_of in contenders.values():
                for _ in range(warmup):
                    steps_of[kind]()
            for _ in range(repeats):
                for who, steps_of in contenders.items():
                    settle(steps_of[kind])
                    runs[who][kind].append(batch / timed(steps_of[kind], steps))
    if train.parallel is not None:
        train.parallel.close()
    return {"model": name, "optimizer": f"{train.name}({', '.join(f'{k}={v}' for k, v in train.kwargs.items())})",
            "runs": runs, "step": note}


# ---- each system in a process of its own ----------------------------------------------------

def serve(system: str, name: str, batch: int, threads: int, split: str) -> int:
    """Answer timing requests on stdin ("train STEPS", "infer STEPS", "quit") with samples/s lines.

    The process holds one system only: graphc never imports torch, torch runs
    with graphc's initial weights (compiled here, never run by graphc).
    """
    retain_freed_memory()
    if system == "torch":
        import torch
        torch.set_num_threads(threads)
        program = compile_file(ROOT / "models" / f"{name}.nn")
        feeds = random_feeds(program, batch, seed=0)
        t = TorchSteps(name, program, TrainStep(program, feeds), feeds)
        steps_of = {"train": t.train, "infer": t.infer}
        print("ready torch", flush=True)
    else:
        _, train, infer, note, _ = graphc_steps(name, batch, threads, split)
        steps_of = {"train": train, "infer": infer}
        print(f"ready {note}", flush=True)
    with blas_threads(threads), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for line in sys.stdin:
            words = line.split()
            if not words or words[0] == "quit":
                break
            kind, steps = words[0], int(words[1])
            if len(words) > 2:                       # warm-up steps first
                for _ in range(int(words[2])):
                    steps_of[kind]()
            settle(steps_of[kind], pause=0.0)
            print(batch / timed(steps_of[kind], steps), flush=True)
    return 0


class Server:
    """A `serve` process of one system, asked for one timed run at a time."""

    def __init__(self, system: str, name: str, batch: int, threads: int, split: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.compare", "--serve", system, "--models", name, "--batch", str(batch),
             "--threads", str(threads), "--split", split],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        self.ready = self.process.stdout.readline().strip()
        if not self.ready.startswith("ready"):
            raise SystemExit(f"the {system} process for {name} did not start: {self.ready!r}")

    def run(self, kind: str, steps: int, warmup: int = 0) -> float:
        self.process.stdin.write(f"{kind} {steps} {warmup}\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.write("quit\n")
        self.process.stdin.close()
        self.process.wait(timeout=60)


def compare_separate(name: str, batch: int, steps: int, warmup: int, repeats: int, use_torch: bool,
                     threads: int, split: str = "auto") -> dict:
    """Return samples/s of every timed run, each system in its own process, alternating runs."""
    servers = {"graphc": Server("graphc", name, batch, threads, split)}
    if use_torch:
        servers["torch"] = Server("torch", name, batch, threads, split)
    runs = {who: {"train": [], "infer": []} for who in servers}
    try:
        for kind in ("train", "infer"):
            for server in servers.values():
                server.run(kind, 1, warmup)
            for _ in range(repeats):
                for who, server in servers.items():
                    time.sleep(0.25)            # the other process's pools go to sleep (see settle)
                    runs[who][kind].append(server.run(kind, steps))
    finally:
        for server in servers.values():
            server.close()
    program = compile_file(ROOT / "models" / f"{name}.nn")
    opt_name, kwargs = (program.graph.train["optimizer"].value if program.graph.train else ("sgd", {}))
    return {"model": name, "optimizer": f"{opt_name}({', '.join(f'{k}={v}' for k, v in dict(kwargs).items())})",
            "runs": runs, "step": servers["graphc"].ready.removeprefix("ready ")}


def summarise(result: dict) -> dict:
    """Add medians, bests and graphc/torch ratios of the medians to a compare_model result."""
    out = {"model": result["model"], "optimizer": result["optimizer"], "step": result.get("step", "")}
    for who, kinds in result["runs"].items():
        for kind, values in kinds.items():
            out[f"{who}_{kind}_median"] = statistics.median(values)
            out[f"{who}_{kind}_best"] = max(values)
    if "torch" in result["runs"]:
        for kind in ("train", "infer"):
            out[f"{kind}_ratio"] = out[f"graphc_{kind}_median"] / out[f"torch_{kind}_median"]
    return out


# ---- compile speed -------------------------------------------------------------------------

def chain_source(nodes: int, width: int = 16, every: int = 3) -> str:
    """Return a `.nn` model of about `nodes` graph nodes: linear -> relu layers, with a residual
    `+` joining every `every` layers to the last join (a long chain with skip connections)."""
    lines = ["# generated by bench/compare.py: a long chain of linear/relu with residual adds",
             "model chain {", f"  input x: [{width}]"]
    prev = skip = "x"
    count, i = 1, 0
    while count < nodes:
        i += 1
        lines.append(f"  h{i} = linear({prev}, {width}) -> relu")
        count += 2
        prev = f"h{i}"
        if i % every == 0 and count < nodes:
            lines.append(f"  r{i} = {prev} + {skip}")
            count += 1
            prev = skip = f"r{i}"
    lines += [f"  output y = {prev}", "}"]
    return "\n".join(lines) + "\n"


def compile_speed(sizes, repeats: int, process_repeats: int) -> dict:
    """Return in-process check times of generated models and the `graphc check` process time."""
    from graphc.program import check_source
    rows = []
    for n in sizes:
        text = chain_source(n)
        times, nodes = [], 0
        for _ in range(repeats):
            started = time.perf_counter()
            graph = check_source(text, f"<chain {n}>")
            times.append(time.perf_counter() - started)
            nodes = graph.nx.number_of_nodes()
            del graph
        t = statistics.median(times)
        rows.append({"target": n, "nodes": nodes, "lines": text.count("\n"), "seconds": t,
                     "us_per_node": 1e6 * t / nodes, "runs": times})
    process = []
    for _ in range(process_repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "graphc", "check", str(ROOT / "models" / "lenet5.nn")],
                       check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        process.append(time.perf_counter() - started)
    growth = rows[-1]["us_per_node"] / rows[0]["us_per_node"] if len(rows) > 1 else 1.0
    return {"chains": rows, "lenet5_process_seconds": statistics.median(process), "lenet5_process_runs": process,
            "per_node_growth": growth, "linear": growth < 1.5}


# ---- report -------------------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def render(env: dict, rows: list[dict], compile_rows: dict | None, form: str = "one process, interleaved") -> str:
    """Return the report: the comparison table (`form` says how it was timed), then compile speed."""
    lines = [f"graphc vs PyTorch — {env['date']} — {form}",
             f"CPU: {env['cpu']} ({env['cpus']} logical CPUs); threads: {env['threads']}; "
             f"NumPy {env['numpy']}" + (f", PyTorch {env['torch']}" if env.get("torch") else ", PyTorch not available"),
             f"load average before: {env.get('load', '?')}",
             f"batch {env['batch']}, float32; median of {env['repeats']} interleaved runs of {env['steps']} steps "
             f"(best in brackets); samples/s", ""]
    has_torch = env.get("torch") is not None
    head = f"{'model':<15} {'optimizer':<27} {'train graphc':>16}"
    if has_torch:
        head += f" {'train torch':>16} {'ratio':>6}"
    head += f" {'infer graphc':>17}"
    if has_torch:
        head += f" {'infer torch':>17} {'ratio':>6}"
    lines += [head, "-" * len(head)]
    for r in rows:
        line = f"{r['model']:<15} {r['optimizer']:<27} {_cell(r, 'graphc_train'):>16}"
        if has_torch:
            line += f" {_cell(r, 'torch_train'):>16} {r['train_ratio']:>6.2f}"
        line += f" {_cell(r, 'graphc_infer'):>17}"
        if has_torch:
            line += f" {_cell(r, 'torch_infer'):>17} {r['infer_ratio']:>6.2f}"
        lines.append(line)
    lines += [f"  {r['model']}: graphc {r['step']}" for r in rows if r.get("step")]
    if compile_rows:
        lines += ["", "compile speed: check_source (parse + build + infer), in process, median",
                  f"{'target':>8} {'nodes':>8} {'seconds':>9} {'us/node':>9}"]
        for c in compile_rows["chains"]:
            lines.append(f"{c['target']:>8,} {c['nodes']:>8,} {c['seconds']:>9.3f} {c['us_per_node']:>9.1f}")
        verdict = "linear" if compile_rows["linear"] else "worse than linear"
        lines.append(f"time per node grows {compile_rows['per_node_growth']:.2f}x from the smallest to the "
                     f"largest model: {verdict}")
        lines.append(f"`python -m graphc check models/lenet5.nn` as a process: "
                     f"{compile_rows['lenet5_process_seconds']:.3f} s (median of {len(compile_rows['lenet5_process_runs'])})")
    return "\n".join(lines)


def _cell(r: dict, key: str) -> str:
    return f"{r[key + '_median']:,.0f} ({r[key + '_best']:,.0f})"


def main(argv=None) -> int:
    retain_freed_memory()   # as `graphc run` and `graphc bench` do: freed step arrays stay in the heap
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=7, help="timed runs per model and contender (median)")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--steps", type=int, default=None, help="steps per timed run (default: ~0.3 s worth)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=None, help="cores for each system (default: the CPU count)")
    p.add_argument("--split", choices=["auto", "batch", "blas"], default="auto",
                   help="graphc's cores run parts of the batch or BLAS threads (auto: as graphc run chooses)")
    p.add_argument("--separate", action="store_true", help="each system in a process of its own, alternating")
    p.add_argument("--both", action="store_true", help="one process, then separate processes: both tables")
    p.add_argument("--serve", choices=["graphc", "torch"], help=argparse.SUPPRESS)
    p.add_argument("--models", default=",".join(MODELS), help="comma list of " + ", ".join(MODELS))
    p.add_argument("--no-torch", action="store_true", help="time graphc only")
    p.add_argument("--no-compile", action="store_true", help="skip the compile-speed measurements")
    p.add_argument("--sizes", default="1000,10000,40000", help="graph nodes of the generated models")
    p.add_argument("--quick", action="store_true", help="1 repeat, 3 steps, small generated models (for tests)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    threads = args.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    if args.serve:
        return serve(args.serve, args.models, args.batch, threads, args.split)
    if args.quick:
        args.repeats, args.warmup = 1, 1
        args.steps = args.steps or 3
        args.sizes = "100,300"
    forms = ["one process"] * (not args.separate) + ["separate"] * (args.separate or args.both)
    torch = None
    if not args.no_torch:
        try:
            # Imported in this process only to time it here (and for its version): --separate alone never runs it.
            import torch
            torch.set_num_threads(threads)
        except ImportError:
            torch = None
    env = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "cpu": cpu_model(),
           "cpus": os.cpu_count(), "threads": threads, "numpy": np.__version__,
           "torch": torch.__version__ if torch else None, "batch": args.batch, "repeats": args.repeats,
           "steps": args.steps or "auto", "python": platform.python_version(),
           "load": " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"}
    tables = {}
    for form in forms:
        rows = []
        with blas_threads(threads):
            for name in [m.strip() for m in args.models.split(",") if m.strip()]:
                steps = args.steps or {"mlp": 150, "lenet5": 30, "simple_convnet": 20}.get(name, 20)
                env["steps"] = args.steps or "150 / 30 / 20 (mlp / lenet5 / simple_convnet)"
                measure = compare_model if form == "one process" else compare_separate
                rows.append(summarise(measure(name, args.batch, steps, args.warmup, args.repeats,
                                              torch is not None, threads, args.split)))
                print(f"  timed {name} ({form})", file=sys.stderr, flush=True)
        tables[form] = rows
    compile_rows = None
    if not args.no_compile:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
        compile_rows = compile_speed(sizes, repeats=1 if args.quick else 3,
                                     process_repeats=1 if args.quick else 5)
    titles = {"one process": "one process, interleaved", "separate": "each system in its own process, alternating"}
    texts = [render(env, rows, compile_rows if form == forms[-1] else None, titles[form])
             for form, rows in tables.items()]
    print("\n\n".join(texts))
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "models": tables.get("one process", tables.get("separate")),
                                               "forms": tables, "compile": compile_rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
