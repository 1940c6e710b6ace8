"""`graphc search`: a study of trials on Optuna, each trial one ordinary training run.

Input: a `.nn` file with search spaces (graphc/language/spaces.py), its search
section (search/settings.py) and the command's options. Output: in `--out`, the
study (a journal file unless `--storage` names a database), one run folder per
trial under `trials/` (the same files `graphc run` writes, by the same
`training.trainer.train`), a line per finished trial as it goes, and at the end
the best trials, `best.nn` (the file with the best values filled in, formatted),
the best trial's weights and the plots (search/report.py).

A trial: Optuna's sampler picks each space's value (define-by-run, so a choice's
nested spaces are sampled only when their option is chosen), the filled-in
program is compiled and trained, every epoch's metric goes to the pruner, and
the last epoch's metric is the trial's value (the textbook's score). Workers
(`--jobs`, or the same command on other machines) share the study; the budget
lock (search/storage.py) makes `trials = N` exact.
"""
from __future__ import annotations

import importlib.util
import math
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from graphc.diagnostics import GraphcError
from graphc.language.parse import parse_program
from graphc.language.spaces import Space, all_spaces, fill
from graphc.program import Program, check_modules
from graphc.search.report import TrialTable, finish_study
from graphc.search.settings import SearchConfig
from graphc.search.storage import open_storage
from graphc.search.variants import check_spaces
from graphc.training.batching import TrainData
from graphc.training.binding import bind
from graphc.training.config import train_config
from graphc.training.trainer import train

COUNTED = ("COMPLETE", "PRUNED", "RUNNING", "WAITING")   # trials that use the budget (a failed one does not)
# A study's metric names -> the keys of a training run's epoch records (training/trainer.py).
RECORD_KEYS = {"val_acc": "val_accuracy", "train_acc": "train_accuracy", "val_loss": "val_loss",
               "train_loss": "train_loss"}


@dataclass
class SearchOptions:
    """The command's options, as values (the Python API fills the same record)."""
    path: Path
    model: str | None = None
    trials: int | None = None
    storage: str | None = None
    study: str | None = None
    out: Path | None = None
    jobs: int = 1
    data: str | None = None
    limit: int | None = None
    epochs: int | None = None
    sets: list[str] = field(default_factory=list)
    worker: int = 0           # > 0: the k-th helper process started by --jobs (no final report)
    sampler: str | None = None   # --sampler: overrides the search section's


class TrialFailed(Exception):
    """A trial whose program or training failed (a diagnostic): recorded FAIL, not retried, the study goes on."""


def search(options: SearchOptions, say: Callable[[str], None] = print) -> dict:
    """Run (or continue) the study until it holds `trials` finished trials; return the final summary dict.

    The summary: study name, storage, counts by state, the best trials, the files written.
    """
    import optuna  # the search extra, imported by the command that searches
    # Optuna logs each failed trial with a traceback; the table says it in one line.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    modules = parse_program(options.path)
    graph, spaces, config, _ = check_spaces(modules, options.model)
    if not spaces:
        raise GraphcError(f"{options.path} has no search spaces: nothing to search",
                          help="write a space where a value goes, e.g. optimizer = sgd(lr=loguniform(1e-4, 1e-1))")
    if options.sampler is not None:
        config.sampler = options.sampler
    if config.sampler == "grid":
        config.grid = grid_of(spaces)
    if options.trials is not None:
        if options.trials < 1:
            raise GraphcError(f"--trials must be at least 1, got {options.trials}")
        config.trials = options.trials
    out = Path(options.out or Path("runs") / f"{graph.model}-search")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise GraphcError(f"cannot create the output folder {out}: {error.strerror}") from None
    storage, lock, shown = open_storage(options.storage, out)
    name = options.study or graph.model
    lock = lock.for_study(name)
    study = _open_study(optuna, storage, name, config, lock, options, graph.model)
    helpers = _start_helpers(options, out) if options.jobs > 1 and not options.worker else []
    if helpers:
        _single_blas_thread()
    table = TrialTable([s.name for s in all_spaces(spaces)], config.metric, say)
    if not options.worker:
        say(f"study `{name}` in {shown}: {config.trials} trials, sampler {config.sampler}, pruner {config.pruner}, "
            f"{config.direction} {config.metric}; trials in {out / 'trials'}")
    runner = _TrialRunner(modules, spaces, config, options, out)
    _work(optuna, study, runner, lock, config, options, name, table, say)
    for process in helpers:
        process.wait()
    if options.worker:
        return {}
    return finish_study(study, modules, spaces, config, out, shown, say, order=[s.name for s in all_spaces(spaces)])


