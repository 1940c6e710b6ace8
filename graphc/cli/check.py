"""`graphc check` and the one warning printer every command uses.

Kept apart from cli/commands.py so that `graphc check` loads only the compiler
and the summary table: the other commands' modules (viz, bench, ONNX, the
trainer) cost about a fifth of check's whole process time to import.
"""
from __future__ import annotations

import json
import sys

from graphc.diagnostics import Diagnostic, GraphcError, Note
from graphc.program import check_every_model
from graphc.tools.summary import render_summary, summary_json


def check_command(args) -> int:
    """`graphc check`: print every model's summary table (or its JSON: a list for several models); return 0."""
    graphs = check_every_model(args.file, args.model)
    warnings, seen = [], set()
    for graph in graphs:   # a block two models use warns once
        for w in graph.warnings:
            key = (w.message, (w.span.source.path, w.span.start) if w.span else None)
            if key not in seen:
                seen.add(key)
                warnings.append(w)
    warn(warnings, args.deny_warnings)
    if args.json:
        tables = [summary_json(graph) for graph in graphs]
        print(json.dumps(tables[0] if len(tables) == 1 else tables, indent=2))
    else:
        print("\n\n".join(render_summary(graph) for graph in graphs))
    return 0


def warn(warnings, deny: bool = False) -> None:
    """Print warnings (a graph's, then a Program's) to stderr, each printed once by its caller; return None.

    With `deny` (`--deny-warnings`) any warning is an error instead: GraphcError carrying them all.
    """
    if deny and warnings:
        note = Note("`--deny-warnings` turns every warning into an error")
        raise GraphcError([Diagnostic("error", w.message, w.span, w.help, (*w.notes, note)) for w in warnings])
    for w in warnings:
        print(w.render(), file=sys.stderr)
