"""`graphc run FILE --sweep KEY=V1,V2,...`: one training run per value, without the search machinery.

Input: the `graphc run` options, the function that runs one (cli/run.py's run_command) and the one
that checks one without training (cli/run.py's check_run).
Output: one run folder per value, `<out>/<KEY>=<V>/` (a grid of several `--sweep`
options: `<out>/<K1>=<V1>,<K2>=<V2>/`), each holding exactly what
`graphc run FILE --set KEY=V --out THAT_FOLDER` writes, and `<out>/sweep.json`:

    {"key": KEY, "runs": [{"value": V, "dir": ABSOLUTE_FOLDER, "name": FOLDER_NAME,
                           "settings": {KEY: V}, "finished": true}, ...]}

(with a grid, "key" and each "value" are lists, in the order of the options).
sweep.json is written atomically before the first run and after every run, so an
interrupted sweep still says which folders hold what.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import os
import re
from pathlib import Path
from typing import Callable

from graphc.diagnostics import GraphcError
from graphc.training.checkpoint import write_json_atomic

# Characters kept in a run folder's name; every other run of characters becomes "_".
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+,-]+")


def split_values(text: str) -> list[str]:
    """Return the values of `V1,V2,...` split at top-level commas (not inside (), [] or quotes), stripped."""
    values, depth, quote, current = [], 0, None, []
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            values.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    values.append("".join(current).strip())
    return values


def parse_sweep(option: str) -> tuple[str, list[str]]:
    """Return (KEY, [values]) of one `--sweep KEY=V1,V2,...` (GraphcError when it is not of that form)."""
    key, sep, text = option.partition("=")
    key = key.strip()
    values = split_values(text) if sep else []
    if not key or not sep or not text.strip() or any(not v for v in values):
        raise GraphcError(f"--sweep {option!r} is not KEY=V1,V2,...",
                          help='e.g. --sweep lr=0.1,0.01 or --sweep "init=normal(std=0.01),xavier,he"')
    if len(set(values)) != len(values):
        raise GraphcError(f"--sweep {key}: a value is given twice ({', '.join(values)})",
                          help="give each value once")
    return key, values


def folder_name(settings: list[tuple[str, str]]) -> str:
    """Return the filesystem-safe folder name of one run: `init=normal_std=0.01`, `lr=0.1,batch=32`."""
    text = ",".join(f"{key}={value}" for key, value in settings)
    return _UNSAFE.sub("_", text).strip("_") or "run"


def plan_sweep(options: list[str]) -> tuple[list[str], list[list[tuple[str, str]]]]:
    """Return (keys, runs) of the `--sweep` options: each run a list of (KEY, V), the grid's product in order."""
    parsed = [parse_sweep(option) for option in options]
    keys = [key for key, _ in parsed]
    twice = {k for k in keys if keys.count(k) > 1}
    if twice:
        raise GraphcError(f"--sweep {sorted(twice)[0]} is given twice",
                          help="give all of a setting's values in one --sweep KEY=V1,V2,...")
    runs = [list(zip(keys, combo)) for combo in itertools.product(*(values for _, values in parsed))]
    return keys, runs


def run_sweep(args: argparse.Namespace, run_one: Callable[[argparse.Namespace], int],
              check_one: Callable[[argparse.Namespace], object], say: Callable[[str], None] = print) -> int:
    """Train one run per value (per grid point) of the `--sweep` options, each `run_one(options)` with the
    value added as `--set KEY=V` and `--out` its folder; write `<out>/sweep.json`; return 0. Every run's
    options go through `check_one` (which returns the checked graph) before the first run starts."""
    if args.feed or args.eval:
        raise GraphcError("--sweep trains one run per value; it does not go with "
                          + ("--feed" if args.feed else "--eval"),
                          help="drop --sweep, or run `graphc run FILE --eval --out <out>/KEY=V` per folder")
    keys, runs = plan_sweep(args.sweep)
    options = []
    for settings in runs:
        one = copy.copy(args)
        one.sweep, one.set = [], [*args.set, *(f"{k}={v}" for k, v in settings)]
        options.append(one)
    # A bad value fails now, with --set's diagnostic, not after the runs before it have trained.
    graph = [check_one(copy.copy(one)) for one in options][0]
    out = Path(args.out or os.path.join("runs", graph.model))
    names = _unique([folder_name(settings) for settings in runs])
    record = {"key": keys[0] if len(keys) == 1 else keys, "runs": [
        {"value": settings[0][1] if len(keys) == 1 else [v for _, v in settings],
         "dir": str((out / name).resolve()), "name": name, "settings": dict(settings), "finished": False}
        for settings, name in zip(runs, names)]}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "sweep.json", record)
    for index, (settings, one, entry) in enumerate(zip(runs, options, record["runs"])):
        say(f"sweep run {index + 1}/{len(runs)}: {', '.join(f'--set {k}={v}' for k, v in settings)} "
            f"-> {out / entry['name']}")
        one.out = str(out / entry["name"])
        run_one(one)
        entry["finished"] = True
        write_json_atomic(out / "sweep.json", record)
    say(f"sweep of {' x '.join(keys)}: {len(runs)} runs in {out}/ (listed in {out / 'sweep.json'}):")
    for settings, entry in zip(runs, record["runs"]):
        say(f"  {out / entry['name']}/  {', '.join(f'{k}={v}' for k, v in settings)}")
    say(f"overlay their curves with: graphc plot {out}/*/ -o {out}/sweep.png")
    return 0


def _unique(names: list[str]) -> list[str]:
    """Return the names with a `-2`, `-3`, ... suffix on repeats (two values may make the same safe name)."""
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return unique
