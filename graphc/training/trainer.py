"""Train: a Program + a TrainConfig + data -> trained weights, metrics, curves.

Input: the typed Graph and the `graphc run` options. Output: in `--out DIR`
(default runs/<model>/): weights.npz, metrics.json, curves.png, and a
checkpoint after every epoch (written atomically) that `--resume` continues
from, ending with exactly the weights an uninterrupted run would have.
Determinism: each epoch's shuffle and dropout noise come from generators
seeded by (seed, epoch), so a resumed run draws the same numbers.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from graphc.diagnostics import GraphcError, Note
from graphc.program import Program
from graphc.runtime.execute import nonfinite_error
from graphc.tensor_type import CLASS
from graphc.training.trainconfig import TrainConfig, train_config

CHECKPOINT = "checkpoint.npz"


def run_training(graph, args) -> int:
    """`graphc run` on a model with a train section: train (or evaluate), print and save; return 0."""
    cfg = train_config(graph, args.set, epochs=args.epochs, batch=args.batch, seed=args.seed, data=args.data)
    if args.limit is not None and args.limit < 1:
        # 0 would train on nothing for every epoch; a negative N would slice off the *last* samples.
        raise GraphcError(f"--limit must be at least 1, got {args.limit}",
                          help="--limit N trains on the first N training samples")
    program = Program(graph, dtype=args.dtype, seed=cfg.seed, init=cfg.init)
    for w in graph.warnings[getattr(graph, "_shown_warnings", 0):]:
        print(w.render(), file=sys.stderr)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    data = TrainData.load(program, cfg, limit=args.limit)
    out = Path(args.out or os.path.join("runs", graph.model))
    if args.weights:
        from graphc.training.weights import load_weights
        load_weights(program, args.weights)
    if args.eval:
        if not args.weights:
            print("graphc: note: --eval without --weights evaluates freshly initialised weights", file=sys.stderr)
        # The evaluation is the command's result: printed even with --quiet.
        if data.x_test is not None and len(data.x_test):
            print(f"test: {format_metrics(evaluate(program, data.x_test, data.y_test))}")
        else:
            # A .csv or an .npz without x_test has no test split: the training data is all there is.
            print(f"train (no test split in {data.name}): "
                  f"{format_metrics(evaluate(program, data.x_train, data.y_train))}")
        return 0
    trainer = Trainer(program, cfg, data, out, quiet=args.quiet, say=say)
    if args.resume:
        trainer.resume()
    trainer.fit()
    return 0


class TrainData:
    """The dataset fitted to the model's input and label: train/validation/test arrays."""

    def __init__(self, name, x_train, y_train, x_val, y_val, x_test, y_test):
        self.name = name
        self.x_train, self.y_train = x_train, y_train
        self.x_val, self.y_val = x_val, y_val
        self.x_test, self.y_test = x_test, y_test

    @classmethod
    def load(cls, program: Program, cfg: TrainConfig, limit: int | None = None) -> "TrainData":
        """Return the configured dataset, reshaped and checked against the model's input and label."""
        from graphc.training.data import check_labels, fit_to_input, load_dataset, split_validation
        graph = program.graph
        if len(graph.inputs) != 1 or len(graph.labels) != 1:
            raise GraphcError(f"training from a dataset needs exactly one input and one label; `{graph.model}` "
                              f"has {len(graph.inputs)} inputs and {len(graph.labels)} labels",
                              span=graph.train_span, help="feed other models through the Python API")
        ds = load_dataset(cfg.data, data_dir=cfg.data_dir, seed=cfg.seed, scale=cfg.scale)
        x_name, y_name = graph.inputs[0], graph.labels[0]
        x_type, y_type = graph.node(x_name)["declared"], graph.node(y_name)["declared"]

        def fit(x, y):
            x = fit_to_input(x, x_type.shape, dataset=ds.name, input_name=x_name).astype(program.dtype, copy=False)
            if y_type.kind == CLASS:
                y = check_labels(y, num_classes=y_type.classes, target_shape=None, dataset=ds.name, label_name=y_name)
            else:
                y = check_labels(y, num_classes=None, target_shape=y_type.shape, dataset=ds.name,
                                 label_name=y_name).astype(program.dtype, copy=False)
            return x, y

        x_train, y_train = fit(ds.x_train, ds.y_train)
        x_test, y_test = fit(ds.x_test, ds.y_test) if ds.x_test is not None else (None, None)
        x_train, y_train, x_val, y_val = split_validation(x_train, y_train, cfg.validation, cfg.seed)
        if limit is not None:
            x_train, y_train = x_train[:limit], y_train[:limit]
        return cls(ds.name, x_train, y_train, x_val, y_val, x_test, y_test)


