"""Train: a Program + a TrainConfig + data -> trained weights, metrics, curves.

Input: a Program, its TrainConfig and the TrainData fitted to it. Output: in
the output directory, weights.npz, best.npz (the best validation loss),
metrics.json, curves.png, and a checkpoint after every epoch (written
atomically) that `resume=True` continues from, ending with exactly the
weights an uninterrupted run would have. `train` is the entry point; the
command line (graphc/cli/run.py) only turns options into its arguments.
Determinism: each epoch's shuffle and dropout noise come from generators
seeded by (seed, epoch), so a resumed run draws the same numbers.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from graphc.diagnostics import GraphcError
from graphc.ops.kernels import retain_freed_memory
from graphc.program import Program
from graphc.runtime.nan_guard import check_step
from graphc.runtime.parallel import close_step, training_step
from graphc.training.batching import TrainData, feed_batches
from graphc.training.checkpoint import (
    CHECKPOINT,
    jsonable,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    save_weights,
    write_json_atomic,
)
from graphc.training.config import TrainConfig
from graphc.training.curves import plot_curves
from graphc.training.metrics import (
    Tally,
    best_epoch,
    check_trace,
    classifiers,
    epoch_line,
    evaluate_feeds,
    evaluate_split,  # noqa: F401  (re-exported: cli/run.py and bench/ import it from here)
    format_metrics,
    progress_bar,
    sample_metrics,
    trace_from_history,
    trace_values,
    value_nodes,
)
from graphc.training.optim import make_optimizer, make_schedule
from graphc.training.outdir import out_dir_lock, prepare_out_dir
from graphc.training.regularize import EarlyStopping, add_weight_penalties

MAX_STEP_POINTS = 1000   # per-step losses kept per epoch in the history


@dataclass
class TrainResult:
    """What a training run produced: the per-epoch history, the test metrics ({} without a test split).

    `test` is measured with the last weights (weights.npz); when a validation
    split chose an earlier best epoch, `test_best` holds the metrics of its
    weights (best.npz). `samples` counts the train/val/test samples used.
    """

    model: str
    data: str
    settings: dict
    parameters: int
    history: list[dict]
    test: dict
    out_dir: Path
    best_epoch: int | None = None
    test_best: dict = field(default_factory=dict)
    samples: dict = field(default_factory=dict)
    source: str | None = None   # the .nn file's absolute path, so tools (plot, inspect) can recompile the model

    def to_json(self) -> dict:
        """Return the contents of metrics.json."""
        return {"model": self.model, "data": self.data, "settings": self.settings, "parameters": self.parameters,
                "samples": self.samples, "epochs": self.history, "best_epoch": self.best_epoch, "test": self.test,
                "test_best": self.test_best, "source": self.source, "trace": trace_from_history(self.history)}

    def summary(self) -> list[str]:
        """Return the lines that state the run's result: the test metrics, or the last epoch's without a test split."""
        if self.test_best:
            last = self.history[-1]["epoch"]
            return [f"test (last weights, epoch {last}, weights.npz): {format_metrics(self.test)}",
                    f"test (best validation weights, epoch {self.best_epoch}, best.npz): "
                    f"{format_metrics(self.test_best)}"]
        if self.test:
            return [f"test: {format_metrics(self.test)}"]
        if not self.history:
            return []
        r = self.history[-1]
        text = f"after epoch {r['epoch']}: train {format_metrics(_split_of(r, 'train_'))}"
        if "val_loss" in r:
            text += f"  val {format_metrics(_split_of(r, 'val_'))}"
        return [text]


def _split_of(record: dict, prefix: str) -> dict:
    """Return a history record's metrics of one split (`train_`/`val_`) without the prefix."""
    return {k[len(prefix):]: v for k, v in record.items() if k.startswith(prefix)}


