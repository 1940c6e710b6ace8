"""The driver: parse -> build -> infer -> plan, and the `Program` users hold.

Input: a `.nn` file or text. Output: a `Program` with stable parameter names,
`run(feeds)` and `gradients(feeds)`. This module is the table of contents of
the pipeline; each stage lives in its own module.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from graphc.compiler.build import build
from graphc.compiler.graph import Graph
from graphc.compiler.infer import infer
from graphc.diagnostics import Diagnostics, GraphcError
from graphc.language.parse import parse_program


def check_file(path: str | Path, model: str | None = None) -> Graph:
    """Return the typed graph of a file's model; raise GraphcError with every error found."""
    with _no_cycle_collection():
        return check_modules(parse_program(path), model)


def check_source(text: str, name: str = "<string>", model: str | None = None) -> Graph:
    """Return the typed graph of `.nn` text; raise GraphcError with every error found."""
    with _no_cycle_collection():
        return check_modules(parse_program(text=text, name=name), model)


def check_modules(modules, model: str | None = None) -> Graph:
    """Return the typed graph of parsed modules (build + infer)."""
    with _no_cycle_collection():
        diagnostics = Diagnostics()
        graph = build(modules, diagnostics, model)
        if graph is not None:
            infer(graph, diagnostics)
        diagnostics.raise_if_errors()
        return graph


# After a check that left more new objects than this, collect at once (see below).
_COLLECT_AFTER = 200_000


