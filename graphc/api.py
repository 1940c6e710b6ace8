"""The Python API: a Program that also trains, saves and loads itself, through the code `graphc run` uses.

    prog = graphc.compile_file("models/mlp.nn")
    result = prog.fit("mnist", epochs=5)           # or prog.fit({"x": X, "y": Y}, epochs=5)
    prog.save("mlp.npz"); prog.load("mlp.npz")

`graphc.program.Program` (run, gradients) sits below the training stage, which
imports it; so fit/save/load live here, a leaf like the command line, on a
subclass that `graphc.compile_file` and `graphc.compile_source` return.
`fit` is `graphc.training.trainer.train` with the train section's settings:
same data split, same seeds, same files, the same weights as `graphc run`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from graphc.diagnostics import GraphcError
from graphc.program import Program as CoreProgram
from graphc.program import check_file, check_source
from graphc.search.study import SearchOptions
from graphc.search.study import search as run_search
from graphc.training.batching import TrainData
from graphc.training.checkpoint import load_weights, save_weights
from graphc.training.config import train_config
from graphc.training.data import Dataset
from graphc.training.trainer import TrainResult, train

# The data name of a run fed arrays (not a path: train_config would look for a folder of that name).
ARRAYS = "<arrays>"


class Program(CoreProgram):
    """A compiled model (run, gradients, params) that can also `fit`, `save` and `load`."""

    def fit(self, data=None, *, epochs: int | None = None, batch: int | None = None, settings=(),
            test: dict | None = None, out=None, limit: int | None = None, limit_test: int | None = None,
            resume: bool = False, verbose: bool = False) -> TrainResult:
        """Train this program's parameters in place as `graphc run` would; return the TrainResult.

        `data`: None (the train section's `data`), a dataset name or .npz/.csv
        path or directory, or a dict of arrays keyed by the model's input and
        label names (the training split; `test` is an optional dict like it).
        `settings` are `--set` overrides ("optimizer=adam(lr=0.001)"). The run's
        files (weights, best weights, metrics, curves, checkpoint) go to `out`
        (default runs/<model>, as `graphc run`). `verbose` prints the progress
        lines and shows bars on a terminal.
        """
        return fit(self, data, epochs=epochs, batch=batch, settings=settings, test=test, out=out, limit=limit,
                   limit_test=limit_test, resume=resume, verbose=verbose)

    def save(self, path) -> None:
        """Write the parameters and running state to the .npz file `path` (atomically); returns None."""
        save_weights(self, path)

    def load(self, path) -> dict:
        """Load parameters and state from a weights .npz (or a checkpoint.npz); return the file's metadata."""
        return load_weights(self, path)


def compile_file(path: str | Path, dtype: str = "float32", *, model: str | None = None,
                 seed: int | None = None) -> Program:
    """Return the compiled Program of a `.nn` file (GraphcError lists every problem)."""
    return Program(check_file(path, model), dtype=dtype, seed=seed)


def compile_source(text: str, name: str = "<string>", dtype: str = "float32", *, model: str | None = None,
                   seed: int | None = None) -> Program:
    """Return the compiled Program of `.nn` text."""
    return Program(check_source(text, name, model), dtype=dtype, seed=seed)


def fit(program: CoreProgram, data=None, *, epochs: int | None = None, batch: int | None = None,
        settings=(), test: dict | None = None, out=None, limit: int | None = None, limit_test: int | None = None,
        resume: bool = False, verbose: bool = False) -> TrainResult:
    """Train `program` in place with its train section (see `Program.fit`); return the TrainResult."""
    arrays = isinstance(data, dict)
    if test is not None and not arrays:
        raise GraphcError("fit(test=...) goes with training arrays: pass data as a dict of arrays too")
    cfg = train_config(program.graph, list(settings), epochs=epochs, batch=batch,
                       data=ARRAYS if arrays else None if data is None else str(data))
    if arrays:
        dataset = _dataset_of(program, data, test)
        train_data = TrainData.fitted(program, cfg, dataset, limit=limit, limit_test=limit_test)
    else:
        train_data = TrainData.load(program, cfg, limit=limit, limit_test=limit_test)
    say: Callable[[str], None] | None = (lambda text: print(text, flush=True)) if verbose else None
    out_dir = Path(out) if out is not None else Path("runs") / program.graph.model
    return train(program, cfg, train_data, out_dir, resume=resume, say=say, progress=verbose)


def _dataset_of(program, train_split: dict, test_split: dict | None) -> Dataset:
    """Return the Dataset of arrays keyed by the model's input and label names."""
    graph = program.graph
    TrainData.check_model(program)
    names = (graph.inputs[0], graph.labels[0])

    def pair(split: dict, which: str) -> tuple[np.ndarray, np.ndarray]:
        missing = [n for n in names if n not in split]
        extra = sorted(set(split) - set(names))
        if missing or extra:
            raise GraphcError(f"the {which} arrays must be keyed by the model's input and label: "
                              f"{', '.join(names)}" + (f"; missing {', '.join(missing)}" if missing else "")
                              + (f"; unknown {', '.join(extra)}" if extra else ""))
        x, y = (np.asarray(split[n]) for n in names)
        if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
            raise GraphcError(f"the {which} arrays need one row per sample: `{names[0]}` has shape "
                              f"{list(x.shape)}, `{names[1]}` {list(y.shape)}")
        return x, y

    x_train, y_train = pair(train_split, "training")
    x_test, y_test = pair(test_split, "test") if test_split is not None else (None, None)
    return Dataset(ARRAYS, x_train, y_train, x_test, y_test, num_classes=None)


def search(path: str | Path, *, trials: int | None = None, out=None, storage: str | None = None,
           study: str | None = None, sampler: str | None = None, model: str | None = None, data: str | None = None,
           limit: int | None = None, epochs: int | None = None, settings=(), verbose: bool = False) -> dict:
    """Run (or continue) the hyperparameter search of a `.nn` file with search spaces, as `graphc search` does.

    Returns the summary: the study's name and storage, its trials counted by state, the best
    trials (number, value, params) and the files written (best.nn, best-weights.npz, plots).
    """
    options = SearchOptions(Path(path), model=model, trials=trials, storage=storage, study=study,
                            out=Path(out) if out is not None else None, data=data, limit=limit, epochs=epochs,
                            sets=list(settings), sampler=sampler)
    return run_search(options, say=(lambda line: print(line, flush=True)) if verbose else (lambda line: None))
