"""Command handlers that compile and report: check, compile, gradcheck, fmt, ops, viz, bench.

Each takes the argparse namespace, calls the library with plain values and
prints; each returns the exit status.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from graphc.diagnostics import GraphcError
from graphc.language.files import UnreadableSource, read_source, write_atomically
from graphc.language.fmt import format_source
from graphc.ops import all_ops, literal
from graphc.ops.kernels import retain_freed_memory
from graphc.program import Program, check_file
from graphc.runtime.feeds import random_feeds
from graphc.tools.bench import bench, render
from graphc.tools.emit import emit
from graphc.tools.gradcheck import gradcheck
from graphc.tools.summary import render_summary, summary_json
from graphc.viz import viz


def check_command(args) -> int:
    """`graphc check`: print the summary table (or its JSON); return 0."""
    graph = check_file(args.file, args.model)
    warn(graph.warnings)
    print(json.dumps(summary_json(graph), indent=2) if args.json else render_summary(graph))
    return 0


def compile_command(args) -> int:
    """`graphc compile`: print the schedule as plan text, JSON or dot; return 0."""
    graph = check_file(args.file, args.model)
    warn(graph.warnings)
    print(emit(graph, args.emit, backward=not args.eval))
    return 0


def gradcheck_command(args) -> int:
    """`graphc gradcheck`: print a row per tensor; return 1 when any is outside the tolerance."""
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


def fmt_command(args) -> int:
    """`graphc fmt`: print, check or rewrite the canonical layout; return 1 when --check finds a difference."""
    path = Path(args.file)
    try:
        text = read_source(path)
    except UnreadableSource as error:
        raise GraphcError(f"cannot read {path}: {error.reason}", help=error.help) from None
    formatted = format_source(text, str(path))
    if args.check:
        if formatted != text:
            print(f"{path}: not formatted (run `graphc fmt --write {path}`)", file=sys.stderr)
            return 1
        return 0
    if args.write:
        write_atomically(path, formatted.encode())
        return 0
    sys.stdout.write(formatted)
    return 0


def viz_command(args) -> int:
    """`graphc viz`: draw the graph to the output file; return 0."""
    graph = check_file(args.file, args.model)
    warn(graph.warnings)
    how = viz(graph, args.output, backward=args.backward, numbered=args.plan, engine=args.layout)
    print(f"wrote {args.output}" + (f" (laid out by {how})" if how in ("Graphviz dot", "graphc") else ""))
    return 0


def bench_command(args) -> int:
    """`graphc bench`: time training and inference steps; print the table (or JSON); return 0."""
    for name in ("batch", "steps", "repeats", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise GraphcError(f"--{name} must be at least 1, got {value}")
    if args.warmup < 0:
        raise GraphcError(f"--warmup must be at least 0, got {args.warmup}")
    # Large activation buffers are freed and reallocated every step: keep them in the heap.
    retain_freed_memory()
    graph = check_file(args.file, args.model)
    warn(graph.warnings)
    result = bench(Program(graph), args.batch, steps=args.steps, warmup=args.warmup, repeats=args.repeats,
                   threads=args.threads)
    print(json.dumps(result.to_json(), indent=2) if args.json else render(result))
    return 0


def ops_command(args) -> int:
    """`graphc ops`: list the registered ops with their signatures; return 0."""
    for op in all_ops():
        sig = ", ".join([*op.inputs, *(a.name if a.required else f"{a.name}={literal(a.default)}" for a in op.attrs)])
        print(f"{op.family:<11} {op.name}({sig})")
    return 0


def warn(warnings) -> None:
    """Print warnings (a graph's, then a Program's) to stderr, each printed once by its caller; return None."""
    for w in warnings:
        print(w.render(), file=sys.stderr)
