"""The driver and the table of contents: parse -> build -> infer -> plan -> Program.

Input: a `.nn` file or text. Output: a `Program` with stable parameter names,
`run(feeds)` and `gradients(feeds)`. Read top-down, this module is the
pipeline; each stage lives in its own module:

  language.parse      text -> syntax modules (the main file and its imports)
  compiler.build      syntax -> Graph of Node records, names and ops resolved
  (train section)     the model's `train { }` settings, resolved after build
  compiler.infer      Graph -> a type, FLOPs, parameters and state on every node
  compiler.lint       typed Graph -> warnings (unused names, dead code, parameters no gradient reaches)
  compiler.plan       typed Graph -> forward/backward schedule with buffers (per Program.executor)
  runtime.execute     plan + arrays -> values and gradients
"""
from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np

from graphc.compiler.build import build
from graphc.compiler.gc_pause import no_cycle_collection
from graphc.compiler.graph import Graph
from graphc.compiler.infer import infer
from graphc.compiler.lint import lint
from graphc.compiler.plan import rewritten_plan
from graphc.diagnostics import Diagnostic, Diagnostics, GraphcError
from graphc.language import syntax as S
from graphc.language.parse import parse_program
from graphc.language.spaces import fill_written, find_spaces, unfilled_error
from graphc.ops.init import initialise
from graphc.runtime.execute import Executor
from graphc.runtime.feeds import check_feeds
from graphc.runtime.memory import check_memory
from graphc.tensor_type import num_elements
from graphc.training.config import default_settings, resolve_train


def check_file(path: str | Path, model: str | None = None, *, space_values: dict[str, str] | None = None) -> Graph:
    """Return the typed graph of a file's model; raise GraphcError with every error found.

    A file with search spaces needs a value for each (`space_values`: name -> its text,
    from `graphc run --set NAME=VALUE`); without them it is a GraphcError saying how to
    search or fix them (graphc/language/spaces.py).
    """
    with no_cycle_collection():
        modules = parse_program(path)
        return check_modules(fill_spaces(modules, space_values or {}), model)


def fill_spaces(modules, space_values: dict[str, str]):
    """Return the modules with their search spaces filled from `space_values` (unchanged without spaces)."""
    diagnostics = Diagnostics()
    spaces = find_spaces(modules, diagnostics)
    diagnostics.raise_if_errors()
    return fill_written(modules, spaces, space_values) if spaces else modules


def check_every_model(path: str | Path, model: str | None = None) -> list[Graph]:
    """Return the typed graph of every model a file defines (only `model`'s, if given).

    Raises GraphcError with the errors of all the models, each once (a mistake
    in a block two models use is one mistake).
    """
    with no_cycle_collection():
        modules = parse_program(path)
        names = list(dict.fromkeys(item.name for item in modules[0].items if isinstance(item, S.Model)))
        if model is not None or len(names) <= 1:
            return [check_modules(modules, model)]
        graphs, errors, seen = [], [], set()
        for name in names:
            try:
                graphs.append(check_modules(modules, name))
            except GraphcError as error:
                for d in error.diagnostics:
                    key = (d.message, (d.span.source.path, d.span.start) if d.span else None)
                    if key not in seen:   # notes differ (the call sites); the mistake is the same
                        seen.add(key)
                        errors.append(d)
        if errors:
            raise GraphcError(sorted(errors, key=lambda d: (d.span.source.path, d.span.start) if d.span else ("", 0)))
        return graphs


def check_source(text: str, name: str = "<string>", model: str | None = None) -> Graph:
    """Return the typed graph of `.nn` text; raise GraphcError with every error found."""
    with no_cycle_collection():
        return check_modules(parse_program(text=text, name=name), model)


