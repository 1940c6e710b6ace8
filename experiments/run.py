"""The course's experiments, reproduced with graphc: every figure and the results table in one command.

    python experiments/run.py                  # the full gallery: experiments/figures/*.png, results.json, README.md
    python experiments/run.py --quick          # reduced sizes (the CI form): asserts each experiment's outcome
    python experiments/run.py --only e5,e9     # some experiments; the other rows of the table are kept

Each experiment is its folder's .nn files plus the `graphc` commands printed as they run (they run in
this process through graphc's command line, `graphc.cli.main`, exactly as typed) and, for a few, a
short drawing or measuring step on the public Python API. The full form reuses a finished run folder
(one holding metrics.json) unless --fresh is given, so an interrupted gallery resumes where it stopped.
MNIST is found as graphc finds it: $GRAPHC_DATA, else ../shared/datasets next to the repository.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

import graphc
from graphc.cli import main as graphc_main
from graphc.program import Program, check_file

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))   # experiments/ is a folder of scripts, not a package
import gallery_figures as figs  # noqa: E402

ALL = ("e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9", "e10")


class Gallery:
    """Where runs and figures go, whether sizes are reduced, and the commands' log."""

    def __init__(self, quick: bool, out: Path, figures: Path, fresh: bool):
        self.quick, self.out, self.figures, self.fresh = quick, out, figures, fresh
        self.figures.mkdir(parents=True, exist_ok=True)

    def graphc(self, *argv, may_fail: bool = False) -> str | None:
        """Run `graphc ARGV` in this process; return its stdout. A failure raises with its stderr, or with
        `may_fail` prints the diagnostic's first line and returns None."""
        argv = [str(a) for a in argv]
        out_dir = argv[argv.index("--out") + 1] if "--out" in argv else None
        done = out_dir and (Path(out_dir) / ("sweep.json" if "--sweep" in argv else "metrics.json")).is_file()
        print("$ graphc " + " ".join(shlex.quote(_shown(a)) for a in argv), flush=True)
        if done and not self.fresh and not self.quick and _finished(Path(out_dir)):
            print("  (finished before: reused; --fresh reruns it)")
            return ""
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            status = graphc_main(argv + (["--quiet"] if argv[0] == "run" else []))
        if status != 0 and may_fail:
            print("  failed: " + next((ln for ln in stderr.getvalue().splitlines() if "error:" in ln), "?").strip())
            return None
        if status != 0:
            raise RuntimeError(f"graphc {' '.join(argv)} exited {status}:\n{stderr.getvalue()}")
        return stdout.getvalue()

    def run_dir(self, *parts) -> Path:
        """Return a run folder under the gallery's output folder."""
        return self.out.joinpath(*parts)

    def figure(self, name: str) -> Path:
        """Return the path of a figure of the gallery."""
        return self.figures / name


def _shown(arg: str) -> str:
    """Return a path argument relative to the repository (how a user types it there), anything else as is."""
    if arg.startswith(str(REPO)):
        return os.path.relpath(arg, REPO)
    return arg


def _finished(folder: Path) -> bool:
    sweep = folder / "sweep.json"
    if sweep.is_file():
        return all(r.get("finished") for r in json.loads(sweep.read_text())["runs"])
    return (folder / "metrics.json").is_file()


def metrics(folder: Path) -> dict:
    """Return a run folder's metrics.json."""
    return json.loads((folder / "metrics.json").read_text())


def sweep_runs(folder: Path) -> list[tuple[str, dict]]:
    """Return (value, metrics) of every run of a sweep folder, in the sweep's order."""
    record = json.loads((folder / "sweep.json").read_text())
    return [(str(r["value"]), metrics(Path(r["dir"]) if Path(r["dir"]).is_dir() else folder / r["name"]))
            for r in record["runs"]]


def check(row: dict, condition: bool, what: str) -> None:
    """Record one qualitative check of an experiment (the quick form fails if any is false)."""
    row.setdefault("checks", []).append({"check": what, "passed": bool(condition)})
    print(f"  [{'ok' if condition else 'FAILED'}] {what}")


def command_line(*parts: str) -> str:
    """Return the command that regenerates one experiment."""
    return " ".join(parts)


