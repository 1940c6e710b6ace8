"""language: `.nn` text -> syntax tree (frozen dataclasses with spans); the formatter.

In: source text. Out: `syntax.Module` per file (`parse_program` follows includes).
Imports only the shared vocabulary (source, diagnostics); no graph, no NumPy.
"""
