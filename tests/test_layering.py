"""The shape of the package, checked on its source: imports point one way between the stages, no import cycle,
imports sit at the top of modules (heavy optional packages excepted), and no module grows past the size budget.

Every `import`/`from ... import` under graphc/ is read with `ast`, those inside functions too, so a hidden upward
import cannot pass. A failure names the file:line and the offending edge.
"""
from __future__ import annotations

import ast
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
from paths import PACKAGE, REPO

# The package itself (graphc/__init__.py) is the public facade, for users only; nothing inside graphc imports it.
FACADE = "graphc"
# Which layer each module belongs to: the longest matching dotted prefix wins. A new top-level module or
# folder must be added here (test_every_module_has_a_layer says so) before it can be imported.
LAYER_OF_PREFIX: dict[str, str] = {
    "graphc.__main__": "cli",
    "graphc.api": "api",   # the Python API's fit/save/load: a leaf, like the command line
    "graphc.source": "vocabulary",
    "graphc.diagnostics": "vocabulary",
    "graphc.tensor_type": "vocabulary",
    "graphc.signature": "vocabulary",
    "graphc.language": "language",
    "graphc.ops": "ops",
    "graphc.compiler": "compiler",
    "graphc.runtime": "runtime",
    "graphc.program": "program",
    "graphc.training": "training",
    "graphc.training.config": "training.config",
    "graphc.search": "search",   # hyperparameter search on Optuna: spaces filled in, trials run by the trainer
    "graphc.viz": "viz",
    "graphc.tools": "tools",
    "graphc.cli": "cli",
}

_UP_TO_RUNTIME = {"vocabulary", "language", "ops", "compiler", "runtime"}
# The layers each layer may import (its own included). Anything not listed is an upward or sideways edge.
MAY_IMPORT: dict[str, set[str]] = {
    "vocabulary": {"vocabulary"},
    "language": {"vocabulary", "language"},
    "ops": {"vocabulary", "ops"},
    "compiler": {"vocabulary", "language", "ops", "compiler"},
    "runtime": {"vocabulary", "language", "ops", "compiler", "runtime"},
    # The train section's resolution sits below program.py, which resolves it right after build.
    "training.config": _UP_TO_RUNTIME | {"training.config", "training"},
    "program": _UP_TO_RUNTIME | {"program", "training.config"},
    "training": _UP_TO_RUNTIME | {"program", "training.config", "training"},
    "search": _UP_TO_RUNTIME | {"program", "training.config", "training", "search"},
    "viz": {"vocabulary", "language", "ops", "compiler", "viz"},
    "tools": _UP_TO_RUNTIME | {"program", "training.config", "training", "viz", "tools"},
    "cli": _UP_TO_RUNTIME | {"program", "training.config", "training", "search", "viz", "tools", "cli", "api"},
    "api": _UP_TO_RUNTIME | {"program", "training.config", "training", "search", "viz", "tools", "api"},
}

# Third-party packages heavy or optional enough to be imported inside the function that needs them
# (each such import carries a comment saying why). Everything else is imported at the top of the module.
HEAVY_OPTIONAL = frozenset({"matplotlib", "torch", "onnx", "onnxruntime", "optuna", "sklearn", "tqdm", "rich",
                            "threadpoolctl", "psycopg", "scipy", "PIL"})

MAX_LINES = 450


@dataclass(frozen=True)
class Import:
    """One imported module: who imports it, where, and whether the import statement sits inside a function."""
    importer: str
    target: str
    file: str  # relative to the repository: graphc/x/y.py
    line: int
    in_function: bool

    def where(self) -> str:
        """Return `graphc/x/y.py:LINE`."""
        return f"{self.file}:{self.line}"


