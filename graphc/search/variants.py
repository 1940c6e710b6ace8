"""Checking a file with search spaces: the model at every categorical value and both ends of every range.

Input: the parsed modules of a file with search spaces. Output: the typed graph
at the base values (every range at its low end, every choice at its first
option), checked again with each space moved, one at a time, to each of its
other values (every option of a choice, the high end of a range; a choice's
nested spaces within the option that holds them). An error that only one
value causes is reported at that value's span, with the error it causes as a
note, so `graphc check` finds a shape error a trial would hit hours later.
"""
from __future__ import annotations

from graphc.compiler.graph import Graph
from graphc.diagnostics import Diagnostic, Diagnostics, GraphcError, Note
from graphc.language.spaces import Space, fill, find_spaces
from graphc.program import check_modules
from graphc.search.settings import SearchConfig, resolve_search

MAX_VARIANTS = 200   # compiles per check: beyond, the rest of the values are not tried (and it says so)
MAX_CHECKED_NODES = 20_000   # graph nodes compiled per check: a big model gets fewer variants (1,000 spaces took 20 s)


def base_choice(space: Space):
    """Return a space's base value: a range's low end, a choice's first option (index 0)."""
    return 0 if space.kind == "choice" else space.low


def check_spaces(modules, model: str | None = None) -> tuple[Graph, list[Space], SearchConfig, list[str]]:
    """Return (the graph at the base values, the spaces, the search settings, notes on what was checked).

    GraphcError with every problem: a malformed space, a bad search setting, and
    each value that makes the model fail to check (at that value's span).
    """
    diagnostics = Diagnostics()
    spaces = find_spaces(modules, diagnostics)
    diagnostics.raise_if_errors()
    graph = check_modules(fill(modules, spaces, base_choice), model)
    config = resolve_search(graph.search_section, graph, diagnostics)
    diagnostics.raise_if_errors()
    errors: dict[tuple, Diagnostic] = {}
    tried = 0
    variants = list(_variants(spaces))
    limit = max(1, min(MAX_VARIANTS, MAX_CHECKED_NODES // max(1, len(graph.nodes()))))
    for fixed, space, value, span in variants[:limit]:
        tried += 1
        try:
            check_modules(fill(modules, spaces, lambda s, fixed=fixed: fixed.get(s.name, base_choice(s))), model)
        except GraphcError as error:
            first = error.diagnostics[0]
            shown = space.labels[value] if space.kind == "choice" else f"{value:g}"
            key = (first.message, space.name, shown)
            errors.setdefault(key, Diagnostic(
                "error", f"with `{space.name}` = {shown}, the model does not check: {first.message}", span,
                "narrow the space, or change the model so that every value works",
                (Note(first.message, first.span), *first.notes)))
    if errors:
        raise GraphcError(list(errors.values()))
    if len(variants) <= limit:
        notes = [f"checked {tried + 1} variants of the model: every choice's options and every range's ends"]
    else:
        notes = [f"checked {tried + 1} of {len(variants) + 1} variants of the model (the base values, then "
                 "choices' options and ranges' ends in file order)"]
    if len(variants) > limit:
        notes.append(f"{len(variants) - limit} more variants were not checked (limit {limit}"
                     + (")" if limit == MAX_VARIANTS else f" for a model of this size: {MAX_CHECKED_NODES:,} nodes)"))
    return graph, spaces, config, notes


def _variants(spaces, fixed: dict | None = None):
    """Yield (fixed values, the space moved, its value, the span to blame) for every one-space move from base."""
    fixed = dict(fixed or {})
    for space in spaces:
        if space.kind == "choice":
            for index, option in enumerate(space.options):
                if index:
                    yield {**fixed, space.name: index}, space, index, option.span
                # The spaces inside an option, with the option chosen.
                yield from _variants(space.nested[index], {**fixed, space.name: index})
        else:
            yield {**fixed, space.name: space.high}, space, space.high, space.call.args[1].span