@contextmanager
def _no_cycle_collection():
    """Pause Python's cycle collector while checking (reference counting still frees memory).

    The front end allocates a few objects per token and per node and keeps
    nearly all of them; each collection those allocations trigger walks them
    all again, which made checking a 50,000-node model ~40% slower and grow
    faster than linearly. Checking makes almost no reference cycles (a few
    per syntax error), so nothing piles up meanwhile. Left alone, the
    collector would then walk the new objects several times as they age
    through its generations; after a large check one full collection right
    away costs less. Nested uses (check_file -> check_modules) pause once.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        if gc.get_count()[0] > _COLLECT_AFTER:
            gc.collect()


def compile_file(path: str | Path, dtype: str = "float32", *, model: str | None = None,
                 seed: int | None = None) -> "Program":
    """Return the compiled Program of a `.nn` file (GraphcError lists every problem)."""
    return Program(check_file(path, model), dtype=dtype, seed=seed)


def compile_source(text: str, name: str = "<string>", dtype: str = "float32", *, model: str | None = None,
                   seed: int | None = None) -> "Program":
    """Return the compiled Program of `.nn` text."""
    return Program(check_source(text, name, model), dtype=dtype, seed=seed)


class Program:
    """A compiled model: parameters with stable names, and run/gradients on fed arrays.

    `params` maps `<node>.<role>` (or a `param` name) to a writable array;
    `state` holds running statistics. The objective is `loss` when declared
    (averaged over the batch), else the single output (seeded with ones).
    """

    def __init__(self, graph: Graph, dtype: str = "float32", seed: int | None = None,
                 init: tuple[str, dict] | None = None):
        self.graph = graph
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise GraphcError(f"unsupported dtype {dtype}", help="use float32 or float64")
        train = graph.train or {}
        self.seed = seed if seed is not None else (train["seed"].value if "seed" in train else 0)
        default_init = init or (train["init"].value if "init" in train else ("he", {}))
        self.params = initial_params(graph, self.dtype, self.seed, default_init)
        self.state = {name: np.full(s.shape, s.fill, self.dtype) for name, s in graph.state.items()}
        self.rng = np.random.default_rng(self.seed + 1)
        self._executors: dict = {}

    # ---- the public API ------------------------------------------------------
    def run(self, feeds: dict, train: bool = False) -> dict:
        """Return every output, and "loss" when its labels are fed, as NumPy arrays."""
        feeds, batch = self.check_feeds(feeds, need_labels=False)
        wanted = self._computable(feeds)
        executor = self.executor(tuple(wanted), backward=False)
        values = executor.forward(feeds, self.params, self.state, train=train, rng=self.rng, batch=batch)
        result = {name: np.array(values[node]) for name, node in self.graph.outputs.items() if node in values}
        if self.graph.loss in values:
            result["loss"] = self._reduce_loss(values[self.graph.loss])
        return result

    def gradients(self, feeds: dict, train: bool = False, *, intermediates: bool = False) -> dict:
        """Return d objective / d every parameter and float input (and every op node, if asked)."""
        values, grads = self.forward_backward(feeds, train=train)
        keep = set(self.executor_for_backward().plan.grad_targets)
        if intermediates:
            return {k: v for k, v in grads.items() if k in keep or self.graph.nx.nodes.get(k, {}).get("kind") == "op"}
        return {k: np.array(grads[k]) if k in grads else np.zeros_like(self._value_of(k, values)) for k in keep}

    # ---- used by the trainer and the command line -------------------------------
    def forward_backward(self, feeds: dict, *, train: bool = True, checked: bool = True,
                         input_grads: bool = True, profile: tuple[dict, dict] | None = None):
        """Return (values, grads) of one forward and backward pass over a batch.

        With `profile=(forward_times, backward_times)`, per-node seconds are added to both dicts.
        """
        if checked:
            feeds, batch = self.check_feeds(feeds, need_labels=True)
        else:
            batch = next(iter(feeds.values())).shape[0]
        executor = self.executor_for_backward(input_grads)
        values = executor.forward(feeds, self.params, self.state, train=train, rng=self.rng, batch=batch,
                                  profile=profile[0] if profile else None)
        objective = self.graph.objective
        out = values[objective]
        t = self.graph.type_of(objective)
        if self.graph.loss is not None and t.batched:
            seed = np.full(out.shape, 1.0 / batch, self.dtype)
        else:
            seed = np.ones(out.shape, self.dtype)
        return values, executor.backward(values, seed, profile=profile[1] if profile else None)

    def executor_for_backward(self, input_grads: bool = True):
        """Return the executor of the objective and its gradients (of the float inputs too, if asked)."""
        if self.graph.objective is None:
            raise GraphcError(f"model `{self.graph.model}` has no objective to differentiate",
                              span=self.graph.model_span,
                              help="declare `loss = ...`, or exactly one `output`")
        wanted = tuple(self.graph.outputs.values())
        return self.executor(wanted, backward=True, input_grads=input_grads)

    def executor(self, wanted: tuple, backward: bool, input_grads: bool = True):
        """Return (and cache) the executor of the plan for these nodes."""
        from graphc.compiler.plan import plan
        from graphc.runtime.execute import Executor
        key = (wanted, backward, input_grads)
        if key not in self._executors:
            schedule = plan(self.graph, list(wanted), backward=backward, input_grads=input_grads)
            self._executors[key] = Executor(self.graph, schedule, self.dtype)
        return self._executors[key]

    def loss_value(self, values: dict) -> float:
        """Return the objective's value as a float (the batch mean of a per-sample loss)."""
        return float(self._reduce_loss(values[self.graph.objective]))

    def check_feeds(self, feeds: dict, *, need_labels: bool) -> tuple[dict, int]:
        """Return feeds converted to the model's dtypes and shapes, and the batch size.

        A missing input, a wrong shape, a non-number, or a label outside [0, K)
        is a GraphcError naming the input.
        """
        from graphc.runtime.feeds import check_feeds
        return check_feeds(self.graph, feeds, self.dtype, need_labels=need_labels)

    def _computable(self, feeds) -> list[str]:
        import networkx as nx
        G, wanted = self.graph.nx, []
        fed = set(feeds)
        for node in [*self.graph.outputs.values(), *([self.graph.loss] if self.graph.loss else [])]:
            sources = {n for n in nx.ancestors(G, node) | {node} if G.nodes[n]["kind"] in ("input", "label")}
            if sources <= fed and node not in wanted:
                wanted.append(node)
        return wanted

    def _reduce_loss(self, value):
        t = self.graph.type_of(self.graph.objective) if self.graph.objective else None
        if self.graph.loss is not None and t is not None and t.batched:
            return np.asarray(value.mean(), self.dtype)
        return np.array(value)

    def _value_of(self, name, values):
        return values[name] if name in values else self.params[name]


def initial_params(graph: Graph, dtype, seed: int, default_init) -> dict[str, np.ndarray]:
    """Return freshly initialised parameters, deterministic for a seed.

    A parameter that follows the default uses the train section's `init`;
    weights that start at zero get a warning (identical weights never break symmetry).
    """
    from graphc.diagnostics import Diagnostic
    from graphc.ops.init import initialise
    rng = np.random.default_rng(seed)
    params = {}
    for name, info in graph.params.items():
        scheme, kwargs = default_init if info.follows_default else (info.init, info.init_args)
        params[name] = initialise(info.shape, scheme, rng, fan_in=info.fans[0], fan_out=info.fans[1],
                                  dtype=dtype, **kwargs)
        if scheme == "zeros" and len(info.shape) >= 2:
            graph.warnings.append(Diagnostic(
                "warning", f"weights `{name}` start at zero", info.span,
                "identical weights never break symmetry: every unit learns the same thing; use he or xavier"))
    return params
