"""The command line: subcommands -> the public API. No compiler logic here.

GraphcError (a problem with the user's program, data or files) becomes its
diagnostics on stderr and exit status 1; bad usage is exit status 2; anything
else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import json
import sys

from graphc.diagnostics import GraphcError


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    try:
        return args.handler(args) or 0
    except GraphcError as error:
        print(error.render(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("graphc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `graphc compile ... | head`: the reader left; nothing more to say.
        sys.stderr.close()
        return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="graphc", description="Compile, check, train and inspect .nn models.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, handler, help_text):
        c = sub.add_parser(name, help=help_text, description=help_text)
        c.set_defaults(handler=handler)
        return c

    def model_args(c):
        c.add_argument("file", help="a .nn file")
        c.add_argument("--model", help="which model, when the file defines several")

    c = command("check", _check, "parse and shape-check; print a summary table")
    model_args(c)
    c.add_argument("--json", action="store_true", help="print the table as JSON")

    c = command("compile", _compile, "print the compiled forward/backward schedule")
    model_args(c)
    c.add_argument("--emit", choices=["plan", "json", "dot"], default="plan")
    c.add_argument("--eval", action="store_true", help="the inference plan only (no backward)")

    c = command("run", _run, "train (if the file has a train section) or evaluate once")
    model_args(c)
    c.add_argument("--feed", action="append", default=[], metavar="NAME=VALUE",
                   help="a value for an input: a number or a comma list")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a train setting")
    c.add_argument("--data", help="dataset name, or a directory holding its files")
    c.add_argument("--epochs", type=int)
    c.add_argument("--batch", type=int)
    c.add_argument("--seed", type=int)
    c.add_argument("--limit", type=int, help="train on the first N training samples only")
    c.add_argument("--out", help="directory for weights, metrics and curves")
    c.add_argument("--weights", help="load weights from a .npz file first")
    c.add_argument("--eval", action="store_true", help="evaluate only (no training)")
    c.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    c.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    c.add_argument("--quiet", action="store_true")

    c = command("gradcheck", _gradcheck, "numerical vs analytic gradients in float64")
    model_args(c)
    c.add_argument("--eps", type=float, default=1e-6)
    c.add_argument("--tol", type=float, default=1e-4)
    c.add_argument("--batch", type=int, default=2)
    c.add_argument("--samples", type=int, default=12, help="coordinates checked per tensor")
    c.add_argument("--seed", type=int, default=0)

    c = command("fmt", _fmt, "print the program in the canonical layout")
    c.add_argument("file")
    c.add_argument("--check", action="store_true", help="exit 1 if the file is not formatted")
    c.add_argument("--write", action="store_true", help="rewrite the file in place")

    command("ops", _ops, "list the built-in ops")

    c = command("viz", _viz, "draw the compiled graph (.svg .png .pdf .dot .html)")
    model_args(c)
    c.add_argument("-o", "--output", required=True, metavar="OUT", help="the picture; its extension picks the format")
    c.add_argument("--backward", action="store_true", help="add the backward steps and their gradient rules")
    c.add_argument("--plan", action="store_true", help="number the steps in schedule order and show buffers")
    c.add_argument("--layout", choices=["auto", "dot", "graphc"], default="auto",
                   help="Graphviz dot (auto: when installed) or graphc's own layout")

    c = command("inspect", _inspect, "activation histograms, first-layer filters, gradient magnitudes")
    model_args(c)
    c.add_argument("--activations", action="store_true", help="a histogram per activation layer")
    c.add_argument("--filters", action="store_true", help="the first conv layer's filters")
    c.add_argument("--gradients", action="store_true", help="mean |gradient| of each layer's weight")
    c.add_argument("-o", "--output", metavar="OUT.png", help="the picture (default: <model>-inspect.png)")
    c.add_argument("--weights", help="load weights from a .npz file first")
    c.add_argument("--data", help="dataset name or directory; `random` for seeded standard-normal inputs")
    c.add_argument("--batch", type=int, default=1000, help="samples in the batch (default 1000)")
    c.add_argument("--init", metavar="SCHEME", help="initialise weights with this, e.g. normal(std=0.01), xavier")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a train setting")
    c.add_argument("--seed", type=int)

    c = command("bench", _bench, "train and inference samples/s at a batch size, with a per-node table")
    model_args(c)
    c.add_argument("--batch", type=int, default=100)
    c.add_argument("--steps", type=int, default=50, help="steps per timed run")
    c.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    c.add_argument("--repeats", type=int, default=5, help="timed runs; the median counts")
    c.add_argument("--threads", type=int, help="BLAS threads (default: leave as they are)")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def _check(args) -> int:
    from graphc.program import check_file
    from graphc.tools.summary import render_summary, summary_json
    graph = check_file(args.file, args.model)
    _warn(graph)
    print(json.dumps(summary_json(graph), indent=2) if args.json else render_summary(graph))
    return 0


def _compile(args) -> int:
    from graphc.program import check_file
    from graphc.tools.emit import emit
    graph = check_file(args.file, args.model)
    _warn(graph)
    print(emit(graph, args.emit, backward=not args.eval))
    return 0


def _run(args) -> int:
    from graphc.program import Program, check_file
    graph = check_file(args.file, args.model)
    _warn(graph)
    if graph.train is not None and not args.feed and graph.loss is not None:
        from graphc.training.trainer import run_training
        return run_training(graph, args)
    from graphc.tools.evaluate import evaluate_once
    program = Program(graph, dtype=args.dtype, seed=args.seed)
    _warn(graph, only_new=True)
    print(evaluate_once(program, args.feed, weights=args.weights, seed=args.seed or 0))
    return 0


def _gradcheck(args) -> int:
    from graphc.program import Program, check_file
    from graphc.runtime.feeds import random_feeds
    from graphc.tools.gradcheck import gradcheck
    program = Program(check_file(args.file, args.model), dtype="float64", seed=args.seed)
    rows = gradcheck(program, random_feeds(program.graph, args.batch, args.seed), eps=args.eps,
                     samples=args.samples, seed=args.seed)
    width = max([len(r.name) for r in rows] + [6])
    print(f"{'tensor'.ljust(width)}  {'shape':<16} {'checked':>7}  {'max rel error':>13}  status")
    failed = 0
    for r in rows:
        ok = r.max_rel_error <= args.tol
        failed += not ok
        shape = "[" + ", ".join(map(str, r.shape)) + "]"
        print(f"{r.name.ljust(width)}  {shape:<16} {r.checked:>7}  {r.max_rel_error:>13.2e}  {'ok' if ok else 'FAIL'}")
    print(f"{len(rows) - failed} of {len(rows)} tensors within tolerance {args.tol:g}")
    return 1 if failed else 0


def _fmt(args) -> int:
    from pathlib import Path

    from graphc.language.fmt import format_source
    path = Path(args.file)
    try:
        text = path.read_text()
    except OSError as error:
        raise GraphcError(f"cannot read {path}: {error.strerror}") from None
    formatted = format_source(text, str(path))
    if args.check:
        if formatted != text:
            print(f"{path}: not formatted (run `graphc fmt --write {path}`)", file=sys.stderr)
            return 1
        return 0
    if args.write:
        path.write_text(formatted)
        return 0
    sys.stdout.write(formatted)
    return 0


def _viz(args) -> int:
    from graphc.program import check_file
    from graphc.viz import viz
    graph = check_file(args.file, args.model)
    _warn(graph)
    how = viz(graph, args.output, backward=args.backward, numbered=args.plan, engine=args.layout)
    print(f"wrote {args.output}" + (f" (laid out by {how})" if how in ("Graphviz dot", "graphc") else ""))
    return 0


def _inspect(args) -> int:
    from graphc.tools.inspection import inspect_command
    return inspect_command(args)


def _bench(args) -> int:
    from graphc.program import Program, check_file
    from graphc.tools.bench import bench, render
    for name in ("batch", "steps", "repeats", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise GraphcError(f"--{name} must be at least 1, got {value}")
    if args.warmup < 0:
        raise GraphcError(f"--warmup must be at least 0, got {args.warmup}")
    graph = check_file(args.file, args.model)
    _warn(graph)
    result = bench(Program(graph), args.batch, steps=args.steps, warmup=args.warmup, repeats=args.repeats,
                   threads=args.threads)
    print(json.dumps(result.to_json(), indent=2) if args.json else render(result))
    return 0


def _ops(args) -> int:
    from graphc.ops import all_ops
    for op in all_ops():
        sig = ", ".join([*op.inputs, *(a.name if a.required else f"{a.name}={a.default}" for a in op.attrs)])
        print(f"{op.family:<11} {op.name}({sig})")
    return 0


def _warn(graph, only_new: bool = False) -> None:
    shown = getattr(graph, "_shown_warnings", 0) if only_new else 0
    for w in graph.warnings[shown:]:
        print(w.render(), file=sys.stderr)
    graph._shown_warnings = len(graph.warnings)