def module_name(path: Path, package: Path) -> str:
    """Return the dotted module name of a .py file under `package` (a package's __init__ is the package)."""
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str | None:
    """Return the layer of a graphc module by its longest listed prefix, or None if it has none."""
    if module == FACADE:
        return "api"
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        layer = LAYER_OF_PREFIX.get(".".join(parts[:end]))
        if layer is not None:
            return layer
    return None


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """Return the absolute module a `from ... import` names, resolving its leading dots."""
    if not node.level:
        return node.module or ""
    package = module if is_package else module.rpartition(".")[0]
    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(module: str, is_package: bool, node: ast.AST, modules: set[str]) -> list[str]:
    """Return the modules an import statement loads: `from pkg import sub` loads pkg.sub when that is a module."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = _absolute(module, is_package, node)
    if base.partition(".")[0] != "graphc":
        return [base]
    return sorted({f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names})


def _dynamic_target(node: ast.AST) -> str | None:
    """Return the constant name given to importlib.import_module(...) or __import__(...), if any."""
    if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
        return None
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return node.args[0].value if name in ("import_module", "__import__") and isinstance(node.args[0].value, str) else None


def imports_of(path: Path, package: Path, modules: set[str]) -> list[Import]:
    """Return every import in a file of `package`, module-level and function-level, with its line."""
    module, is_package = module_name(path, package), path.name == "__init__.py"
    file = str(path.relative_to(package.parent))
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if not (isinstance(child, ast.ImportFrom) and child.module == "__future__"):
                    found.extend(Import(module, target, file, child.lineno, in_function)
                                 for target in _targets(module, is_package, child, modules))
            elif (dynamic := _dynamic_target(child)) is not None:
                # A dynamic import runs when the code runs: treat it like an import inside a function.
                found.append(Import(module, dynamic, file, child.lineno, True))
            elif (isinstance(child, ast.Constant) and isinstance(child.value, str) and child.value.startswith("graphc.")
                  and child.value in modules and child.value != module):
                # A string naming a graphc module is a lazy-import table entry (the CLI's HANDLERS, the
                # facade's _API_MODULE, imported when used to keep start-up fast): it is an edge like any
                # import, held to the same direction and cycle rules.
                found.append(Import(module, child.value, file, child.lineno, False))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(), filename=str(path)), False)
    return found


def scan(package: Path) -> tuple[dict[str, Path], list[Import]]:
    """Return the package's modules (dotted name -> file) and every import in them."""
    files = sorted(package.rglob("*.py"))
    modules = {module_name(p, package): p for p in files}
    return modules, [imp for p in files for imp in imports_of(p, package, set(modules))]


MODULES, ALL_IMPORTS = scan(PACKAGE)
GRAPHC_IMPORTS: list[Import] = [imp for imp in ALL_IMPORTS if imp.target.partition(".")[0] == "graphc"]


def _report(title: str, lines: list[str]) -> str:
    return f"{title} ({len(lines)}):\n  " + "\n  ".join(lines)


def test_the_walker_sees_relative_hidden_and_dynamic_imports(tmp_path):
    package = tmp_path / "graphc"
    (package / "compiler").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "compiler" / "__init__.py").write_text("from . import graph\n")
    (package / "compiler" / "graph.py").write_text(
        "import json\nfrom ..training import optim\n\n\n"
        "def late():\n    import torch\n    from graphc.runtime.execute import run\n"
        "    return importlib.import_module('graphc.viz')\n")
    modules, found = scan(package)
    assert set(modules) == {"graphc", "graphc.compiler", "graphc.compiler.graph"}
    seen = {(imp.importer, imp.target, imp.where(), imp.in_function) for imp in found}
    assert seen == {
        ("graphc.compiler", "graphc.compiler.graph", "graphc/compiler/__init__.py:1", False),
        ("graphc.compiler.graph", "json", "graphc/compiler/graph.py:1", False),
        ("graphc.compiler.graph", "graphc.training", "graphc/compiler/graph.py:2", False),
        ("graphc.compiler.graph", "torch", "graphc/compiler/graph.py:6", True),
        ("graphc.compiler.graph", "graphc.runtime.execute", "graphc/compiler/graph.py:7", True),
        ("graphc.compiler.graph", "graphc.viz", "graphc/compiler/graph.py:8", True),
    }
    assert layer_of("graphc.training.optim") == "training" and layer_of("graphc.training.config") == "training.config"
    assert layer_of("graphc") == "api" and layer_of("graphc.unlisted") is None