def train(program: Program, config: TrainConfig, data: TrainData, out_dir, *, resume: bool = False,
          say: Callable[[str], None] | None = None, progress: bool = False,
          on_epoch: Callable[[dict], None] | None = None, trace=(), threads: int | None = None,
          checkpoints: bool = True) -> TrainResult:
    """Train `program` in place and write its files to `out_dir`; return the TrainResult.

    With `resume`, continue from the checkpoint in `out_dir` (GraphcError when
    there is none or its settings differ). `say` receives the progress lines
    (None: silent): the sample counts, one line per epoch (at most ~20) with
    its learning rate, and the result (`TrainResult.summary`). `progress` shows
    bars for the training batches and the evaluations when stderr is a terminal (tqdm).
    `on_epoch` receives each epoch's record at its end (a hyperparameter
    search reports it to the pruner there; an exception it raises ends the run, files kept).
    `trace` names small parameters whose values are recorded before the first step and after
    every step (metrics.json "trace"; GraphcError for an unknown or too large parameter).
    `threads`: the cores a step uses (None: all); each batch is split across them
    when the model allows it exactly (runtime/parallel.py), else they go to BLAS. `checkpoints=False` writes
    the checkpoint only at the end (a search trial is retried whole, never resumed: it saves the
    per-epoch writes, which cost a tenth of a small trial on a busy disk).
    """
    out = prepare_out_dir(out_dir)
    # One run per folder: two would write checkpoints over each other.
    with out_dir_lock(out):
        trainer = Trainer(program, config, data, out, say=say, progress=progress, on_epoch=on_epoch, trace=trace,
                          threads=threads, checkpoints=checkpoints)
        try:
            if resume:
                trainer.resume()
            return trainer.fit()
        finally:
            trainer.close()