# ---- the experiments ------------------------------------------------------------------------------

def e1(g: Gallery) -> dict:
    row = {"id": "E1", "title": "XOR: a perceptron cannot, one hidden layer can",
           "book": "a single perceptron cannot separate XOR; a two-layer net can"}
    misclassified = {}
    for name in ("perceptron", "hidden"):
        folder = g.run_dir("e1", name)
        g.graphc("run", HERE / "e1_xor" / f"{name}.nn", "--out", folder, "--epochs", 500 if g.quick else 2000)
        prog = graphc.compile_file(HERE / "e1_xor" / f"{name}.nn")
        prog.load(folder / "weights.npz")
        points = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
        labels = np.array([0, 1, 1, 0])
        misclassified[name] = int((prog.run({"x": points})["p"].argmax(1) != labels).sum())
        g.graphc("inspect", HERE / "e1_xor" / f"{name}.nn", "--regions", "--weights", folder / "weights.npz",
                 "-o", folder / "regions.png") if _has_option("inspect", "--regions") else None
    figs.xor_regions(HERE / "e1_xor", g.run_dir("e1"), g.figure("e1_xor.png"))
    row["measured"] = (f"perceptron misclassifies {misclassified['perceptron']} of 4 points, "
                       f"hidden layer {misclassified['hidden']}")
    check(row, misclassified["perceptron"] >= 1, "the perceptron misclassifies at least one XOR point")
    check(row, misclassified["hidden"] == 0, "the hidden-layer net classifies all four")
    row["command"] = ("graphc run experiments/e1_xor/hidden.nn --out runs/e1; graphc inspect experiments/e1_xor/hidden.nn "
                      "--regions --weights runs/e1/weights.npz -o regions.png")
    row["figures"] = ["e1_xor.png"]
    return row


def e2(g: Gallery) -> dict:
    row = {"id": "E2", "title": "Gate gradients of f = (x + y) z", "book": "at x=-2, y=5, z=-4: f = -12; "
           "df/dx = -4, df/dy = -4, df/dz = 3"}
    feeds = ["--feed", "x=-2", "--feed", "y=5", "--feed", "z=-4"]
    text = g.graphc("run", HERE / "e2_gates" / "gates.nn", *feeds)
    grads = {line.split(":")[0].strip(): float(line.split(":")[1]) for line in text.splitlines()
             if line.startswith("  ") and ":" in line}
    # Values on the edges need `viz --feed`; without it the backward graph is drawn bare.
    shown = feeds if _has_option("viz", "--feed") else []
    g.graphc("viz", HERE / "e2_gates" / "gates.nn", "--backward", *shown, "-o", g.figure("e2_gates.png"))
    row["measured"] = f"f = {text.split('=')[1].split()[0]}; " + ", ".join(f"df/d{k} = {grads[k]:g}" for k in "xyz")
    check(row, (grads.get("x"), grads.get("y"), grads.get("z")) == (-4.0, -4.0, 3.0), "gradients exactly -4, -4, 3")
    row["command"] = "graphc run experiments/e2_gates/gates.nn --feed x=-2 --feed y=5 --feed z=-4"
    row["figures"] = ["e2_gates.png"]
    return row


E3_INITS = {"sigmoid": [("normal(std=1)", ("normal", {"std": 1.0})), ("normal(std=0.01)", ("normal", {"std": 0.01})),
                        ("xavier", ("xavier", {}))],
            "relu": [("normal(std=0.01)", ("normal", {"std": 0.01})), ("xavier", ("xavier", {})), ("he", ("he", {}))]}


