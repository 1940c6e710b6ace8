"""graphc: a declarative graph-definition compiler and runner for neural networks.

Public API: compile_file, compile_source, Program, GraphcError.
"""
from graphc.diagnostics import GraphcError
from graphc.program import Program, compile_file, compile_source

__all__ = ["compile_file", "compile_source", "Program", "GraphcError"]
__version__ = "0.1.0"
