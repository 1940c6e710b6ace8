"""graphc: a declarative graph-definition compiler and runner for neural networks.

Public API: compile_file, compile_source, Program (run, gradients, fit, save, load), fit, GraphcError.
"""
from graphc.api import Program, compile_file, compile_source, fit
from graphc.diagnostics import GraphcError

__all__ = ["compile_file", "compile_source", "Program", "fit", "GraphcError"]
__version__ = "0.1.0"