def e3(g: Gallery) -> dict:
    row = {"id": "E3", "title": "Activation histograms under different inits (1000 x 100, five layers)",
           "book": "sigmoid: std 1 piles at 0 and 1, std 0.01 at 0.5, Xavier spread; ReLU: std 0.01 near 0, "
                   "Xavier shrinks layer by layer, He stays even"}
    x = np.random.default_rng(0).standard_normal((1000, 100))
    layers = {}
    for act, inits in E3_INITS.items():
        for shown, init in inits:
            # The public Program with another default initialiser: what `graphc inspect --init` does.
            prog = Program(check_file(HERE / "e3_activations" / f"{act}5.nn"), dtype="float64", seed=0, init=init)
            out = prog.run({"x": x})
            layers[(act, shown)] = [out[f"a{i}"] for i in range(1, 6)]
    figs.activation_histograms(layers, g.figure("e3_activations.png"))
    sig = {k[1]: v[-1] for k, v in layers.items() if k[0] == "sigmoid"}
    relu = {k[1]: v for k, v in layers.items() if k[0] == "relu"}
    saturated = float(np.mean((sig["normal(std=1)"] < 0.1) | (sig["normal(std=1)"] > 0.9)))
    middle = float(np.mean(np.abs(sig["normal(std=0.01)"] - 0.5) < 0.05))
    spread = float(sig["xavier"].std())
    shrink = {k: float(v[-1].std() / v[0].std()) for k, v in relu.items()}
    row["measured"] = (f"sigmoid layer 5: std 1 {saturated:.0%} below 0.1 or above 0.9; std 0.01 {middle:.0%} within "
                       f"0.05 of 0.5; Xavier std {spread:.3f}. ReLU std ratio layer 5 / layer 1: "
                       + ", ".join(f"{k} {v:.2f}" for k, v in shrink.items()))
    check(row, saturated > 0.5, "sigmoid std 1: most activations saturate at 0 or 1")
    check(row, middle > 0.95, "sigmoid std 0.01: activations collapse to 0.5")
    check(row, spread > 0.1, "sigmoid Xavier: activations stay spread")
    check(row, relu["normal(std=0.01)"][-1].std() < 1e-3, "ReLU std 0.01: activations vanish")
    check(row, shrink["xavier"] < 0.5 < shrink["he"], "ReLU: Xavier shrinks layer by layer, He keeps the scale")
    row["command"] = "graphc inspect models/relu5.nn --activations --data random --init he (and models/sigmoid5.nn)"
    row["figures"] = ["e3_activations.png"]
    return row


E4_OPTIMIZERS = {"sgd": "sgd(lr=0.95)", "momentum": "momentum(lr=0.1)", "adagrad": "adagrad(lr=1.5, eps=1e-7)",
                 "adam": "adam(lr=0.3, eps=1e-7, eps_hat=true)"}
# research.md C1: the positions after the 30 updates, from the book's update formulas.
E4_BOOK = {"sgd": (-0.3504, 0.0848), "momentum": (0.8964, 0.0881), "adagrad": (-0.1202, 0.0), "adam": (0.1360, 0.3182)}


def e4(g: Gallery) -> dict:
    row = {"id": "E4", "title": "Optimizer paths on f = x^2/20 + y^2 from (-7, 2), 30 steps",
           "book": "end points " + ", ".join(f"{k} ({x:.4f}, {y:.4f})" for k, (x, y) in E4_BOOK.items())}
    folder = g.run_dir("e4")
    g.graphc("run", HERE / "e4_optimizers" / "bowl.nn", "--dtype", "float64", "--trace", "x,y", "--out", folder,
             "--sweep", "optimizer=" + ",".join(E4_OPTIMIZERS.values()))
    ends = {}
    for (_, m), name in zip(sweep_runs(folder), E4_OPTIMIZERS):
        ends[name] = (m["trace"]["x"][-1], m["trace"]["y"][-1])
    g.graphc("plot", folder, "--trace", "x,y", "--grid", "-o", g.figure("e4_optimizers.png"),
             "--title", "optimizer paths on x^2/20 + y^2 (30 steps from (-7, 2))")
    row["measured"] = "end points " + ", ".join(f"{k} ({x:.4f}, {y:.4f})" for k, (x, y) in ends.items())
    worst = max(abs(a - b) for k in E4_BOOK for a, b in zip(ends[k], E4_BOOK[k]))
    check(row, worst <= 1e-4, f"end points match the book's update formulas to 1e-4 (worst {worst:.1e})")
    row["command"] = ("graphc run experiments/e4_optimizers/bowl.nn --dtype float64 --trace x,y --sweep "
                      "\"optimizer=sgd(lr=0.95),momentum(lr=0.1),adagrad(lr=1.5, eps=1e-7),adam(lr=0.3, eps=1e-7, "
                      "eps_hat=true)\" --out runs/e4; graphc plot runs/e4 --trace x,y --grid -o e4.png")
    row["figures"] = ["e4_optimizers.png"]
    return row