def check_modules(modules, model: str | None = None) -> Graph:
    """Return the typed graph of parsed modules (build, train section, infer, lint); raise GraphcError on errors.

    Warnings are returned in `graph.warnings`, never printed here. Search spaces left
    in the modules are an error (fill them first: `fill_spaces`, graphc/search).
    """
    with no_cycle_collection():
        diagnostics = Diagnostics()
        spaces = find_spaces(modules, diagnostics)
        diagnostics.raise_if_errors()
        if spaces:
            raise unfilled_error(spaces)
        graph = build(modules, diagnostics, model)
        if graph is not None:
            if graph.train_section is not None:
                graph.train = resolve_train(graph.train_section, diagnostics)
            infer(graph, diagnostics)
            if not diagnostics.has_errors:
                graph.warnings.extend(lint(graph))
        diagnostics.raise_if_errors()
        return graph


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
    `warnings` lists what initialisation found questionable (weights that
    start at zero); the caller prints them with `graph.warnings`. Building a
    Program never changes its graph.
    """

    def __init__(self, graph: Graph, dtype: str = "float32", seed: int | None = None,
                 init: tuple[str, dict] | None = None):
        self.graph = graph
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise GraphcError(f"unsupported dtype {dtype}", help="use float32 or float64")
        train = graph.train or default_settings()   # resolve_train filled in every absent key
        self.seed = seed if seed is not None else train["seed"].value
        default_init = init or train["init"].value
        held = [*(p.shape for p in graph.params.values()), *(s.shape for s in graph.state.values())]
        check_memory(sum(num_elements(shape) for shape in held) * self.dtype.itemsize,
                     f"the parameters of `{graph.model}`")
        self.params = initial_params(graph, self.dtype, self.seed, default_init)
        self.warnings: list[Diagnostic] = init_warnings(graph, default_init)
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
            result["loss"] = self.reduce_loss(values[self.graph.loss])
        return result

    def gradients(self, feeds: dict, train: bool = True, *, intermediates: bool = False) -> dict:
        """Return d objective / d every parameter and float input (and every op node, if asked).

        By default in training mode: the objective a training step minimises (dropout
        drops, batchnorm normalises with the batch's statistics and updates its
        running ones). `train=False` differentiates the inference-mode model.
        """
        values, grads = self.forward_backward(feeds, train=train)
        keep = set(self.executor_for_backward().plan.grad_targets)
        if intermediates:
            graph = self.graph
            return {k: v for k, v in grads.items() if k in keep or (k in graph.nx and graph.node(k).kind == "op")}
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
            batch = next(iter(feeds.values())).shape[0] if feeds else 1   # no inputs: `data = none`
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
        key = (wanted, backward, input_grads)
        if key not in self._executors:
            # Rewritten (compiler/rewrite.py) unless input gradients are asked for: those callers read intermediates.
            schedule = rewritten_plan(self.graph, list(wanted), backward=backward, input_grads=input_grads)
            self._executors[key] = Executor(self.graph, schedule, self.dtype)
        return self._executors[key]

    def loss_value(self, values: dict) -> float:
        """Return the objective's value as a float (the batch mean of a per-sample loss)."""
        return float(self.reduce_loss(values[self.graph.objective]))

    def check_feeds(self, feeds: dict, *, need_labels: bool) -> tuple[dict, int]:
        """Return feeds converted to the model's dtypes and shapes, and the batch size.

        A missing input, a wrong shape, a non-number, or a label outside [0, K)
        is a GraphcError naming the input.
        """
        return check_feeds(self.graph, feeds, self.dtype, need_labels=need_labels)

    def reduce_loss(self, value: np.ndarray) -> np.ndarray:
        """Return the objective's value as a training step sees it.

        A per-sample `loss` is averaged over the batch (a 0-d array of the
        model's dtype); an objective that is not (the single output, or a
        loss already reduced) is returned as a copy.
        """
        t = self.graph.type_of(self.graph.objective) if self.graph.objective else None
        if self.graph.loss is not None and t is not None and t.batched:
            return np.asarray(value.mean(), self.dtype)
        return np.array(value)

    def _computable(self, feeds) -> list[str]:
        """Return the outputs (and loss) whose inputs and labels are all fed."""
        graph, wanted = self.graph, []
        fed = set(feeds)
        for node in [*graph.outputs.values(), *([graph.loss] if graph.loss else [])]:
            sources = {n for n in nx.ancestors(graph.nx, node) | {node} if graph.node(n).kind in ("input", "label")}
            if sources <= fed and node not in wanted:
                wanted.append(node)
        return wanted

    def _value_of(self, name, values):
        return values[name] if name in values else self.params[name]


def initial_params(graph: Graph, dtype, seed: int, default_init) -> dict[str, np.ndarray]:
    """Return freshly initialised parameters, deterministic for a seed.

    A parameter that follows the default uses the train section's `init`
    (`default_init`: (scheme, keyword arguments)), the others their own.
    """
    rng = np.random.default_rng(seed)
    params = {}
    for name, info in graph.params.items():
        scheme, kwargs = _scheme(info, default_init)
        params[name] = initialise(info.shape, scheme, rng, fan_in=info.fans[0], fan_out=info.fans[1],
                                  dtype=dtype, **kwargs)
    return params


def init_warnings(graph: Graph, default_init) -> list[Diagnostic]:
    """Return a warning for every weight matrix that `initial_params` starts at zero.

    Identical weights never break symmetry: every unit would learn the same thing.
    """
    warnings = []
    for name, info in graph.params.items():
        if _scheme(info, default_init)[0] == "zeros" and len(info.shape) >= 2:
            warnings.append(Diagnostic(
                "warning", f"weights `{name}` start at zero", info.span,
                "identical weights never break symmetry: every unit learns the same thing; use he or xavier"))
    return warnings


def _scheme(info, default_init) -> tuple[str, dict]:
    """Return the (initialiser, keyword arguments) a parameter starts from."""
    return default_init if info.follows_default else (info.init, info.init_args)