def accuracy_node(graph) -> str | None:
    """Return the node whose argmax predicts the label (the first input of a loss fed a class label)."""
    if graph.loss is None:
        return None
    node = graph.node(graph.loss)
    if len(node["inputs"]) >= 2 and graph.type_of(node["inputs"][1]).kind == CLASS:
        return node["inputs"][0]
    return None


def evaluate(program: Program, x, y, batch: int = 1000) -> dict:
    """Return {"loss", "accuracy"?, "samples"} of the model in eval mode over (x, y)."""
    if x is None or len(x) == 0:
        return {}
    graph = program.graph
    pred = accuracy_node(graph)
    wanted = tuple(n for n in (graph.loss, pred) if n is not None)
    executor = program.executor(wanted, backward=False)
    total_loss, correct = 0.0, 0
    x_name, y_name = graph.inputs[0], graph.labels[0]
    for start in range(0, len(x), batch):
        xb, yb = x[start:start + batch], y[start:start + batch]
        values = executor.forward({x_name: xb, y_name: yb}, program.params, program.state, train=False,
                                  rng=program.rng, batch=len(xb))
        total_loss += float(program._reduce_loss(values[graph.loss])) * len(xb)
        if pred is not None:
            correct += int(np.sum(np.argmax(values[pred].reshape(len(xb), -1), axis=1) == yb))
    metrics = {"loss": total_loss / len(x), "samples": int(len(x))}
    if pred is not None:
        metrics["accuracy"] = correct / len(x)
    return metrics


def format_metrics(m: dict) -> str:
    """Return `loss 0.1234 acc 98.12%` for a metrics dict."""
    text = f"loss {m['loss']:.4f}"
    if "accuracy" in m:
        text += f" acc {100 * m['accuracy']:.2f}%"
    return text


