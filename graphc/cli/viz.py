"""`graphc viz`: draw the compiled graph; with `--feed`, the numbers of one pass on its arrows.

Kept apart from cli/commands.py because the numbers need cli/run.py's `--feed` reader (and so the
runtime), which the other commands there do not load.
"""
from __future__ import annotations

from graphc.cli.check import warn
from graphc.cli.run import parse_feeds
from graphc.diagnostics import GraphcError
from graphc.program import Program, check_file
from graphc.tools.edge_values import edge_numbers
from graphc.training.checkpoint import load_weights
from graphc.viz import viz


def viz_command(args) -> int:
    """`graphc viz`: draw the graph to the output file (with --feed, every arrow labelled with the value
    or gradient it carries on one pass, of the --weights if given); return 0."""
    graph = check_file(args.file, args.model)
    warn(graph.warnings, args.deny_warnings)
    numbers = {}
    if args.weights and not args.feed:
        raise GraphcError("--weights gives the numbers of a pass on fed inputs: it goes with --feed",
                          help="add --feed NAME=VALUE for the inputs (those not fed are seeded random)")
    if args.feed:
        if args.backward and graph.objective is None:
            raise GraphcError(f"model `{graph.model}` has no objective, so no backward schedule to draw",
                              span=graph.model_span, help="declare `loss = ...` or exactly one `output`, "
                                                          "or drop --backward")
        # float64: the numbers a student checks by hand (-4, -4, 3) print without float32 round-off.
        program = Program(graph, dtype="float64", seed=args.seed)
        if args.weights:
            load_weights(program, args.weights)
        found = edge_numbers(program, parse_feeds(program, args.feed), seed=args.seed or 0)
        if found.random:
            print(f"(seeded random values for {', '.join(found.random)}; set them with --feed NAME=VALUE)")
        numbers = {"values": found.values, "edge_grads": found.edge_grads, "grads": found.grads}
    how = viz(graph, args.output, backward=args.backward, numbered=args.plan, engine=args.layout, **numbers)
    print(f"wrote {args.output}" + (f" (laid out by {how})" if how in ("Graphviz dot", "graphc") else ""))
    return 0
