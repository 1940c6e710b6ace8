"""language: `.nn` text -> syntax tree (frozen dataclasses with spans); the formatter.

In: source text. Out: `syntax.Module` per file (`parse.parse_program` follows includes).
Reading order: syntax (the tree), parse (entry points; the parser built on first use),
to_syntax (tokens -> tree while parsing), syntax_errors (lark errors -> words),
files (what a path may name), grammar_cache (the per-user table cache), fmt.
Imports only the shared vocabulary (source, diagnostics); no graph, no NumPy.
"""
