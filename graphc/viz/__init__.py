"""Viz: a typed Graph -> a picture of its compiled plan (.svg .png .pdf .dot .html).

Input: a typed Graph and what to show (the backward schedule; schedule numbers
and buffers). Output: a file. The picture is first described as a `Scene`
(scene.py: boxes, arrows, block clusters and a legend, as plain data) and then
written by one back end: Graphviz `dot` when it is on PATH (dot.py: DOT text
run through `dot -T<format>`; a `.dot` file is dot.py's Graphviz- and
Netron-readable form), else graphc's own layered layout (layout.py,
boxes.py) drawn with matplotlib (draw.py). `.html` is always laid out by
graphc and written as one self-contained page (html.py). A leaf: nothing in
the pipeline imports it.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from graphc.compiler.graph import Graph
from graphc.compiler.plan import compiled_plan
from graphc.diagnostics import GraphcError
from graphc.language.files import write_atomically
from graphc.viz.dot import picture_dot, run_dot, scene_dot
from graphc.viz.draw import draw_scene
from graphc.viz.html import html_page
from graphc.viz.scene import build_scene

FORMATS = (".svg", ".png", ".pdf", ".dot", ".html")


def viz(graph: Graph, path: str | Path, *, backward: bool = False, numbered: bool = False,
        engine: str = "auto", values: dict | None = None, edge_grads: dict | None = None,
        grads: dict | None = None) -> str:
    """Draw the compiled plan of `graph` into `path`; return what laid it out.

    The format follows the extension (.svg .png .pdf .dot .html). `engine`
    "auto" uses Graphviz `dot` when it is on PATH, else graphc's own layout;
    "dot" and "graphc" force one. Returns "Graphviz dot" or "graphc" for a
    picture, "dot" or "html" for text. `values`, `edge_grads` and `grads` (one pass's numbers:
    tools/edge_values.py) label the arrows with the values and gradients they carry (scene.build_scene).
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in FORMATS:
        raise GraphcError(f"cannot draw into `{path}`: unknown format `{ext or '(none)'}`",
                          help="give the output one of the extensions " + ", ".join(FORMATS))
    if backward and graph.objective is None:
        raise GraphcError(f"model `{graph.model}` has no objective, so no backward schedule to draw",
                          span=graph.model_span, help="declare `loss = ...` or exactly one `output`, "
                                                      "or drop --backward")
    if not path.parent.is_dir():
        raise GraphcError(f"cannot write `{path}`: directory `{path.parent}` does not exist")
    scene = build_scene(graph, compiled_plan(graph, backward=True), backward=backward, numbered=numbered,
                        values=values, edge_grads=edge_grads, grads=grads)
    if ext == ".html":
        _write(path, html_page(scene).encode())
        return "html"
    if ext == ".dot":
        _write(path, scene_dot(scene).encode())
        return "dot"
    if engine == "auto":
        engine = "dot" if shutil.which("dot") else "graphc"
    if engine == "dot":
        _write(path, run_dot(picture_dot(scene), ext[1:]))
        return "Graphviz dot"
    try:
        import matplotlib  # noqa: F401  (optional and heavy: only this back end needs it)
    except ImportError:
        raise GraphcError("drawing without Graphviz needs matplotlib",
                          help="install Graphviz (`dot`), or pip install 'graphc[train]'; .dot and .html need neither") from None
    draw_scene(scene, path)
    return "graphc"


def _write(path: Path, data: bytes) -> None:
    """Write a picture or page to `path` (through a temp file and a rename); return None."""
    try:
        write_atomically(path, data)
    except OSError as error:
        raise GraphcError(f"cannot write `{path}`: {error.strerror}") from None
