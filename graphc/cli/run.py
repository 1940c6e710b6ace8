"""`graphc run`: train a model that has a train section, or evaluate it once.

Training turns the options into a TrainConfig, loads the data and calls
`graphc.training.trainer.train`; `--eval` prints the metrics of the weights
given by `--weights`, else of the run's own `<out>/weights.npz` (an error
when there is none: fresh weights would give meaningless numbers).

When the reader of the output leaves (`graphc run model.nn | head`), training
goes on quietly and writes all its files: a run is never lost because its
progress lines had nowhere to go. A model without training (or with `--feed`) runs one
forward and backward pass on fed or seeded random data and prints each
output's value and the gradient of the objective with respect to every input,
parameter and intermediate, in schedule order. `--data` or `--epochs` on a
model without a train section trains it with every setting at its default
(a model without a loss, or with `--feed` too, is an error, never a silent pass).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from graphc.cli.check import warn
from graphc.cli.sweep import run_sweep
from graphc.compiler.gc_pause import no_cycle_collection
from graphc.diagnostics import Diagnostic, Diagnostics, GraphcError
from graphc.language.parse import parse_program
from graphc.language.spaces import all_spaces, find_spaces
from graphc.ops.kernels import retain_freed_memory
from graphc.program import Program, check_modules, fill_spaces
from graphc.runtime.execute import Executor, nonfinite_error
from graphc.runtime.feeds import random_feeds
from graphc.tensor_type import CLASS
from graphc.training.batching import TrainData
from graphc.training.checkpoint import load_weights
from graphc.training.config import train_config
from graphc.training.metrics import check_trace, evaluate_feeds, format_metrics
from graphc.training.outdir import prepare_out_dir
from graphc.training.trainer import train


def run_command(args) -> int:
    """`graphc run`: train (a train section, a loss and no --feed) or evaluate once; return 0."""
    # Large activation buffers are freed and reallocated every step: keep them in the heap.
    retain_freed_memory()
    if getattr(args, "sweep", None):
        # One run per value, each exactly `graphc run FILE --set KEY=V` into its own folder (cli/sweep.py).
        return run_sweep(args, run_command, check_run)
    graph, args.set = check_with_spaces(args.file, args.model, args.set)
    warn(graph.warnings, args.deny_warnings)
    if graph.train is not None and not args.feed and graph.loss is not None:
        return run_training(graph, args)
    asked = [flag for flag, value in (("--data", args.data), ("--epochs", args.epochs)) if value is not None]
    if asked:
        # --data/--epochs ask for training: never feed random values instead and exit 0 as if it had trained.
        if args.feed:
            raise GraphcError(f"--feed runs one pass on the values given; it does not go with {' and '.join(asked)}",
                              help="drop --feed to train, or drop " + " and ".join(asked) + " to run one pass")
        if graph.loss is None:
            raise GraphcError(f"{' and '.join(asked)} train a model, but `{graph.model}` has no loss",
                              span=graph.model_span, help="declare `loss = ...` to train it")
        # No train section: train with the defaults of every setting (see README, "Training").
        return run_training(graph, args)
    if getattr(args, "trace", None):
        raise GraphcError("--trace records parameters while training; this runs one pass and trains nothing",
                          help="train (a train section and a loss, without --feed), or drop --trace")
    program = Program(graph, dtype=args.dtype, seed=args.seed)
    warn(program.warnings, args.deny_warnings)
    if args.weights:
        load_weights(program, args.weights)
    print(evaluate_once(program, parse_feeds(program, args.feed), seed=args.seed or 0))
    return 0


def run_training(graph, args) -> int:
    """Train (or with --eval, evaluate) a model with a train section; print and save; return 0."""
    cfg = train_config(graph, args.set, epochs=args.epochs, batch=args.batch, seed=args.seed, data=args.data)
    if args.limit is not None and args.limit < 1:
        # 0 would train on nothing for every epoch; a negative N would slice off the *last* samples.
        raise GraphcError(f"--limit must be at least 1, got {args.limit}",
                          help="--limit N trains on the first N training samples")
    if args.limit_test is not None and args.limit_test < 0:
        raise GraphcError(f"--limit-test must be at least 0, got {args.limit_test}",
                          help="--limit-test N evaluates the first N test samples (0: no test evaluation)")
    threads = _threads(args)   # a bad --threads fails now, not after loading the data
    out = Path(args.out or os.path.join("runs", graph.model))
    if not args.eval:
        prepare_out_dir(out)   # a bad --out fails now, not after loading the data
    program = Program(graph, dtype=args.dtype, seed=cfg.seed, init=cfg.init)
    warn(program.warnings, args.deny_warnings)
    traced = check_trace((getattr(args, "trace", None) or "").split(","), program.params)   # before the data loads
    weights = args.weights
    if args.eval and not weights:
        weights = out / "weights.npz"
        if not weights.is_file():
            raise GraphcError(f"nothing to evaluate: {weights} does not exist",
                              help="pass --weights FILE, or --out the folder of a finished run, or train first")
        print(f"graphc: evaluating {weights}", file=sys.stderr)
    data = TrainData.load(program, cfg, limit=args.limit, limit_test=args.limit_test)
    if weights:
        load_weights(program, weights)
    if args.eval:
        # The evaluation is the command's result: printed even with --quiet.
        if data.size("test"):
            bar = None if args.quiet else "test"
            print(f"test: {format_metrics(evaluate_feeds(program, data.test, bar=bar))}")
        else:
            # A .csv or an .npz without test arrays has no test split: the training data is all there is.
            print(f"train (no test split in {data.name}): "
                  f"{format_metrics(evaluate_feeds(program, data.train))}")
        return 0
    say = _say_until_reader_leaves()
    result = train(program, cfg, data, out, resume=args.resume, say=None if args.quiet else say,
                   progress=not args.quiet, trace=traced,
                   threads=threads)
    if args.quiet:
        # --quiet drops the progress, not the result.
        for line in result.summary():
            say(line)
    return 0


def check_run(args):
    """Return the graph `graphc run` would train with these options after checking it and its train
    settings, without training (GraphcError as the run would give; a sweep checks every run first)."""
    graph, settings = check_with_spaces(args.file, args.model, args.set)
    if graph.loss is None:
        raise GraphcError(f"`{graph.model}` has no loss, so nothing to train", span=graph.model_span,
                          help="declare `loss = ...` to train it")
    train_config(graph, settings, epochs=args.epochs, batch=args.batch, seed=args.seed, data=args.data)
    return graph


def check_with_spaces(path, model: str | None, settings: list[str]) -> tuple[object, list[str]]:
    """Return (the file's typed graph, the `--set` items that are train settings).

    A `--set NAME=VALUE` naming a search space of the file fixes that space (program.fill_spaces);
    the file is parsed once for both. GraphcError as `check_file` gives.
    """
    with no_cycle_collection():
        modules = parse_program(path)
        diagnostics = Diagnostics()
        names = {s.name for s in all_spaces(find_spaces(modules, diagnostics))}
        spaces, rest = {}, []
        for item in settings:
            key, sep, text = item.partition("=")
            if sep and key.strip() in names:
                spaces[key.strip()] = text
            else:
                rest.append(item)
        return check_modules(fill_spaces(modules, spaces), model), rest


def _threads(args) -> int | None:
    """Return --threads (None: not given); GraphcError when it is less than 1."""
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise GraphcError(f"--threads must be at least 1, got {threads}", help="e.g. --threads 2")
    return threads


def _say_until_reader_leaves():
    """Return a function printing a progress line, which goes quiet once stdout's reader has gone."""
    reader_left = False

    def say(text: str) -> None:
        nonlocal reader_left
        if reader_left:
            return
        try:
            print(text, flush=True)
        except BrokenPipeError:
            # The reader left (`| head`): keep training and writing files, print nothing more.
            # fd 1 now points at /dev/null so the interpreter's last flush does not fail either.
            reader_left = True
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
    return say


def parse_feeds(program, feed_args: list[str]) -> dict:
    """Return the arrays `--feed NAME=VALUE` arguments give (a number or a comma list each)."""
    feeds = {}
    for item in feed_args:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise GraphcError(f"--feed {item!r} is not NAME=VALUE", help="e.g. --feed x=-2 or --feed x=1,2,3")
        if name not in program.graph.inputs + program.graph.labels:
            raise GraphcError(f"--feed names `{name}`, which is not an input or label",
                              help="inputs: " + ", ".join(program.graph.inputs + program.graph.labels))
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            raise GraphcError(f"--feed {name}={text}: not a number or a comma-separated list of numbers") from None
        t = program.graph.node(name).declared
        per_sample = max(t.size, 1)
        if len(values) % per_sample:
            raise GraphcError(f"--feed {name}: {len(values)} numbers do not fill samples of shape {t}",
                              help=f"give a multiple of {per_sample} numbers")
        feeds[name] = np.array(values).reshape((-1, *t.shape)) if t.kind != CLASS else np.array(values)
    return feeds


def evaluate_once(program, feeds: dict, *, seed: int = 0) -> str:
    """Return the report of one forward and backward pass on `feeds`, the missing inputs seeded random."""
    feeds = dict(feeds)
    batch = next(iter(feeds.values())).shape[0] if feeds else 1
    drawn = random_feeds(program.graph, batch, seed, skip=set(feeds))
    random_names = list(drawn)
    feeds.update(drawn)
    lines = []
    if random_names:
        lines.append(f"(seeded random values for {', '.join(random_names)}; set them with --feed NAME=VALUE)")
    # NaN and overflow are named below, with the node that produced them; NumPy's warnings would
    # only point into graphc's kernels.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        outputs = program.run(feeds)
    if not all(np.all(np.isfinite(v)) for v in outputs.values()):
        _warn_nonfinite(program, feeds)
    for name, value in outputs.items():
        lines.append(f"{name} = {_show(value)}")
    graph = program.graph
    if graph.objective is None:
        return "\n".join(lines)
    # The same mode as the outputs printed above (program.run): inference.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        grads = program.gradients(feeds, train=False, intermediates=True)
    objective = "loss" if graph.loss else next(iter(graph.outputs))
    lines.append(f"gradient of {objective}:")
    order = [*graph.inputs, *[p for p in program.params if graph.params[p].role is None]]
    order += [n for n in graph.op_nodes() if n != graph.objective]
    order += [p for p in program.params if p not in order]
    for name in order:
        if name in grads:
            lines.append(f"  {name}: {_show(grads[name])}")
    return "\n".join(lines)


def _warn_nonfinite(program, feeds: dict) -> None:
    """Print a warning naming the first node (schedule order, inference mode) whose value is NaN or Inf."""
    graph = program.graph
    wanted = (*graph.outputs.values(), *([graph.loss] if graph.loss else []))
    # Every step gets its own buffer, so an early node's values are not overwritten by a later one's.
    executor = Executor(graph, program.executor(wanted, backward=False).plan.without_reuse(), program.dtype)
    batch = next(iter(feeds.values())).shape[0] if feeds else 1
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        checked, _ = program.check_feeds(feeds, need_labels=False)
        values = executor.forward(checked, program.params, dict(program.state), train=False,
                                  rng=np.random.default_rng(0), batch=batch)
    node = executor.first_nonfinite(values)
    if node is not None:
        error = nonfinite_error(graph, node, "on these inputs")
        print("\n".join(Diagnostic("warning", d.message, d.span, d.help, d.notes).render()
                        for d in error.diagnostics), file=sys.stderr)


def _show(value) -> str:
    a = np.asarray(value)
    if a.size == 1:
        return f"{float(a.reshape(-1)[0]):g}"
    if a.size <= 12:
        return np.array2string(a.astype(np.float64), precision=4, separator=", ", suppress_small=True)
    return (f"array of shape [{', '.join(map(str, a.shape))}], mean {a.mean():.4g}, "
            f"min {a.min():.4g}, max {a.max():.4g}")