def _work(optuna, study, runner: "_TrialRunner", lock, config: SearchConfig, options: SearchOptions, name: str,
          table: TrialTable, say: Callable[[str], None]) -> None:
    """Run trials while the study's budget has room (then wait for other workers' trials); returns None."""
    started = time.monotonic()
    while True:
        runner.last = None
        others_running = False
        lock.acquire()
        try:
            _fail_stale_trials(optuna, study, options.storage)
            if _count(study, COUNTED) >= config.trials and not _count(study, ("WAITING",)):
                # The budget is spoken for. Wait while other workers' trials run: one may die,
                # and its retry (a WAITING trial) must still be run by a live worker.
                others_running = _count(study, ("RUNNING",)) > 0
                if not others_running:
                    break
            elif _count(study, ("FAIL",)) >= max(config.trials, 10):
                raise GraphcError(f"{_count(study, ('FAIL',))} trials of study `{name}` failed; stopping",
                                  help="the table above says why each failed (a diverging learning rate? a "
                                       "shape only some values break?); narrow the spaces")
            if config.timeout is not None and time.monotonic() - started > config.timeout:
                say(f"timeout: {config.timeout:g} s passed; no more trials from this worker")
                break
            if not others_running:
                study.optimize(lambda trial: runner.objective(trial, lock), n_trials=1, catch=(TrialFailed,),
                               gc_after_trial=False)
        finally:
            lock.release()
        if others_running:
            time.sleep(1.0)
            continue
        if runner.last is not None:
            table.row(study.trials[runner.last] if runner.last < len(study.trials) else None)


def _open_study(optuna, storage, name: str, config: SearchConfig, lock, options, model: str):
    """Return the study, created (under the lock, so concurrent workers do not race) if it does not exist."""
    sampler = _sampler(optuna, config, 0)
    pruner = _pruner(optuna, config, options)
    lock.acquire()
    try:
        study = optuna.create_study(study_name=name, storage=storage, direction=config.direction, sampler=sampler,
                                    pruner=pruner, load_if_exists=True)
        if study.direction.name.lower() != config.direction:
            raise GraphcError(f"study `{name}` already exists and is to {study.direction.name.lower()}, "
                              f"not {config.direction}", help="choose another --study name")
        attrs = study.user_attrs
        if "metric" not in attrs:
            study.set_user_attr("metric", config.metric)
            study.set_user_attr("direction", config.direction)
            study.set_user_attr("source", str(Path(options.path).resolve()))
            study.set_user_attr("model", model)
        elif attrs["metric"] != config.metric:
            raise GraphcError(f"study `{name}` optimises {attrs['metric']}, not {config.metric}",
                              help="choose another --study name, or the same metric")
        # Seeded from how many trials exist: a resumed study does not replay the values it already tried.
        # Helpers (--jobs) and workers on other machines each draw their own stream (a shared database's
        # workers mix in their process id): equal seeds would make them try the same values.
        offset = len(study.trials) + 100_003 * options.worker
        if options.storage is not None and "://" in options.storage and not options.storage.startswith("sqlite"):
            offset += 7 * os.getpid()
        study.sampler = _sampler(optuna, config, offset)
    finally:
        lock.release()
    return study


def _sampler(optuna, config: SearchConfig, offset: int):
    seed = config.seed + offset
    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if config.sampler == "cmaes":
        if importlib.util.find_spec("cmaes") is None:   # Optuna's CmaEsSampler needs it: say so before a trial
            raise GraphcError("sampler = cmaes needs the cmaes package", help="pip install cmaes")
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if config.sampler == "grid":
        return optuna.samplers.GridSampler(config.grid, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(optuna, config: SearchConfig, options):
    if config.pruner == "none":
        return optuna.pruners.NopPruner()
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    # Five finished trials before it judges, and never on a trial's first epoch (Optuna prunes from
    # step n_warmup_steps on; steps are epochs 1, 2, ...): one epoch says little about a learning rate.
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)


def _count(study, states) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state.name in states)


def _fail_stale_trials(optuna, study, storage_url) -> None:
    """Fail and re-queue (same values) the trials whose worker died; returns None.

    PostgreSQL: Optuna's heartbeat (search/storage.py) names them, and its retry callback
    queues the copy. The journal file has no heartbeat (a killed worker leaves its trial
    RUNNING forever): this machine's trials whose process is gone are failed and re-queued here.
    """
    if storage_url is not None and "://" in storage_url and not storage_url.startswith("sqlite"):
        optuna.storages.fail_stale_trials(study)
        return
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if t.user_attrs.get("host") != host or pid is None or pid == os.getpid() or _alive(pid):
            continue
        study._storage.set_trial_user_attr(t._trial_id, "error", "its worker process died (killed?)")
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)


