"""`graphc check` and the one warning printer every command uses.

Kept apart from cli/commands.py so that `graphc check` loads only the compiler
and the summary table: the other commands' modules (viz, bench, ONNX, the
trainer) cost about a fifth of check's whole process time to import.
"""
from __future__ import annotations

import json
import sys

from graphc.diagnostics import Diagnostic, Diagnostics, GraphcError, Note
from graphc.language.parse import parse_program
from graphc.language.spaces import all_spaces, find_spaces
from graphc.program import check_every_model
from graphc.search.variants import check_spaces
from graphc.tools.summary import render_summary, summary_json


def check_command(args) -> int:
    """`graphc check`: print every model's summary table (or its JSON: a list for several models); return 0.

    A file with search spaces is checked at every choice's options and every range's ends
    (search/variants.py); its table shows the model at the base values, then the spaces.
    """
    modules = parse_program(args.file)
    diagnostics = Diagnostics()
    if find_spaces(modules, diagnostics) or diagnostics.has_errors:
        graph, spaces, config, notes = check_spaces(modules, args.model)
        warn(graph.warnings, args.deny_warnings)
        if args.json:
            table = summary_json(graph)
            table["search_spaces"] = [{"name": s.name, "space": s.describe(), "where": str(s.call.span)}
                                      for s in all_spaces(spaces)]
            table["search"] = {"trials": config.trials, "sampler": config.sampler, "pruner": config.pruner,
                               "metric": config.metric, "direction": config.direction}
            print(json.dumps(table, indent=2))
        else:
            print(render_summary(graph) + "\n\n" + space_table(spaces, config, notes))
        return 0
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


def space_table(spaces, config, notes: list[str]) -> str:
    """Return the search spaces (name, distribution, where) and the study's settings as text lines."""
    rows = [(s.name, s.describe(), str(s.call.span)) for s in all_spaces(spaces)]
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    lines = [f"search spaces ({len(rows)}):"]
    lines += [f"  {name.ljust(width[0])}  {what.ljust(width[1])}  {where}" for name, what, where in rows]
    lines.append(f"study: {config.trials} trials, sampler {config.sampler}, pruner {config.pruner}, "
                 f"{config.direction} {config.metric}" + (f", timeout {config.timeout:g} s" if config.timeout else ""))
    return "\n".join(lines + notes)


def warn(warnings, deny: bool = False) -> None:
    """Print warnings (a graph's, then a Program's) to stderr, each printed once by its caller; return None.

    With `deny` (`--deny-warnings`) any warning is an error instead: GraphcError carrying them all.
    """
    if deny and warnings:
        note = Note("`--deny-warnings` turns every warning into an error")
        raise GraphcError([Diagnostic("error", w.message, w.span, w.help, (*w.notes, note)) for w in warnings])
    for w in warnings:
        print(w.render(), file=sys.stderr)
