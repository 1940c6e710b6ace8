"""`graphc plot`: run folders -> a PNG of their curves (graphc/tools/plot.py draws it)."""
from __future__ import annotations

from graphc.diagnostics import GraphcError
from graphc.tools.plot import plot_runs, plot_trace


def plot_command(args) -> int:
    """Draw the runs' curves (or traced parameter paths) into args.output; return the exit status."""
    if args.smooth is not None and args.smooth < 0:
        raise GraphcError(f"--smooth must be >= 0, got {args.smooth}", help="e.g. --smooth 11 (the textbook's window)")
    if args.trace:
        names = tuple(n.strip() for n in args.trace.split(",") if n.strip())
        written = plot_trace(args.runs, args.output, names, grid=args.grid, title=args.title)
    else:
        written = plot_runs(args.runs, args.output, metric=args.metric, split=args.split, per=args.per,
                            smooth=args.smooth or 0, grid=args.grid, title=args.title)
    print(f"wrote {written}")
    return 0