class Trainer:
    """The loop: shuffled mini-batches, optimizer steps, per-epoch metrics and checkpoints."""

    def __init__(self, program: Program, cfg: TrainConfig, data: TrainData, out: Path, *, quiet: bool, say):
        from graphc.training.optim import make_optimizer, make_schedule
        self.program, self.cfg, self.data, self.out, self.quiet, self.say = program, cfg, data, out, quiet, say
        name, kwargs = cfg.optimizer
        self.optimizer = make_optimizer(name, program.params, **kwargs)
        self.schedule = make_schedule(cfg.schedule[0], self.optimizer.lr, cfg.epochs, **cfg.schedule[1])
        graph = program.graph
        self.decayed = [p for p, info in graph.params.items() if info.decay]
        self.history: list[dict] = []
        self.start_epoch = 0
        self.best_val = None
        self.stale_epochs = 0

    def fingerprint(self) -> dict:
        """Return the settings a checkpoint must match to be resumed: the train settings and the dtype."""
        return {**self.cfg.fingerprint(), "dtype": str(self.program.dtype)}

    # ---- checkpoints ---------------------------------------------------------------
    def checkpoint_arrays(self) -> dict:
        """Return every array needed to continue training exactly."""
        arrays = {f"param/{k}": v for k, v in self.program.params.items()}
        arrays.update({f"state/{k}": v for k, v in self.program.state.items()})
        arrays.update({f"opt/{k}": v for k, v in self.optimizer.state_arrays().items()})
        return arrays

    def save_checkpoint(self, epoch: int) -> None:
        """Write the checkpoint after `epoch` epochs (atomically)."""
        from graphc.training.checkpoint import save_arrays
        meta = {"model": self.program.graph.model, "epoch": epoch, "history": self.history,
                "config": self.fingerprint(), "best_val": self.best_val, "stale_epochs": self.stale_epochs,
                "lr": self.optimizer.lr}
        save_arrays(self.out / CHECKPOINT, self.checkpoint_arrays(), meta)

    def resume(self) -> None:
        """Restore parameters, state, optimizer and history from the checkpoint in the output directory."""
        from graphc.training.checkpoint import check_matches, load_arrays
        path = self.out / CHECKPOINT
        if not path.exists():
            raise GraphcError(f"nothing to resume: {path} does not exist",
                              help="run without --resume first, or pass the --out of the earlier run")
        arrays, meta = load_arrays(path)
        if not isinstance(meta.get("config"), dict) or not isinstance(meta.get("epoch"), int):
            # e.g. a weights.npz copied over the checkpoint: it records no epoch or settings to continue from.
            raise GraphcError(f"{path} is not a training checkpoint (it records no epoch or train settings)",
                              help="resume from the checkpoint.npz a run wrote, or start afresh without --resume")
        if meta.get("model") != self.program.graph.model:
            raise GraphcError(f"{path} was written by model `{meta.get('model')}`, not `{self.program.graph.model}`",
                              help="resume with the same file, or start afresh without --resume")
        now = _jsonable(self.fingerprint())
        saved = meta.get("config")
        if saved != now:
            # Say which settings differ: "different settings" alone leaves the user guessing.
            notes = tuple(Note(f"{key}: checkpoint {_show_setting(saved.get(key))}, now {_show_setting(now.get(key))}")
                          for key in dict.fromkeys([*now, *saved]) if saved.get(key) != now.get(key))
            raise GraphcError(f"{path} was written with different train settings", notes=notes,
                              help="resume with the same settings (only `epochs` and `early_stop` may change), "
                                   "or start afresh without --resume")
        expected = {k: tuple(v.shape) for k, v in self.checkpoint_arrays().items() if not k.startswith("opt/")}
        check_matches({k: v for k, v in arrays.items() if not k.startswith("opt/")}, expected, source=str(path))
        for key, target in self.checkpoint_arrays().items():
            if key.startswith(("param/", "state/")):
                np.copyto(target, arrays[key])
        self.optimizer.load_state_arrays({k[4:]: v for k, v in arrays.items() if k.startswith("opt/")})
        self.start_epoch = int(meta["epoch"])
        self.history = list(meta.get("history", []))
        self.best_val = meta.get("best_val")
        self.stale_epochs = int(meta.get("stale_epochs", 0))
        self.say(f"resuming {self.program.graph.model} after epoch {self.start_epoch} from {path}")

    # ---- the loop --------------------------------------------------------------------
    def fit(self) -> dict:
        """Train for the configured epochs; write weights, metrics and curves; return the final metrics."""
        from graphc.training.checkpoint import write_json_atomic
        from graphc.training.weights import save_weights
        cfg, data, program = self.cfg, self.data, self.program
        self.out.mkdir(parents=True, exist_ok=True)
        n_params = sum(int(v.size) for v in program.params.values())
        self.say(f"training {program.graph.model} ({n_params:,} parameters) on {data.name}: "
                 f"{len(data.x_train):,} training, {len(data.x_val):,} validation samples; "
                 f"{cfg.epochs} epochs of batch {cfg.batch}")
        every = max(1, cfg.epochs // 20)   # at most ~20 epoch lines (XOR runs 2,000 tiny epochs)
        last_save = time.perf_counter()
        first = self.start_epoch
        if cfg.early_stop and self.stale_epochs >= cfg.early_stop:
            # The resumed run had stopped early: an uninterrupted run would train no further.
            self.say(f"the checkpointed run stopped early after epoch {self.start_epoch}; "
                     f"raise early_stop to train on")
            first = cfg.epochs
        for epoch in range(first, cfg.epochs):
            record = self.epoch(epoch)
            self.history.append(record)
            if (epoch + 1) % every == 0 or epoch + 1 == cfg.epochs or epoch == self.start_epoch:
                self.say(_epoch_line(record, cfg.epochs))
            stop = self._early_stop(record)
            # A checkpoint per epoch, but at most one a second: fsync dominates tiny epochs.
            if stop or epoch + 1 == cfg.epochs or time.perf_counter() - last_save >= 1.0:
                self.save_checkpoint(epoch + 1)
                last_save = time.perf_counter()
            if stop:
                self.say(f"early stop: no better validation loss for {cfg.early_stop} epochs")
                break
        test = evaluate(program, data.x_test, data.y_test)
        if test:
            self.say(f"test: {format_metrics(test)}")
        save_weights(program, self.out / "weights.npz", {"epochs": len(self.history)})
        result = {"model": program.graph.model, "data": data.name, "settings": _jsonable(self.fingerprint()),
                  "parameters": n_params, "epochs": self.history, "test": test}
        write_json_atomic(self.out / "metrics.json", result)
        try:
            from graphc.training.curves import plot_curves
            plot_curves(self.history, self.out / "curves.png", title=program.graph.model)
        except ImportError:
            self.say("(matplotlib is not installed: no curves.png; pip install 'graphc[train]')")
        self.say(f"wrote {self.out}/weights.npz, metrics.json, curves.png")
        return result

    def epoch(self, epoch: int) -> dict:
        """Run one epoch of training; return its metrics record."""
        from graphc.training.data import batches
        cfg, data, program = self.cfg, self.data, self.program
        graph = program.graph
        self.optimizer.lr = float(self.schedule(epoch))
        program.rng = np.random.default_rng([cfg.seed, epoch, 1])
        order_rng = np.random.default_rng([cfg.seed, epoch])
        x_name, y_name = graph.inputs[0], graph.labels[0]
        pred = accuracy_node(graph)
        total_loss, correct, seen = 0.0, 0, 0
        started = time.perf_counter()
        bar = _progress(len(data.x_train), epoch, cfg.epochs, self.quiet)
        for step, (xb, yb) in enumerate(batches(data.x_train, data.y_train, cfg.batch, shuffle=True, rng=order_rng)):
            rng_state = program.rng.bit_generator.state   # to replay this step's dropout noise on NaN
            # NumPy's overflow/invalid warnings would only repeat, less clearly, what the NaN guard says.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                values, grads = program.forward_backward({x_name: xb, y_name: yb}, train=True, checked=False,
                                                         input_grads=False)
            loss = program.loss_value(values)
            if not np.isfinite(loss):
                node = _first_nonfinite(program, {x_name: xb, y_name: yb}, rng_state) or graph.loss
                raise nonfinite_error(graph, node, f"in epoch {epoch + 1}, step {step + 1}")
            # A non-finite gradient with a finite loss (pow/log/div at a singular point) would poison
            # the weights and be blamed on the next step's first node: catch it here. Summing is the
            # cheap test; the exact one runs only when a sum is not finite.
            if any(not np.isfinite(np.sum(grads[p])) and not np.all(np.isfinite(grads[p]))
                   for p in program.params if p in grads):
                raise _nonfinite_gradient(program, grads, f"in epoch {epoch + 1}, step {step + 1}")
            self._regularise(grads)
            self.optimizer.step({p: grads[p] for p in program.params if p in grads})
            total_loss += loss * len(xb)
            seen += len(xb)
            if pred is not None:
                correct += int(np.sum(np.argmax(values[pred].reshape(len(xb), -1), axis=1) == yb))
            if bar is not None:
                bar.update(len(xb))
                bar.set_postfix(loss=f"{total_loss / seen:.4f}", refresh=False)
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - started
        record = {"epoch": epoch + 1, "lr": self.optimizer.lr, "train_loss": total_loss / max(seen, 1),
                  "seconds": seconds, "samples_per_s": seen / max(seconds, 1e-9)}
        if pred is not None:
            record["train_accuracy"] = correct / max(seen, 1)
        val = evaluate(program, data.x_val, data.y_val)
        if val:
            record["val_loss"] = val["loss"]
            if "accuracy" in val:
                record["val_accuracy"] = val["accuracy"]
        return record

    def _regularise(self, grads: dict) -> None:
        """Add the L2 (weight_decay) and L1 terms of weights to their gradients, as torch's weight_decay does."""
        wd, l1 = self.cfg.weight_decay, self.cfg.l1
        if not (wd or l1):
            return
        for name in self.decayed:
            if name not in grads:
                continue
            p = self.program.params[name]
            extra = 0
            if wd:
                extra = wd * p
            if l1:
                extra = extra + l1 * np.sign(p)
            grads[name] = grads[name] + extra

    def _early_stop(self, record: dict) -> bool:
        if "val_loss" not in record:
            return False
        if self.best_val is None or record["val_loss"] < self.best_val:
            self.best_val, self.stale_epochs = record["val_loss"], 0
            from graphc.training.weights import save_weights
            self.out.mkdir(parents=True, exist_ok=True)
            save_weights(self.program, self.out / "best.npz", {"epoch": record["epoch"]})
            return False
        self.stale_epochs += 1
        return bool(self.cfg.early_stop) and self.stale_epochs >= self.cfg.early_stop