E5_INITS = "init=normal(std=0.01),xavier,he"


def e5(g: Gallery) -> dict:
    row = {"id": "E5", "title": "Weight init on MNIST (5-layer ReLU, SGD 0.01, batch 128, 2,000 iterations)",
           "book": "std 0.01 does not learn (loss ~2.3); Xavier and He learn, He faster "
                   "[nb, iter 1900: 2.305 / 0.377 / 0.286]"}
    folder = g.run_dir("e5")
    # 51,200 images / 128 = 400 iterations an epoch: 5 epochs are the book's 2,000 iterations.
    sizes = ["--limit", 6400, "--limit-test", 500, "--epochs", 6] if g.quick else ["--limit", 51200]
    g.graphc("run", HERE / "e5_init" / "mlp5.nn", "--sweep", E5_INITS, *sizes, "--out", folder)
    final = {}
    for value, m in sweep_runs(folder):
        steps = [v for r in m["epochs"] for v in r["step_loss"]]
        final[value] = float(np.mean(steps[-max(1, len(steps) // 20):]))
    g.graphc("plot", folder, "--per", "step", "--smooth", 11, "-o", g.figure("e5_init.png"),
             "--title", "weight init: MNIST training loss per iteration (smoothed)")
    iterations = sum(len(r["step_loss"]) * r.get("steps_per_point", 1) for r in sweep_runs(folder)[0][1]["epochs"])
    row["measured"] = (f"loss over the last 5% of {iterations} iterations: "
                       + " / ".join(f"{k} {v:.3f}" for k, v in final.items()))
    std, xavier, he = (final[k] for k in ("normal(std=0.01)", "xavier", "he"))
    check(row, std > 2.2, "std 0.01: loss stays above 2.2")
    check(row, he < 1.0, "He: loss falls below 1.0")
    check(row, he < xavier < std, "He learns faster than Xavier, Xavier than std 0.01")
    row["command"] = f"graphc run experiments/e5_init/mlp5.nn --limit 51200 --sweep \"{E5_INITS}\" --out runs/e5"
    row["figures"] = ["e5_init.png"]
    return row


E6_SCALES = [float(f"{w:.3g}") for w in np.logspace(0, -4, 16)]


def e6(g: Gallery) -> dict:
    row = {"id": "E6", "title": "Batch norm on 1,000 MNIST images, 16 weight scales 1 .. 1e-4",
           "book": "with BN learning is faster in almost every case; without it nothing learns unless the scale is "
                   "good [nb epoch 19, W=0.0136: 0.116 without / 1.0 with]"}
    scales = [E6_SCALES[i] for i in (2, 7, 12)] if g.quick else E6_SCALES
    sizes = ["--epochs", 10] if g.quick else []
    finals: dict[str, list] = {}
    by_scale: dict[float, list] = {w: [] for w in scales}   # panels in the book's order: scale 1 first
    for name in ("plain", "batchnorm"):
        finals[name] = []
        for w in scales:
            # One run per scale (not one --sweep): at scale 1 the plain net overflows to NaN, which stops a
            # run (and a sweep) with a diagnostic; the book's NumPy carries on at chance accuracy (0.097).
            folder = g.run_dir("e6", name, f"std={w:g}")
            done = g.graphc("run", HERE / "e6_batchnorm" / f"{name}.nn", "--limit", 1000, "--limit-test", 0,
                            "--set", f"init=normal(std={w:g})", *sizes, "--out", folder, may_fail=True)
            diverged = done is None and not (folder / "metrics.json").is_file()
            finals[name].append(0.0 if diverged else metrics(folder)["epochs"][-1]["sample_train_acc"])
            by_scale[w] += [] if diverged else [folder]
    folders = [folder for w in scales for folder in by_scale[w]]
    g.graphc("plot", *folders, "--grid", "--metric", "acc", "--split", "sample_train", "-o", g.figure("e6_batchnorm.png"),
             "--title", "training accuracy (1,000 images) with and without batch norm, per weight scale")
    better = sum(b > p for p, b in zip(finals["plain"], finals["batchnorm"]))
    row["measured"] = "final train acc without / with BN (0 = diverged to NaN): " + "; ".join(
        f"W={w:g}: {p:.3f}/{b:.3f}" for w, p, b in zip(scales, finals["plain"], finals["batchnorm"]))
    # Not all: near the good scale (0.29, 0.16) the plain net learns well too, in the book's notebook as here.
    check(row, better >= 0.6 * len(scales), f"BN ends higher at most scales ({better} of {len(scales)})")
    small = [i for i, w in enumerate(scales) if w <= 0.02]
    check(row, all(finals["plain"][i] < 0.3 < finals["batchnorm"][i] for i in small),
          "at scales <= 0.02 only the BN net learns")
    row["command"] = ("graphc run experiments/e6_batchnorm/batchnorm.nn --limit 1000 --limit-test 0 --set "
                      "\"init=normal(std=W)\" --out runs/e6/batchnorm/std=W (16 W, and plain.nn); graphc plot ... --grid")
    row["figures"] = ["e6_batchnorm.png"]
    return row


def e7(g: Gallery) -> dict:
    row = {"id": "E7", "title": "Overfitting on 300 images (7-layer net) and its cures",
           "book": "lambda 0: train ~100% while test stays far below; lambda 0.1 and dropout shrink the gap "
                   "[nb: lambda 0.1 epoch 200 train 0.927 test 0.721; dropout 0.2 epoch 301 train 0.67 test 0.548]"}
    sizes = ["--set", "eval_samples=500", "--epochs", 120] if g.quick else []
    folder = g.run_dir("e7", "decay")
    g.graphc("run", HERE / "e7_overfit" / "mlp7.nn", "--limit", 300, "--limit-test", 10000, "--sweep",
             "weight_decay=0,0.1", *sizes, "--out", folder)
    runs = {f"weight_decay={v}": m for v, m in sweep_runs(folder)}
    folders = [folder]
    if not g.quick:
        dropout = g.run_dir("e7", "dropout")
        g.graphc("run", HERE / "e7_overfit" / "mlp7_dropout.nn", "--limit", 300, "--limit-test", 10000,
                 "--out", dropout)
        runs["dropout 0.2"] = metrics(dropout)
        folders.append(dropout)
    result = {k: (m["epochs"][-1]["sample_train_acc"], m["epochs"][-1]["sample_test_acc"]) for k, m in runs.items()}
    figs.overfit(runs, g.figure("e7_overfit.png"))
    row["measured"] = "; ".join(f"{k}: train {a:.3f} test {b:.3f}" for k, (a, b) in result.items())
    gap = {k: a - b for k, (a, b) in result.items()}
    check(row, gap["weight_decay=0"] > gap["weight_decay=0.1"], "weight decay 0.1 shrinks the train/test gap")
    if not g.quick:
        check(row, result["weight_decay=0"][0] > 0.97, "lambda 0: training accuracy reaches ~100%")
        check(row, gap["dropout 0.2"] < gap["weight_decay=0"], "dropout shrinks the gap")
    row["command"] = ("graphc run experiments/e7_overfit/mlp7.nn --limit 300 --limit-test 10000 "
                      "--sweep weight_decay=0,0.1 --out runs/e7/decay")
    row["figures"] = ["e7_overfit.png"]
    return row


def e8(g: Gallery) -> dict:
    # 200 trials of training take minutes: the search's own numbers (experiments/e8_search/README.md, measured
    # by the two commands below) are read here; tests/test_search.py runs its short form in CI.
    measured = json.loads((HERE / "e8_search" / "results.json").read_text())

    def best5(run: str) -> str:
        r = measured[run]
        return ("/".join(f"{t['val_acc']:.2f}" for t in r["best5"])
                + f" (lr {min(t['lr'] for t in r['best5']):.4f}-{max(t['lr'] for t in r['best5']):.4f}; "
                + f"{r['at_least_0.70']} of {r['trials']} trials >= 0.70)")
    return {"id": "E8", "title": "Hyperparameter search (random, then TPE)",
            "book": "best-5 val acc 0.83/0.78/0.77/0.74/0.73 (lr 0.001-0.01, weight decay 1e-8-1e-6) "
                    "[nb: 9 of 100 trials >= 0.70]",
            "measured": f"random: {best5('random')}; TPE, same budget: {best5('tpe')}",
            "command": "graphc search experiments/e8_search/hpo.nn --limit 500 --jobs 2 [--sampler tpe] "
                       "(see experiments/e8_search/README.md)",
            "figures": []}


def e9(g: Gallery) -> dict:
    row = {"id": "E9", "title": "SimpleConvNet on MNIST (20 epochs of Adam 0.001, batch 100)",
           "book": "train 99.82%, test 98.96%; trained first-layer filters show edges and blobs"}
    model = HERE / "e9_convnet" / "simple_convnet.nn"
    folder = g.run_dir("e9") if g.quick else HERE / "e9_convnet" / "run"
    row["command"] = "graphc run experiments/e9_convnet/simple_convnet.nn --out experiments/e9_convnet/run"
    row["figures"] = ["e9_convnet.png", "e9_filters_before.png", "e9_filters_after.png"]
    g.graphc("inspect", model, "--filters", "-o", g.figure("e9_filters_before.png"))
    if not g.quick and _still_training(folder):
        return _e9_in_progress(g, model, folder, row)
    sizes = ["--limit", 3000, "--limit-test", 500, "--epochs", 2] if g.quick else []
    g.graphc("run", model, *sizes, "--out", folder)
    m = metrics(folder)
    g.graphc("inspect", model, "--filters", "--weights", folder / "weights.npz", "-o", g.figure("e9_filters_after.png"))
    g.graphc("plot", folder, "--per", "step", "--smooth", 11, "-o", g.figure("e9_convnet.png"),
             "--title", "SimpleConvNet: training loss per iteration (smoothed)")
    test = m["test"]["accuracy"]
    train = m["epochs"][-1].get("train_accuracy", float("nan"))
    row["measured"] = (f"train {train:.2%} (running mean of the last epoch), test {test:.2%} "
                       f"({m['test']['samples']:,} images, {len(m['epochs'])} epochs)")
    if g.quick:
        check(row, test > 0.7, "3,000 images, two epochs (60 steps): test accuracy above 70%")
    else:
        check(row, test >= 0.989, "full run: test accuracy >= 98.9%")
    return row


def _still_training(folder: Path) -> bool:
    """Return whether another process is training in `folder` now (its .lock names a live process)."""
    lock = folder / ".lock"
    if (folder / "metrics.json").is_file() or not lock.is_file():
        return False
    try:
        os.kill(int(lock.read_text().split()[0]), 0)
    except (ValueError, IndexError, ProcessLookupError, PermissionError):
        return False
    return True


def _e9_in_progress(g: Gallery, model: Path, folder: Path, row: dict) -> dict:
    """Score the last checkpoint of a full run still in progress; the check waits for the finished run."""
    checkpoint = folder / "checkpoint.npz"
    epoch = graphc.compile_file(model).load(checkpoint).get("epoch")
    out = g.graphc("run", model, "--eval", "--weights", checkpoint)
    accuracy = next(line for line in out.splitlines() if "acc" in line).split("acc")[1].split()[0]
    g.graphc("inspect", model, "--filters", "--weights", checkpoint, "-o", g.figure("e9_filters_after.png"))
    row["figures"] = row["figures"][1:]
    row["measured"] = (f"run in progress: after {epoch} of 20 epochs, test {accuracy} (10,000 images); "
                       "rerun `python experiments/run.py --only e9` when it has finished")
    return row


def e10(g: Gallery) -> dict:
    row = {"id": "E10", "title": "Worked loss examples (the notes' cat scores 3.2, 5.1, -1.7)",
           "book": "SVM loss 2.9; softmax P(cat) 0.13, loss 0.89 (the notes take log10); "
                   "L2: w1 and w2 score x the same (1), penalty 1 vs 0.25"}
    out = g.graphc("run", HERE / "e10_losses" / "losses.nn", "--feed", "scores=3.2,5.1,-1.7", "--feed", "y=0")
    values = dict(line.split(" = ", 1) for line in out.splitlines() if " = " in line)
    hinge, ce = float(values["hinge_loss"]), float(values["ce_loss"])
    p_cat = float(values["probs"].strip("[] ").split(",")[0])
    penalties = {}
    for name, w in (("w1", "1,0,0,0"), ("w2", "0.25,0.25,0.25,0.25")):
        out = g.graphc("run", HERE / "e10_losses" / "l2.nn", "--feed", "x=1,1,1,1", "--feed", f"w={w}")
        penalties[name] = dict(line.split(" = ", 1) for line in out.splitlines() if " = " in line)
    figs.losses([3.2, 5.1, -1.7], ["cat", "car", "frog"], g.figure("e10_losses.png"))
    row["measured"] = (f"hinge x 3 classes = {hinge * 3:.2f} (graphc's hinge divides by K as torch does); "
                       f"P(cat) {p_cat:.2f}; cross-entropy {ce:.2f} (natural log) = {ce / math.log(10):.2f} in log10; "
                       f"scores {penalties['w1']['score']} / {penalties['w2']['score']}, "
                       f"penalties {penalties['w1']['penalty']} / {penalties['w2']['penalty']}")
    check(row, abs(hinge * 3 - 2.9) < 1e-4, "SVM loss 2.9")
    check(row, round(p_cat, 2) == 0.13, "softmax P(cat) = 0.13")
    check(row, round(ce / math.log(10), 2) == 0.89, "cross-entropy 0.89 in the notes' log10 (2.04 in ln)")
    check(row, float(penalties["w1"]["score"]) == float(penalties["w2"]["score"]) == 1.0
          and float(penalties["w1"]["penalty"]) == 1.0 and float(penalties["w2"]["penalty"]) == 0.25,
          "same score 1, L2 penalty 1 vs 0.25")
    row["command"] = "graphc run experiments/e10_losses/losses.nn --feed scores=3.2,5.1,-1.7 --feed y=0"
    row["figures"] = ["e10_losses.png"]
    return row


def _has_option(command: str, option: str) -> bool:
    """Return whether `graphc COMMAND` knows `option` (features land while the gallery is being built)."""
    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), contextlib.suppress(SystemExit):
        graphc_main([command, "--help"])
    return option in help_text.getvalue()


# ---- the command -----------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes; assert every outcome (the CI form)")
    parser.add_argument("--only", help="comma list of experiments, e.g. e5,e9 (default: all)")
    parser.add_argument("--out", help="folder for the runs (default: experiments/runs, or runs-quick with --quick)")
    parser.add_argument("--fresh", action="store_true", help="rerun finished runs instead of reusing them")
    args = parser.parse_args(argv)
    wanted = [e.strip().lower() for e in (args.only or ",".join(ALL)).split(",") if e.strip()]
    unknown = [e for e in wanted if e not in ALL]
    if unknown:
        parser.error(f"unknown experiment(s) {', '.join(unknown)}; choose from {', '.join(ALL)}")
    out = Path(args.out or HERE / ("runs-quick" if args.quick else "runs")).resolve()
    # The quick form keeps its figures and table beside its runs: the committed ones are the full gallery's.
    figures = out / "figures" if args.quick else HERE / "figures"
    gallery = Gallery(args.quick, out, figures, args.fresh)
    os.environ.setdefault("GRAPHC_DATA", str(REPO.parent / "shared" / "datasets"))
    rows, failed = [], []
    for name in wanted:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        row = globals()[name](gallery)
        row["seconds"] = round(time.perf_counter() - started, 1)
        rows.append(row)
        failed += [f"{row['id']}: {c['check']}" for c in row.get("checks", []) if not c["passed"]]
    results = out / "results.json" if args.quick else HERE / "results.json"
    previous = json.loads(results.read_text()) if results.is_file() else []
    merged = {r["id"]: r for r in previous} | {r["id"]: r for r in rows}
    table = sorted(merged.values(), key=lambda r: int(r["id"][1:]))
    results.write_text(json.dumps(table, indent=2) + "\n")
    if not args.quick:
        figs.write_readme(HERE / "README.md", table)
    print(f"wrote {results}" + ("" if args.quick else f", {HERE / 'README.md'} and the figures in {figures}"))
    if failed:
        print("FAILED:\n  " + "\n  ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
