"""The command line: subcommands -> the public API. No compiler logic here.

Every subcommand is registered in `_parser` below; its handler (a function of
the argparse namespace returning the exit status) lives in cli/commands.py
(check, compile, gradcheck, fmt, ops, bench), cli/viz.py (viz), cli/run.py (run: train or
evaluate once), cli/inspect.py (inspect) or cli/onnx_commands.py (export,
import). Library functions elsewhere take values, never namespaces.

GraphcError (a problem with the user's program, data or files) becomes its
diagnostics on stderr and exit status 1; bad usage is exit status 2; anything
else is a bug: its traceback, a line asking for a report, and exit status 70
(EX_SOFTWARE), so scripts can tell a bug from a user error.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from graphc.cli.plot_parser import add_plot_parser
from graphc.diagnostics import GraphcError

# Each command's handler, as (module, function). A handler's module is imported only when its command
# runs: importing them all (the trainer, datasets, viz, ONNX) is ~100 ms, a fifth of the whole
# `graphc check` process. tests/test_layering.py reads these module names as import edges.
HANDLERS = {
    "check": ("graphc.cli.check", "check_command"),
    "compile": ("graphc.cli.commands", "compile_command"),
    "run": ("graphc.cli.run", "run_command"),
    "gradcheck": ("graphc.cli.commands", "gradcheck_command"),
    "fmt": ("graphc.cli.commands", "fmt_command"),
    "ops": ("graphc.cli.commands", "ops_command"),
    "viz": ("graphc.cli.viz", "viz_command"),
    "inspect": ("graphc.cli.inspect", "inspect_command"),
    "export": ("graphc.cli.onnx_commands", "export_command"),
    "import": ("graphc.cli.onnx_commands", "import_command"),
    "bench": ("graphc.cli.commands", "bench_command"),
    "search": ("graphc.cli.search", "search_command"),
    "plot": ("graphc.cli.plot", "plot_command"),
}

INTERNAL_ERROR = 70   # EX_SOFTWARE from sysexits.h


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    try:
        module, function = HANDLERS[args.command]
        return getattr(importlib.import_module(module), function)(args) or 0
    except GraphcError as error:
        print(error.render(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("graphc: interrupted", file=sys.stderr)
        return 130
    except MemoryError as error:
        # The planned buffers, parameters and feeds are checked before allocation (runtime/memory.py);
        # anything else that runs out (backward temporaries, a data set) still ends as a diagnostic.
        print(f"graphc: error: out of memory{': ' + str(error) if str(error) else ''}\n"
              "  help: use a smaller batch or smaller shapes", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `graphc compile ... | head`: the reader left; nothing more to say. (`graphc run` keeps
        # training quietly when its reader leaves: cli/run.py catches that itself.)
        sys.stderr.close()
        return 0
    except Exception:
        traceback.print_exc()
        print("graphc: internal error (a bug): please report it with the command and the file",
              file=sys.stderr)
        return INTERNAL_ERROR


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="graphc", description="Compile, check, train and inspect .nn models.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help_text):
        return sub.add_parser(name, help=help_text, description=help_text)

    def model_args(c):
        c.add_argument("file", help="a .nn file")
        c.add_argument("--model", help="which model, when the file defines several")

    def deny_warnings(c):
        c.add_argument("--deny-warnings", action="store_true",
                       help="treat warnings as errors: report them as such and exit 1")

    c = command("check", "parse and shape-check; print a summary table")
    model_args(c)
    deny_warnings(c)
    c.add_argument("--json", action="store_true", help="print the table as JSON")

    c = command("compile", "print the compiled forward/backward schedule")
    model_args(c)
    deny_warnings(c)
    c.add_argument("--emit", choices=["plan", "json", "dot"], default="plan")
    c.add_argument("--eval", action="store_true", help="the inference plan only (no backward)")

    c = command("run", "train (if the file has a train section) or evaluate once")
    model_args(c)
    deny_warnings(c)
    c.add_argument("--feed", action="append", default=[], metavar="NAME=VALUE",
                   help="a value for an input: a number or a comma list")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a train setting, or one keyword of the optimizer (--set lr=0.1)")
    c.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="one run per value, each as --set KEY=V, into <out>/KEY=V/ (repeat for a grid); "
                        "e.g. --sweep \"init=normal(std=0.01),xavier,he\"")
    c.add_argument("--trace", metavar="NAME[,NAME...]",
                   help="record these (small) parameters before the first step and after every step "
                        "(metrics.json \"trace\")")
    c.add_argument("--data", help="dataset name, or a directory holding its files")
    c.add_argument("--epochs", type=int)
    c.add_argument("--batch", type=int)
    c.add_argument("--seed", type=int)
    c.add_argument("--limit", type=int, metavar="N",
                   help="use the first N training samples (validation is held out from them) and N test samples")
    c.add_argument("--limit-test", type=int, metavar="N",
                   help="evaluate the first N test samples (default: --limit's N, else all; 0: none)")
    c.add_argument("--out", help="directory for weights, metrics and curves")
    c.add_argument("--weights", help="load weights from a .npz file first")
    c.add_argument("--eval", action="store_true", help="evaluate only (no training)")
    c.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    c.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    c.add_argument("--threads", type=int, metavar="N",
                   help="cores a training step uses (default: all): each batch is split across them "
                        "(models with batchnorm give them to BLAS); --resume needs the same split")
    c.add_argument("--quiet", action="store_true", help="no progress lines or bars; the result is still printed")

    c = command("gradcheck", "numerical vs analytic gradients in float64")
    model_args(c)
    c.add_argument("--eps", type=float, default=1e-6, help="central-difference step (> 0; default 1e-6)")
    c.add_argument("--tol", type=float, default=1e-4,
                   help="largest error |a - n| / max(|a| + |n|, floor) that passes (default 1e-4)")
    c.add_argument("--floor", type=float,
                   help="absolute floor of that error's denominator: below it the error is absolute "
                        "(default 1e-5, tools/gradcheck.py's FLOOR, above central differences' round-off)")
    c.add_argument("--batch", type=int, default=2)
    c.add_argument("--samples", type=int, default=12, help="coordinates checked per tensor (at least 1)")
    c.add_argument("--seed", type=int, default=0)

    c = command("fmt", "print the program in the canonical layout")
    c.add_argument("file")
    c.add_argument("--check", action="store_true", help="exit 1 if the file is not formatted")
    c.add_argument("--write", action="store_true", help="rewrite the file in place")

    c = command("ops", "list the built-in ops, or describe one")
    c.add_argument("name", nargs="?", help="an op: print its definition, arguments, shapes and gradient rule")

    c = command("viz", "draw the compiled graph (.svg .png .pdf .dot .html)")
    model_args(c)
    deny_warnings(c)
    c.add_argument("-o", "--output", required=True, metavar="OUT", help="the picture; its extension picks the format")
    c.add_argument("--backward", action="store_true", help="add the backward steps and their gradient rules")
    c.add_argument("--plan", action="store_true", help="number the steps in schedule order and show buffers")
    c.add_argument("--layout", choices=["auto", "dot", "graphc"], default="auto",
                   help="Graphviz dot (auto: when installed) or graphc's own layout")
    c.add_argument("--feed", action="append", default=[], metavar="NAME=VALUE",
                   help="run one pass and label every arrow with its value (and, with --backward, every "
                        "gradient arrow with its gradient); inputs not fed are seeded random")
    c.add_argument("--weights", help="with the numbers: load weights from a .npz file first")
    c.add_argument("--seed", type=int, help="seed of the random inputs and initial weights (default 0)")

    c = command("inspect", "activation histograms, first-layer filters, gradient magnitudes, decision regions")
    model_args(c)
    c.add_argument("--activations", action="store_true", help="a histogram per activation layer")
    c.add_argument("--filters", action="store_true", help="the first conv layer's filters")
    c.add_argument("--gradients", action="store_true", help="mean |gradient| of each layer's weight")
    c.add_argument("--regions", action="store_true",
                   help="the decision regions of a classifier with a 2-D input, the training points on top")
    c.add_argument("--eval-mode", action="store_true",
                   help="activations and gradients of the inference-mode model (running batchnorm statistics, "
                        "no dropout); default: training mode, what a training step sees and minimises")
    c.add_argument("-o", "--output", metavar="OUT.png", help="the picture (default: <model>-inspect.png)")
    c.add_argument("--weights", help="load weights from a .npz file first")
    c.add_argument("--data", help="dataset name or directory; `random` for seeded standard-normal inputs")
    c.add_argument("--batch", type=int, default=1000, help="samples in the batch (default 1000)")
    c.add_argument("--init", metavar="SCHEME", help="initialise weights with this, e.g. normal(std=0.01), xavier")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a train setting")
    c.add_argument("--seed", type=int)

    c = command("export", "write the model as ONNX (needs the onnx extra)")
    model_args(c)
    c.add_argument("--weights", help="trained weights (.npz) to export; default: the initial weights")
    c.add_argument("-o", "--output", metavar="OUT.onnx", help="the ONNX file (default: the file with .onnx)")
    c.add_argument("--opset", type=int, help="ONNX opset (default 17; 21 when groupnorm is used)")
    c.add_argument("--loss", action="store_true", help="also export the loss, with the labels as inputs")

    c = command("import", "turn an ONNX model into a .nn file and its weights .npz")
    c.add_argument("file", help="a .onnx file")
    c.add_argument("-o", "--output", metavar="OUT.nn", help="the .nn file (default: the file with .nn); "
                   "the weights go next to it with .npz")

    c = command("search", "hyperparameter search over the file's search spaces (Optuna)")
    c.add_argument("file", nargs="?", help="a .nn file with search spaces")
    c.add_argument("--model", help="which model, when the file defines several")
    c.add_argument("--trials", type=int, help="trials in the whole study (default: the search section's, else 20)")
    c.add_argument("--storage", metavar="URL", help="where the study lives: a journal file (default "
                   "<out>/study.log), sqlite:///FILE, or postgresql://USER@HOST:PORT/DB to share it between machines")
    c.add_argument("--study", metavar="NAME", help="the study's name (default: the model's)")
    c.add_argument("--out", help="folder for the trials, best.nn and the plots (default runs/<model>-search)")
    c.add_argument("--jobs", type=int, default=1, help="worker processes on this machine (default 1)")
    c.add_argument("--sampler", choices=["tpe", "random", "grid", "cmaes"], help="override the search section's")
    c.add_argument("--data", help="dataset name, or a directory holding its files")
    c.add_argument("--epochs", type=int, help="override the train section's epochs in every trial")
    c.add_argument("--limit", type=int, metavar="N", help="use the first N training samples in every trial")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a train setting in every trial")
    c.add_argument("--report", metavar="DIR", help="print the best trials and redraw the plots of the study in DIR "
                   "(or --storage/--study); trains nothing")
    c.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)

    c = command("bench", "train and inference samples/s at a batch size, with a per-node table")
    model_args(c)
    deny_warnings(c)
    c.add_argument("--batch", type=int, default=100)
    c.add_argument("--steps", type=int, default=50, help="steps per timed run")
    c.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    c.add_argument("--repeats", type=int, default=5, help="timed runs; the median counts")
    c.add_argument("--threads", type=int, help="cores to use (default: all); see --split")
    c.add_argument("--split", choices=["auto", "batch", "blas"], default="auto",
                   help="the cores run parts of the batch (batch) or BLAS threads (blas); "
                        "auto: split every model that splits exactly (not batchnorm)")
    c.add_argument("--json", action="store_true", help="print the result as JSON")

    add_plot_parser(sub)
    return p