def test_every_module_has_a_layer():
    missing = [f"{p.relative_to(PACKAGE.parent)}: {m}" for m, p in MODULES.items() if layer_of(m) is None]
    assert not missing, _report("modules with no layer in LAYER_OF_PREFIX", missing)


def test_every_layer_is_described():
    layers = set(LAYER_OF_PREFIX.values()) | {"api"}
    assert layers == set(MAY_IMPORT), f"layers without rules: {layers ^ set(MAY_IMPORT)}"
    assert all(layer in allowed for layer, allowed in MAY_IMPORT.items()), "a layer must be allowed to import itself"


def test_imports_point_down_the_stages():
    upward = []
    for imp in GRAPHC_IMPORTS:
        source_layer, target_layer = layer_of(imp.importer), layer_of(imp.target)
        if target_layer is None or source_layer is None:
            continue  # reported by test_every_module_has_a_layer / test_imports_name_existing_modules
        if target_layer not in MAY_IMPORT[source_layer]:
            upward.append(f"{imp.where()}: {imp.importer} ({source_layer}) -> {imp.target} ({target_layer}); "
                          f"{source_layer} may import only {', '.join(sorted(MAY_IMPORT[source_layer]))}")
    assert not upward, _report("imports against the stage direction", upward)


def test_imports_name_existing_modules():
    unknown = [f"{imp.where()}: {imp.importer} -> {imp.target}" for imp in GRAPHC_IMPORTS if imp.target not in MODULES]
    assert not unknown, _report("imports of graphc modules that do not exist", unknown)


def test_no_import_cycles():
    graph = nx.DiGraph()
    for imp in GRAPHC_IMPORTS:
        if imp.importer != imp.target:
            graph.add_edge(imp.importer, imp.target)
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    lines = []
    for members in sorted(cycles):
        inside = set(members)
        lines.append("cycle among " + ", ".join(members) + ":")
        lines += [f"  {imp.where()}: {imp.importer} -> {imp.target}" + (" (in a function)" if imp.in_function else "")
                  for imp in GRAPHC_IMPORTS
                  if imp.importer in inside and imp.target in inside and imp.importer != imp.target]
    assert not cycles, _report("import cycles", lines)


def test_imports_sit_at_the_top_of_modules():
    hidden = []
    for imp in ALL_IMPORTS:
        if not imp.in_function:
            continue
        top = imp.target.partition(".")[0]
        if top == "graphc":
            hidden.append(f"{imp.where()}: {imp.importer} -> {imp.target} (graphc modules are imported at the top)")
        elif top not in HEAVY_OPTIONAL:
            kind = "standard library" if top in sys.stdlib_module_names else "third-party, not heavy/optional"
            hidden.append(f"{imp.where()}: {imp.importer} -> {imp.target} ({kind}; import it at the top)")
    assert not hidden, _report("imports inside functions", hidden)


def test_modules_stay_within_the_size_budget():
    sizes = {p: len(p.read_text().splitlines()) for p in MODULES.values()}
    too_long = [f"{p.relative_to(PACKAGE.parent)}: {n} lines" for p, n in sorted(sizes.items(), key=lambda kv: -kv[1])
                if n > MAX_LINES]
    if too_long:
        print("\n".join(too_long))
    assert not too_long, _report(f"modules over {MAX_LINES} lines", too_long)


def test_every_subpackage_ships_in_the_wheel():
    # pyproject lists packages by hand (grammar/ is mapped in); a new stage folder missing there would install
    # without that folder, and only the slow wheel test would notice.
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {module_name(p, PACKAGE) for p in PACKAGE.rglob("__init__.py")}
    assert folders <= listed, f"packages missing from pyproject.toml [tool.setuptools] packages: {sorted(folders - listed)}"