def _single_blas_thread() -> None:
    """Limit this process's BLAS to one thread when threadpoolctl is installed (as its helpers are); returns None."""
    try:
        from threadpoolctl import threadpool_limits  # optional (the train extra); without it BLAS keeps its threads
    except ImportError:
        return
    threadpool_limits(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_helpers(options: SearchOptions, out: Path) -> list[subprocess.Popen]:
    """Start `--jobs - 1` more worker processes of the same command on this machine; return them."""
    storage = options.storage or str(out / "study.log")
    argv = [sys.executable, "-m", "graphc", "search", str(options.path), "--storage", storage, "--out", str(out)]
    for flag, value in (("--model", options.model), ("--trials", options.trials), ("--study", options.study),
                        ("--sampler", options.sampler),
                        ("--data", options.data), ("--limit", options.limit), ("--epochs", options.epochs)):
        if value is not None:
            argv += [flag, str(value)]
    for item in options.sets:
        argv += ["--set", item]
    # One BLAS thread per worker: N workers with N BLAS threads each would fight over the cores
    # (measured here: a loaded 2-core machine ran a trial's matrix products 20x slower).
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return [subprocess.Popen([*argv, "--worker", str(k)], stdout=subprocess.DEVNULL, env=env)
            for k in range(1, options.jobs)]


class _TrialRunner:
    """Runs one trial: values from the sampler, the filled-in program trained by the ordinary trainer."""

    def __init__(self, modules, spaces: list[Space], config: SearchConfig, options: SearchOptions, out: Path):
        self.modules, self.spaces, self.config, self.options, self.out = modules, spaces, config, options, out
        self.bound: dict = {}     # the dataset, loaded once per worker (every trial binds the same data)
        self.last: int | None = None

    def objective(self, trial, lock) -> float:
        """Return the trial's value (its last epoch's metric); raise TrialFailed or optuna.TrialPruned."""
        import optuna  # the search extra (see search())
        lock.release()    # the trial exists now: other workers may ask for theirs
        self.last = trial.number
        started = time.monotonic()
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        run_dir = self.out / "trials" / f"trial-{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        curves: dict[str, list] = {}
        metric = RECORD_KEYS[self.config.metric]
        try:
            graph = check_modules(fill(self.modules, self.spaces, lambda s: _suggest(trial, s)), self.options.model)
            cfg = train_config(graph, self.options.sets, epochs=self.options.epochs, data=self.options.data)
            program = Program(graph, seed=cfg.seed, init=cfg.init)
            data = self._data(program, cfg)

            def on_epoch(record: dict) -> None:
                for name, key in RECORD_KEYS.items():
                    if key in record:
                        curves.setdefault(name, []).append(float(record[key]))
                value = record.get(metric)
                if value is not None and math.isfinite(value):
                    trial.report(float(value), record["epoch"])
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"pruned after epoch {record['epoch']}")
            # With several workers on this machine each trial keeps to one core (the workers share them).
            threads = 1 if self.options.jobs > 1 or self.options.worker else None
            result = train(program, cfg, data, run_dir, on_epoch=on_epoch, checkpoints=False, threads=threads)
        except GraphcError as error:
            trial.set_user_attr("error", error.diagnostics[0].message[:300])
            raise TrialFailed(error.diagnostics[0].message) from None
        finally:
            trial.set_user_attr("curves", curves)
            trial.set_user_attr("seconds", round(time.monotonic() - started, 3))
        value = result.history[-1].get(metric) if result.history else None
        if value is None or not math.isfinite(value):
            trial.set_user_attr("error", f"no finite {self.config.metric} after training")
            raise TrialFailed(f"no finite {self.config.metric}")
        return float(value)

    def _data(self, program, cfg):
        key = (cfg.data, cfg.data_dir, cfg.data_root, cfg.scale)
        if key not in self.bound:
            self.bound[key] = bind(program.graph, cfg)
        return TrainData.from_bound(program, cfg, self.bound[key], limit=self.options.limit)


def grid_of(spaces: list[Space]) -> dict[str, list]:
    """Return the grid sampler's search space: every value of every space; GraphcError for a continuous one."""
    grid = {}
    for space in spaces:
        if any(space.nested):
            raise GraphcError(f"sampler = grid cannot search `{space.name}`: its options hold spaces of their own",
                              span=space.call.span, help="use tpe or random, or flatten the choice")
        if space.kind == "choice":
            grid[space.name] = list(space.labels)
        elif space.step is not None or space.kind == "int":
            step = space.step or 1
            count = int(round((space.high - space.low) / step)) + 1
            grid[space.name] = [space.low + i * step for i in range(count)]
        else:
            raise GraphcError(f"sampler = grid needs a finite set of values; `{space.name}` = {space.describe()} "
                              "is continuous", span=space.call.span,
                              help="give it a step (int(16, 64, step=16), uniform(0, 1, step=0.25)) or use tpe/random")
    return grid


def _suggest(trial, space: Space):
    """Return the sampler's value for a space: a number, or a choice's option index."""
    if space.kind == "choice":
        return space.labels.index(trial.suggest_categorical(space.name, list(space.labels)))
    if space.kind == "int":
        return trial.suggest_int(space.name, space.low, space.high, step=space.step or 1)
    return trial.suggest_float(space.name, float(space.low), float(space.high), log=space.log,
                               step=None if space.step is None else float(space.step))
