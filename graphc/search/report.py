"""What a search shows and leaves: the live table, the best trials, best.nn, the best weights, the plots.

Input: the study (Optuna), the file's modules and spaces, the output folder.
Output: lines through `say` and, in the folder, `best.nn` (the main file with
the best trial's values filled in and formatted by `fmt`, so that
`graphc run best.nn` trains that trial again), `best-weights.npz` (a copy of
the best trial's weights, when its run folder is on this machine), and the
plots of search/plots.py. `--report` redraws all of it from the storage alone.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

from graphc.language import syntax as S
from graphc.language.fmt import format_module
from graphc.language.spaces import Space, fill
from graphc.search.plots import best_trials as ranked_trials
from graphc.search.plots import draw_search_plots
from graphc.training.checkpoint import atomic_write

BEST_SHOWN = 5


class TrialTable:
    """Prints one line per finished trial: number, values, metric, state, seconds (header first)."""

    def __init__(self, names: list[str], metric: str, say: Callable[[str], None]):
        self.names, self.metric, self.say = names, metric, say
        self.widths = [max(len(n), 9) for n in names]
        self.header_done = False

    def row(self, trial) -> None:
        """Print the line of a finished trial (the header before the first); returns None."""
        if trial is None:
            return
        if not self.header_done:
            self.say(_line(["trial", *self.names, self.metric, "state", "seconds"], [5, *self.widths, 8, 8, 7]))
            self.header_done = True
        self.say(trial_line(trial, self.names, self.widths))


def trial_line(trial, names: list[str], widths: list[int]) -> str:
    """Return one trial's table line."""
    values = [_show(trial.params.get(n, "-")) for n in names]
    value = f"{trial.value:.4f}" if trial.value is not None else "-"
    state = trial.state.name.lower()
    if state == "fail" and trial.user_attrs.get("error"):
        state += f" ({trial.user_attrs['error'][:60]})"
    seconds = trial.user_attrs.get("seconds")
    return _line([str(trial.number), *values, value, state, f"{seconds:.1f}" if seconds is not None else "-"],
                 [5, *widths, 8, 8, 7])


def _line(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.rjust(w) if i < len(cells) - 2 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def _show(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def best_completed(study, n: int = BEST_SHOWN) -> list:
    """Return the `n` best completed trials, best first (the plots' ranking, pruned trials left out)."""
    return [t for t in ranked_trials(study, len(study.trials)) if t.state.name == "COMPLETE"][:n]


def finish_study(study, modules, spaces: list[Space], config, out: Path, shown: str,
                 say: Callable[[str], None], order: list[str] = ()) -> dict:
    """Print the counts and the best trials; write best.nn, the best weights and the plots; return the summary.

    `order`: the parameters' column order (the file's); others follow by name.
    """
    trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    say(f"study `{study.study_name}` ({shown}): " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    best = best_completed(study)
    summary = {"study": study.study_name, "storage": shown, "counts": counts,
               "best": [{"number": t.number, "value": t.value, "params": t.params} for t in best], "files": []}
    if not best:
        say("no trial completed: nothing to report")
        return summary
    names = [n for n in order if any(n in t.params for t in best)]
    names += sorted({k for t in best for k in t.params} - set(names))
    widths = [max(len(n), 9) for n in names]
    say(f"best {len(best)} by {config.metric} ({study.direction.name.lower()}):")
    say(_line(["trial", *names, config.metric, "state", "seconds"], [5, *widths, 8, 8, 7]))
    for t in best:
        say(trial_line(t, names, widths))
    files = summary["files"]
    if modules is not None:
        files.append(write_best_source(modules, spaces, best[0], out))
    weights = Path(best[0].user_attrs.get("run_dir", "")) / "weights.npz"
    if weights.is_file():
        target = out / "best-weights.npz"
        atomic_write(target, lambda f: f.write(weights.read_bytes()))
        files.append(target)
    try:
        drawn = draw_search_plots(study, out)
        files.extend(drawn.paths)
        for note in drawn.notes:
            say(f"({note})")
    except ImportError as error:
        say(f"(no plots: {error}; pip install 'graphc[search]')")
    say("wrote " + ", ".join(str(f) for f in files))
    summary["files"] = [str(f) for f in files]
    return summary


def write_best_source(modules, spaces: list[Space], trial, out: Path) -> Path:
    """Write `out/best.nn`: the main file with the trial's values, includes and data paths made relative to `out`."""
    def choose(space: Space):
        value = trial.params[space.name]
        return space.labels.index(value) if space.kind == "choice" else value
    module = fill(modules, spaces, choose)[0]
    source_dir = Path(module.source.path).resolve().parent
    module = _moved(module, source_dir, out.resolve())
    header = (f"# best trial {trial.number} of the search (value {trial.value:.4f}): "
              + ", ".join(f"{k}={_show(v)}" for k, v in trial.params.items()) + "\n")
    text = header + format_module(module)
    path = out / "best.nn"
    atomic_write(path, lambda f: f.write(text.encode()))
    return path


def _moved(module: S.Module, source_dir: Path, target_dir: Path) -> S.Module:
    """Return the module with include paths and a relative `data` file path rewritten to work from `target_dir`."""
    def rel(path: str) -> str:
        return os.path.relpath(source_dir / path, target_dir) if not os.path.isabs(path) else path
    items = []
    for item in module.items:
        if isinstance(item, S.Include):
            item = dataclasses.replace(item, path=rel(item.path))
        elif isinstance(item, S.Train):
            settings = tuple(dataclasses.replace(s, value=dataclasses.replace(s.value, value=rel(s.value.value)))
                             if s.key == "data" and isinstance(s.value, S.String)
                             and (source_dir / s.value.value).exists() else s for s in item.settings)
            item = dataclasses.replace(item, settings=settings)
        items.append(item)
    return dataclasses.replace(module, items=tuple(items))
