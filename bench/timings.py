"""Timings the unit tests no longer assert: loading MNIST from its IDX .gz files, and drawing a 200-node model.

    python -m bench.timings [--repeats 5] [--data DIR] [--skip-data] [--skip-viz]

DESIGN.md: speed is measured by benchmarks, never by timed unit tests. These
two used to be `assert elapsed < 2.0` (tests/test_data.py) and `< 10 s` /
`< 20 s` (tests/test_viz.py); here they are printed as the median and best of
`--repeats` runs so a slowdown shows up as a number, not a flaky failure.

- data: `load_dataset(name, data_dir=DIR, download=False)` for MNIST and
  Fashion-MNIST (60,000 + 10,000 images each, gunzipped and parsed from IDX),
  from DIR, else $GRAPHC_DATA, else ../shared/datasets;
- viz: `viz()` of a residual MLP of 25 blocks (206 drawn nodes: ops and
  parameters) to .svg and .png, with graphc's own layout and, when Graphviz's
  `dot` is installed, with dot.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from graphc.diagnostics import GraphcError
from graphc.program import check_source
from graphc.training.data import load_dataset
from graphc.viz import viz

ROOT = Path(__file__).resolve().parent.parent


def residual_source(blocks: int = 25) -> str:
    """Return a residual MLP's source: 8 drawn nodes per block (4 ops, 4 parameters), 206 in all for 25 blocks."""
    lines = ["block res(x, n) {", "  h = linear(x, n) -> relu", "  return x + linear(h, n)", "}",
             "model deep {", "  input x: [16]", "  label y: class[4]"]
    prev = "x"
    for i in range(blocks):
        lines.append(f"  r{i} = res({prev}, 16)")
        prev = f"r{i}"
    lines += [f"  logits = linear({prev}, 4)", "  loss = cross_entropy(logits, y)", "}"]
    return "\n".join(lines) + "\n"


def timed(run: Callable[[], object], repeats: int) -> list[float]:
    """Return the wall-clock seconds of `repeats` calls of `run`."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    return seconds


def datasets_dir(given: str | None) -> Path:
    """Return where the IDX files are looked for: --data, else the first entry of $GRAPHC_DATA, else ../shared/datasets."""
    if given:
        return Path(given)
    env = os.environ.get("GRAPHC_DATA")
    return Path(env.split(os.pathsep)[0]) if env else ROOT.parent / "shared" / "datasets"


def data_rows(data_dir: Path, repeats: int) -> list[tuple[str, list[float] | str]]:
    """Return (what, seconds of each run, or why it was skipped) for loading each IDX data set."""
    rows: list[tuple[str, list[float] | str]] = []
    for name in ("mnist", "fashion-mnist"):
        what = f"load {name} (IDX .gz, 70,000 images)"
        try:
            rows.append((what, timed(lambda n=name: load_dataset(n, data_dir=str(data_dir), download=False), repeats)))
        except GraphcError as error:
            rows.append((what, f"skipped: {error.render().splitlines()[0]}"))
    return rows


def viz_rows(repeats: int) -> list[tuple[str, list[float] | str]]:
    """Return (what, seconds of each run, or why it was skipped) for drawing the 206-node model."""
    graph = check_source(residual_source(25), "deep.nn")
    rows: list[tuple[str, list[float] | str]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for engine in ("graphc", "dot"):
            for ext in (".svg", ".png"):
                what = f"viz 206-node model to {ext} ({engine} layout)"
                if engine == "dot" and shutil.which("dot") is None:
                    rows.append((what, "skipped: Graphviz `dot` is not installed"))
                    continue
                out = Path(scratch) / f"deep{ext}"
                rows.append((what, timed(lambda o=out, e=engine: viz(graph, o, engine=e), repeats)))
    return rows


def render(rows: list[tuple[str, list[float] | str]]) -> str:
    """Return the table: each measurement's median and best seconds, or why it was skipped."""
    width = max(len(what) for what, _ in rows)
    lines = [f"{'':{width}}  {'median':>8}  {'best':>8}  runs"]
    for what, seconds in rows:
        if isinstance(seconds, str):
            lines.append(f"{what:{width}}  {seconds}")
        else:
            lines.append(f"{what:{width}}  {statistics.median(seconds):7.3f}s  {min(seconds):7.3f}s  {len(seconds)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure and print; return the exit status."""
    ap = argparse.ArgumentParser(prog="python -m bench.timings", description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="runs of each measurement (median and best are shown)")
    ap.add_argument("--data", help="directory holding mnist/ and fashion-mnist/ IDX files")
    ap.add_argument("--skip-data", action="store_true", help="do not time data loading")
    ap.add_argument("--skip-viz", action="store_true", help="do not time drawing")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    rows = []
    if not args.skip_data:
        rows += data_rows(datasets_dir(args.data), args.repeats)
    if not args.skip_viz:
        rows += viz_rows(args.repeats)
    if rows:
        print(render(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
