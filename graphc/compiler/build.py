"""Build: syntax modules -> graph, with every name and op resolved.

Input: the parsed modules of a program (main file first) and the model to
build. Output: a `Graph` whose nodes are inputs, labels, params, constants and
op calls, with `->` chains desugared and blocks inlined at their use site.
Errors go to the caller's `Diagnostics`; building goes on after an error so
that independent errors are all reported.

Modules: compiler/scope.py (value types, scopes, naming), compiler/evaluate.py
(constants), compiler/builder.py (statements and op calls), this file (blocks,
model choice, train section choice).

Node names (documented in the README): a statement `s = ...` names its final
value `s`; the other calls in it are `s.<op>` (`s.<op>_2` when an op repeats).
A layer's parameters are `<owner>.<role>`, where the owner is `s` when the
statement holds one layer (or block), else the layer's own node name. A block
used in statement `s` prefixes everything it creates with its owner, so
`h = conv_relu_pool(image, 30)` creates `h.conv`, `h.relu` and `h.weight`.
`x -> repeat 3 f(...)` applies f three times, as `s.f.0`, `s.f.1`, `s.f.2`.
"""
from __future__ import annotations

from graphc.compiler.builder import Builder
from graphc.compiler.graph import Graph
from graphc.diagnostics import Diagnostics, Note, did_you_mean
from graphc.language import syntax as S
from graphc.ops import find


def build(modules: list[S.Module], diagnostics: Diagnostics, model: str | None = None) -> Graph | None:
    """Return the graph of the chosen model (errors recorded in `diagnostics`), or None if there is no model.

    The model's train section is chosen here (`graph.train_section`, `graph.train_span`);
    its settings are checked afterwards by training/config.resolve_train (see program.py).
    """
    blocks = _collect_blocks(modules, diagnostics)
    chosen = _choose_model(modules, model, diagnostics)
    if chosen is None:
        return None
    graph = Graph(chosen.name, model_span=chosen.name_span)
    builder = Builder(graph, blocks, diagnostics)
    train = _section_for(modules[0], chosen, diagnostics, S.Train)
    # `data = none` trains a loss over parameters only (the optimizer-path experiments): no inputs needed.
    data_free = train is not None and any(s.key == "data" and isinstance(s.value, S.Name) and s.value.id == "none"
                                          for s in train.settings)
    try:
        builder.model(chosen, needs_inputs=not data_free)
    except RecursionError:
        # The parser bounds one expression's depth and `expand` the nesting of blocks, but
        # deep expressions inside many nested blocks could still exhaust Python's stack.
        diagnostics.error(f"model `{chosen.name}` nests blocks and expressions too deeply to build",
                          chosen.name_span, help="split deep expressions into several statements")
        return graph
    graph.search_section = _section_for(modules[0], chosen, diagnostics, S.Search)
    if train is not None:
        graph.train_section, graph.train_span = train, train.span
        if not any(getattr(s, "name", None) == "loss" for s in chosen.body):
            diagnostics.error(f"model `{chosen.name}` has a train section but no `loss`", train.span,
                              help="add a statement such as `loss = cross_entropy(logits, label)`")
    return graph


def _collect_blocks(modules, diagnostics) -> dict[str, S.Block]:
    blocks: dict[str, S.Block] = {}
    for module in modules:
        for item in module.items:
            if not isinstance(item, S.Block):
                continue
            if item.name in blocks:
                diagnostics.error(f"block `{item.name}` is defined twice", item.name_span,
                                  notes=[Note("first defined", blocks[item.name].name_span)],
                                  help="rename one of them")
            elif find(item.name) is not None:
                diagnostics.error(f"block `{item.name}` has the name of a built-in op", item.name_span,
                                  help="choose another name for the block")
            else:
                blocks[item.name] = item
    return blocks


def _choose_model(modules, wanted, diagnostics) -> S.Model | None:
    main = [i for i in modules[0].items if isinstance(i, S.Model)]
    every = main + [i for m in modules[1:] for i in m.items if isinstance(i, S.Model)]
    seen: dict[str, S.Model] = {}
    for m in every:
        if m.name in seen:
            diagnostics.error(f"model `{m.name}` is defined twice", m.name_span,
                              notes=[Note("first defined", seen[m.name].name_span)], help="rename one of them")
        seen.setdefault(m.name, m)
    main = [m for m in main if seen[m.name] is m]   # a duplicate is reported above, not as a second model
    if wanted is not None:
        if wanted not in seen:
            diagnostics.error(f"no model named `{wanted}` in {modules[0].source.path}",
                              help=did_you_mean(wanted, seen) or "models here: " + ", ".join(seen))
            return None
        return seen[wanted]
    if len(main) == 1:
        return main[0]
    if not main:
        diagnostics.error(f"{modules[0].source.path} defines no model", modules[0].source.end_span(),
                          help="write `model NAME { input x: [2] ... }`")
        return None
    diagnostics.error(f"{modules[0].source.path} defines several models: " + ", ".join(m.name for m in main),
                      main[1].name_span, help="choose one with --model NAME")
    return None


def _section_for(module, model, diagnostics, kind) -> S.Train | S.Search | None:
    """Return the model's `train` (or `search`: `kind`) section of the main file, None without one."""
    word = "train" if kind is S.Train else "search"
    models = [i for i in module.items if isinstance(i, S.Model)]
    found = None
    for t in (i for i in module.items if isinstance(i, kind)):
        if t.model is None and len(models) > 1:
            diagnostics.error(f"this file has several models; say which one this {word} section is for",
                              t.span, help=f"write `{word} NAME {{ ... }}`")
            continue
        if t.model is not None and t.model not in {m.name for m in models}:
            diagnostics.error(f"{word} section for unknown model `{t.model}`", t.span,
                              help=did_you_mean(t.model, [m.name for m in models])
                              or "models in this file: " + (", ".join(m.name for m in models) or "none"))
            continue
        if t.model in (None, model.name):
            if found is not None:
                diagnostics.error(f"model `{model.name}` has two {word} sections", t.span,
                                  notes=[Note("the first is", found.span)], help="merge them into one")
                continue
            found = t
    return found
