"""Command handlers that compile and report: compile, gradcheck, fmt, ops, bench (viz: cli/viz.py).

Each takes the argparse namespace, calls the library with plain values and
prints; each returns the exit status.
"""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

from graphc.cli.check import warn
from graphc.diagnostics import GraphcError, did_you_mean
from graphc.language.files import UnreadableSource, read_source, write_atomically
from graphc.language.fmt import format_source
from graphc.ops import all_names, all_ops, find, literal
from graphc.ops.kernels import retain_freed_memory
from graphc.ops.registry import WRITTEN_OTHERWISE
from graphc.program import Program, check_file
from graphc.runtime.feeds import random_feeds
from graphc.tools.bench import bench, render
from graphc.tools.emit import emit
from graphc.tools.gradcheck import FLOOR, check_options, gradcheck


def compile_command(args) -> int:
    """`graphc compile`: print the schedule as plan text, JSON or dot; return 0."""
    graph = check_file(args.file, args.model)
    warn(graph.warnings, args.deny_warnings)
    print(emit(graph, args.emit, backward=not args.eval))
    return 0


def gradcheck_command(args) -> int:
    """`graphc gradcheck`: print a row per tensor with both sides' magnitudes; return 1 when any row
    is outside the tolerance or not finite (tools/gradcheck.py defines the error)."""
    if args.floor is None:
        args.floor = FLOOR
    check_options(args.eps, args.samples, args.tol, args.floor, args.batch)
    program = Program(check_file(args.file, args.model), dtype="float64", seed=args.seed)
    rows = gradcheck(program, random_feeds(program.graph, args.batch, args.seed), eps=args.eps,
                     samples=args.samples, seed=args.seed, floor=args.floor)
    width = max([len(r.name) for r in rows] + [6])
    print(f"{'tensor'.ljust(width)}  {'shape':<16} {'checked':>7}  {'max |analytic|':>14}  {'max |numeric|':>13}"
          f"  {'max |diff|':>10}  {'max error':>9}  status")
    failed = 0
    for r in rows:
        ok = r.ok(args.tol)
        failed += not ok
        shape = "[" + ", ".join(map(str, r.shape)) + "]"
        status = "ok" if ok else "FAIL" + (f": {r.reason}" if r.reason else "")
        print(f"{r.name.ljust(width)}  {shape:<16} {r.checked:>7}  {r.max_analytic:>14.3e}  {r.max_numeric:>13.3e}"
              f"  {r.max_abs_error:>10.2e}  {r.max_error:>9.2e}  {status}")
    print(f"{len(rows) - failed} of {len(rows)} tensors within tolerance {args.tol:g} "
          f"(error |a - n| / max(|a| + |n|, {args.floor:g}), training mode, eps {args.eps:g})")
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
    warn(graph.warnings, args.deny_warnings)
    result = bench(Program(graph), args.batch, steps=args.steps, warmup=args.warmup, repeats=args.repeats,
                   threads=args.threads, split=args.split)
    print(json.dumps(result.to_json(), indent=2) if args.json else render(result))
    return 0


def ops_command(args) -> int:
    """`graphc ops [NAME]`: list the registered ops with their signatures, or print one op's definition;
    return 0 (GraphcError for an unknown name)."""
    if args.name is None:
        for op in all_ops():
            print(f"{op.family:<11} {usage(op)}")
        return 0
    op = find(args.name)
    if op is None:
        raise GraphcError(f"no op called `{args.name}`",
                          help=WRITTEN_OTHERWISE.get(args.name) or did_you_mean(args.name, all_names())
                          or "`graphc ops` lists them all")
    print(describe_op(op))
    return 0


def usage(op) -> str:
    """Return an op's call as the language writes it, defaults in its syntax: `concat(x, ..., axis=0)`."""
    parts = [*op.inputs, *(["..."] if op.variadic else [])]
    parts += [a.name if a.required else f"{a.name}={literal(a.default)}" for a in op.attrs]
    return f"{op.name}({', '.join(parts)})"


def describe_op(op) -> str:
    """Return the text `graphc ops NAME` prints: the definition (doc, with the PyTorch function it
    follows and its tie rule), arguments, shape rule, gradient rule and parameters."""
    lines = [f"{usage(op)}    ({op.family})", "", *_wrapped(op.doc, "  "), "", "arguments:"]
    for name in op.inputs:
        what = "tensor, repeated: one or more" if op.variadic else "tensor"
        lines.append(f"  {name:<12} {what}{' (no gradient: a target)' if name in op.nondiff else ''}")
    for a in op.attrs:
        default = "required" if a.required else f"default {literal(a.default)}"
        choices = f"; one of {', '.join(a.choices)}" if a.choices else ""
        lines.append(f"  {a.name:<12} {a.kind}, {default}{choices}: {a.doc}".rstrip(": "))
    if op.shape_doc:
        lines.append(f"shape:         {op.shape_doc} (per sample; the batch axis is kept)")
    lines.append(f"gradient:      {op.grad_rule}")
    for p in op.params:
        switch = " (optional)" if p.enabled is not None else ""
        lines.append(f"parameter:     {p.role}{switch}, initialised by {p.init}"
                     f"{'' if p.decay else ', no weight decay'}")
    for s in op.state:
        lines.append(f"state:         {s.role} (running, saved with the weights), starts at {literal(s.fill)}")
    if op.other_names:
        lines.append(f"other names:   {', '.join(op.other_names)}")
    if op.expansion:
        lines.append(f"with gates:    {op.expansion}")
    return "\n".join(lines)


def _wrapped(text: str, indent: str, width: int = 92) -> list[str]:
    """Return text broken into lines of at most `width` characters, each indented."""
    return textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False)
