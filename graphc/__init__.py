"""graphc: a declarative graph-definition compiler and runner for neural networks.

Public API: compile_file, compile_source, Program (run, gradients, fit, save, load), fit, search, GraphcError.
"""
import importlib

from graphc.diagnostics import GraphcError

__all__ = ["compile_file", "compile_source", "Program", "fit", "search", "GraphcError"]
__version__ = "0.1.0"

# The API's names come from graphc.api on first use (PEP 562): importing it loads the trainer, datasets and
# optimizers (~140 ms), and every `graphc` command imports this package first, `graphc check` included.
# tests/test_layering.py reads this module name as an import edge.
_API_MODULE = "graphc.api"


def __getattr__(name: str):
    """Return the public API object `name` (graphc.api's), imported on first use."""
    if name in ("compile_file", "compile_source", "Program", "fit", "search"):
        return getattr(importlib.import_module(_API_MODULE), name)
    raise AttributeError(f"module 'graphc' has no attribute {name!r}")