class Trainer:
    """The loop: shuffled mini-batches, optimizer steps, per-epoch metrics and checkpoints."""

    def __init__(self, program: Program, cfg: TrainConfig, data: TrainData, out: Path, *,
                 say: Callable[[str], None] | None = None, progress: bool = False,
                 on_epoch: Callable[[dict], None] | None = None, trace=(), threads: int | None = None,
                 checkpoints: bool = True):
        self.on_epoch = on_epoch
        self.checkpoints = checkpoints   # False: only the last epoch's (see `train`)
        # forward + backward of a batch: serial, or split across threads (runtime/parallel.py);
        # the split reads back the values accuracy is counted on.
        self.parts, self.step = training_step(program, threads,
                                              gather=tuple(value_nodes(program.graph, classifiers(program.graph))))
        self.trace = check_trace(trace, program.params)
        self.program, self.cfg, self.data, self.out = program, cfg, data, Path(out)
        retain_freed_memory()   # every step frees and re-allocates the same large arrays: keep them in the heap
        self.say = say or (lambda text: None)
        self.progress = progress
        name, kwargs = cfg.optimizer
        self.decayed = [p for p, info in program.graph.params.items() if info.decay]
        # adamw's decoupled decay, like the weight_decay setting, applies to weights only.
        self.optimizer = make_optimizer(name, program.params, decayed=self.decayed, **kwargs)
        self.schedule = make_schedule(cfg.schedule[0], self.optimizer.lr, cfg.epochs, **cfg.schedule[1])
        self.history: list[dict] = []
        self.start_epoch = 0
        self.early = EarlyStopping(cfg.early_stop)

    def fingerprint(self) -> dict:
        """Return the settings a checkpoint must match to be resumed: the train settings, the dtype and
        the --limit (absent when there is none, so checkpoints from before it was recorded still match)."""
        limit = {"limit": self.data.limit} if self.data.limit is not None else {}
        # A split batch sums its gradients in another order: a resume must split it the same way.
        parts = {"threads": self.parts} if self.parts > 1 else {}
        return {**self.cfg.fingerprint(), "dtype": str(self.program.dtype), **limit, **parts}

    def close(self) -> None:
        """End the threads of a split training step (nothing to do for a serial one); returns None."""
        close_step(self.step)

    def save_checkpoint(self, epoch: int) -> None:
        """Write the checkpoint after `epoch` epochs (atomically); returns None."""
        progress = {"epoch": epoch, "history": self.history, "best_val": self.early.best_val,
                    "stale_epochs": self.early.stale_epochs, "lr": self.optimizer.lr}
        save_checkpoint(self.out / CHECKPOINT, self.program, self.optimizer, fingerprint=self.fingerprint(),
                        progress=progress)

    def resume(self) -> None:
        """Restore parameters, state, optimizer and history from the checkpoint in the output directory."""
        path = self.out / CHECKPOINT
        progress = load_checkpoint(path, self.program, self.optimizer, fingerprint=self.fingerprint())
        self.start_epoch = progress["epoch"]
        self.history = progress["history"]
        self.early = EarlyStopping(self.cfg.early_stop, progress["best_val"], progress["stale_epochs"])
        self.say(f"resuming {self.program.graph.model} after epoch {self.start_epoch} from {path}")

    def fit(self) -> TrainResult:
        """Train for the configured epochs; write weights, metrics and curves; return the TrainResult."""
        cfg, data, program = self.cfg, self.data, self.program
        self.out.mkdir(parents=True, exist_ok=True)
        n_params = sum(int(v.size) for v in program.params.values())
        samples = {"train": data.size("train"), "val": data.size("val"), "test": data.size("test")}
        self.say(f"training {program.graph.model} ({n_params:,} parameters) on {data.name}: "
                 f"train {samples['train']:,} / val {samples['val']:,} / test {samples['test']:,} samples; "
                 f"{cfg.epochs} epochs of batch {cfg.batch}")
        every = max(1, cfg.epochs // 20)   # at most ~20 epoch lines (XOR runs 2,000 tiny epochs)
        last_save = time.perf_counter()
        first = self.start_epoch
        if self.early.stopped:
            # The resumed run had stopped early: an uninterrupted run would train no further.
            self.say(f"the checkpointed run stopped early after epoch {self.start_epoch}; "
                     f"raise early_stop to train on")
            first = cfg.epochs
        for epoch in range(first, cfg.epochs):
            record = self.epoch(epoch)
            self.history.append(record)
            if (epoch + 1) % every == 0 or epoch + 1 == cfg.epochs or epoch == self.start_epoch:
                self.say(epoch_line(record, cfg.epochs))
            if self.early.update(record.get("val_loss")):
                save_weights(program, self.out / "best.npz", {"epoch": record["epoch"]})
            stop = "val_loss" in record and self.early.stopped
            # A checkpoint per epoch, but at most one a second: fsync dominates tiny epochs.
            due = self.checkpoints and time.perf_counter() - last_save >= 1.0
            if stop or epoch + 1 == cfg.epochs or due:
                self.save_checkpoint(epoch + 1)
                last_save = time.perf_counter()
            if self.on_epoch is not None:
                self.on_epoch(record)
            if stop:
                self.say(f"early stop: no better validation loss for {cfg.early_stop} epochs")
                break
        test = evaluate_feeds(program, data.test, bar="test" if self.progress else None)
        best, last = best_epoch(self.history), (self.history[-1]["epoch"] if self.history else None)
        # Early stopping (or a noisy validation loss) can leave the best weights behind the last: test both.
        test_best = self.evaluate_best() if test and best is not None and best != last else {}
        save_weights(program, self.out / "weights.npz", {"epochs": len(self.history)})
        result = TrainResult(program.graph.model, data.name, jsonable(self.fingerprint()), n_params, self.history,
                             test, self.out, best, test_best, samples, source=_source_path(program))
        for line in result.summary():
            self.say(line)
        write_json_atomic(self.out / "metrics.json", result.to_json())
        try:
            plot_curves(self.history, self.out / "curves.png", title=program.graph.model)
        except ImportError:
            self.say("(matplotlib is not installed: no curves.png; pip install 'graphc[train]')")
        self.say(f"wrote {self.out}/weights.npz, metrics.json, curves.png")
        return result

    def evaluate_best(self) -> dict:
        """Return the test metrics of the best validation weights (best.npz); the program keeps its last weights.

        {} when best.npz is missing (removed between a run and its resumption).
        """
        path = self.out / "best.npz"
        if not path.exists():
            return {}
        program = self.program
        arrays = {**program.params, **program.state}
        last = {name: a.copy() for name, a in arrays.items()}
        load_weights(program, path)
        try:
            return evaluate_feeds(program, self.data.test, bar="test (best weights)" if self.progress else None)
        finally:
            for name, a in arrays.items():
                np.copyto(a, last[name])

    def epoch(self, epoch: int) -> dict:
        """Run one epoch of training; return its metrics record."""
        cfg, data, program = self.cfg, self.data, self.program
        graph = program.graph
        self.optimizer.lr = float(self.schedule(epoch))
        program.rng = np.random.default_rng([cfg.seed, epoch, 1])
        order_rng = np.random.default_rng([cfg.seed, epoch])
        tally = Tally(classifiers(graph))
        plan = program.executor_for_backward(input_grads=False).plan
        total_loss, seen, step_loss = 0.0, 0, []
        traced = {name: [] for name in self.trace}   # each traced parameter after every step
        start_values = trace_values(self.trace, program.params) if self.trace and epoch == 0 else None
        started = time.perf_counter()
        bar = (progress_bar(data.size("train"), f"epoch {epoch + 1}/{cfg.epochs}", {"lr": f"{self.optimizer.lr:.3g}"})
               if self.progress else None)
        for step, feeds in enumerate(feed_batches(data.train, cfg.batch, shuffle=True, rng=order_rng)):
            rows = len(next(iter(feeds.values()))) if feeds else 1   # no inputs (`data = none`): one "sample"
            rng_state = program.rng.bit_generator.state   # to replay this step's dropout noise on NaN
            # NumPy's overflow/invalid warnings would only repeat, less clearly, what the NaN guard says.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                values, grads = self.step(feeds)
            loss = program.loss_value(values)
            check_step(plan.graph or graph, plan, program.dtype, feeds=feeds, params=program.params, state=program.state,
                       rng_state=rng_state, loss=loss, grads=grads, where=f"in epoch {epoch + 1}, step {step + 1}")
            add_weight_penalties(grads, program.params, self.decayed, weight_decay=cfg.weight_decay, l1=cfg.l1)
            with np.errstate(over="ignore", invalid="ignore"):   # check_params says it better
                self.optimizer.step({p: grads[p] for p in program.params if p in grads})
            check_params(program.params, where=f"in epoch {epoch + 1}, step {step + 1}")
            for name, value in trace_values(self.trace, program.params).items():
                traced[name].append(value)
            total_loss += loss * rows
            seen += rows
            step_loss.append(loss)   # one float a step: the per-iteration curve
            tally.add(values, rows)
            if bar is not None:
                bar.update(rows)
                bar.set_postfix(loss=f"{total_loss / seen:.4f}", lr=f"{self.optimizer.lr:.3g}", refresh=False)
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - started
        record = {"epoch": epoch + 1, "lr": self.optimizer.lr, "train_loss": total_loss / max(seen, 1),
                  "seconds": seconds, "samples_per_s": seen / max(seconds, 1e-9)}
        record.update(tally.metrics("train_"))
        val = evaluate_feeds(program, data.val, bar="validation" if self.progress else None)
        record.update({f"val_{key}": value for key, value in val.items() if key != "samples"})
        # At most MAX_STEP_POINTS a epoch (means of consecutive steps beyond): the history rides in every checkpoint.
        every = -(-len(step_loss) // MAX_STEP_POINTS)
        record["step_loss"] = mean_of_groups(step_loss, every)
        if every > 1:
            record["steps_per_point"] = every
        # The textbook's evaluate_sample_num_per_epoch: cheap per-epoch curves on the first N samples.
        record.update(sample_metrics(program, data.train, data.test, cfg.eval_samples))
        if self.trace:
            # Kept in the epoch records (not beside them) so a resumed run's trace is whole.
            if start_values is not None:
                record["trace_start"] = start_values
            record["trace"] = traced
        return record


def _source_path(program) -> str | None:
    """Return the absolute path of the .nn file the program was compiled from (None: compiled from a string)."""
    span = program.graph.model_span
    path = span.source.path if span is not None else None
    return str(Path(path).resolve()) if path and Path(path).is_file() else None


def mean_of_groups(values: list[float], size: int) -> list[float]:
    """Return the means of consecutive groups of `size` values (the last group may be shorter)."""
    if size <= 1:
        return list(values)
    return [float(np.mean(values[i:i + size])) for i in range(0, len(values), size)]


def check_params(params: dict, *, where: str) -> None:
    """Return None when every parameter is finite after an optimizer step; else raise the GraphcError
    saying the run diverged `where`. Nothing is saved after it, so good files on disk stay as they are."""
    # A sum per tensor is the cheap test (one pass, no temporary); the exact one runs only if it fails.
    with np.errstate(over="ignore", invalid="ignore"):
        bad = [p for p, v in params.items() if not np.isfinite(np.sum(v)) and not np.all(np.isfinite(v))]
    if bad:
        raise GraphcError(f"training diverged {where}: the update made {', '.join(bad[:3])}"
                          f"{' and others' if len(bad) > 3 else ''} NaN or infinite",
                          help="lower the learning rate (or clip gradients); weights.npz and checkpoint.npz "
                               "were not overwritten")