def _first_nonfinite(program: Program, feeds: dict, rng_state: dict) -> str | None:
    """Return the first node, in schedule order, whose output is NaN or Inf on this batch (None if none is).

    The batch is replayed through a copy of the training plan in which every step
    has a buffer of its own: the real plan reuses buffers, so after a full pass an
    early node's array may hold a later node's (non-finite) values and be blamed.
    """
    from graphc.runtime.execute import Executor
    plan = program.executor_for_backward(input_grads=False).plan
    executor = Executor(program.graph, plan.without_reuse(), program.dtype)
    rng = np.random.default_rng()
    rng.bit_generator.state = rng_state
    # Running statistics are updated again by the replay; copies keep the model's own untouched.
    state = {k: v.copy() for k, v in program.state.items()}
    batch = next(iter(feeds.values())).shape[0]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        values = executor.forward(feeds, program.params, state, train=True, rng=rng, batch=batch)
    return executor.first_nonfinite(values)


def _nonfinite_gradient(program: Program, grads: dict, where: str) -> GraphcError:
    """Return the error for a NaN/Inf gradient: it names the first node, in backward order, that
    received a finite gradient but passed a non-finite one on (else the first such parameter)."""
    from graphc.compiler.graph import trace_notes
    graph = program.graph
    plan = program.executor_for_backward(input_grads=False).plan

    def finite(name):
        return name not in grads or bool(np.all(np.isfinite(grads[name])))

    for b in plan.backward:
        if b.node in grads and finite(b.node) and any(need and not finite(t) for t, need in zip(b.targets, b.needs)):
            a = graph.node(b.node)
            return GraphcError(f"the gradient flowing back through `{b.node}` ({a['op']}) became NaN or Inf {where}",
                               span=a["span"], notes=trace_notes(a),
                               help="its backward rule is infinite at these inputs (log, pow or div near 0?); "
                                    "keep its inputs away from that point, or lower the learning rate")
    name = next(p for p in program.params if not finite(p))
    return GraphcError(f"the gradient of `{name}` became NaN or Inf {where}", span=graph.params[name].span,
                       help="lower the learning rate, check the data's scale, or check log/div/pow inputs")


def _progress(total: int, epoch: int, epochs: int, quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", unit="sample", unit_scale=True, leave=False)


def _epoch_line(r: dict, epochs: int) -> str:
    text = f"epoch {r['epoch']}/{epochs}  train loss {r['train_loss']:.4f}"
    if "train_accuracy" in r:
        text += f" acc {100 * r['train_accuracy']:.2f}%"
    if "val_loss" in r:
        text += f"  val loss {r['val_loss']:.4f}"
        if "val_accuracy" in r:
            text += f" acc {100 * r['val_accuracy']:.2f}%"
    return text + f"  {r['seconds']:.1f} s ({r['samples_per_s']:,.0f} samples/s)"


def _show_setting(value) -> str:
    """Return a fingerprint value as the user wrote it: `64`, `adam(lr=0.001)`, `(absent)`."""
    if value is None:
        return "(absent)"
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], dict):
        args = ", ".join(f"{k}={v}" for k, v in value[1].items())
        return f"{value[0]}({args})" if args else value[0]
    return str(value)


def _jsonable(obj):
    import json
    return json.loads(json.dumps(obj))
