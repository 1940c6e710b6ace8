"""The long fuzz run: many generated programs through check, plan and a forward/backward pass.

    python -m bench.fuzz_long --cases 100000 --jobs 2 [--start 0] [--limit 5] [--json out.json]

Programs come from tests/fuzz_programs.py (a grammar- and registry-aware generator; see its
docstring: a share carries search spaces and search sections, checked as `graphc check`
does), one per seed, seeds start..start+cases-1. Each worker process runs its cases
in-process under a SIGALRM time limit and an address-space limit (so a runaway allocation
fails in the worker instead of taking the machine). The summary: cases, the share check
accepted and the share that ran forward/backward, diagnostics, crashes grouped by exception
type and the function that raised (with the ops every crashing program shares and the
shortest program of the class, a reproducer), slow cases, the longest diagnostic, the time,
and the same shares for the cases with search spaces, hostile spaces and `data = none` models.
A crash or a slow case makes the exit status 1.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import resource
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

# The generator lives with the tests (which import it as a top-level module), not in the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fuzz_programs import Case, generate, run_case  # noqa: E402

MEMORY_LIMIT = 3 * 1024 ** 3   # bytes of address space per worker
KINDS = {"search spaces": ("space:", "space-miss:", "search"), "hostile spaces": ("hostile:space-",),
         "data = none": ("data:none",)}   # kinds of case (by tag prefix) the summary counts apart
_EXCLUDE: tuple = ()
_LIMIT = 5.0


def _init(exclude: tuple, limit: float) -> None:
    global _EXCLUDE, _LIMIT
    _EXCLUDE, _LIMIT = exclude, limit
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = MEMORY_LIMIT if hard == resource.RLIM_INFINITY else min(MEMORY_LIMIT, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _one(seed: int) -> dict:
    """Return one case's outcome as a dict (with its program when it failed)."""
    case = generate(seed, _EXCLUDE)
    try:
        outcome = run_case(case, _LIMIT)
    except BaseException as error:   # noqa: BLE001 - a worker that dies loses its pool's results: record it
        return {"seed": seed, "status": "crash", "stage": "driver", "valid": False, "ran": False, "seconds": 0.0,
                "class": type(error).__name__, "where": "bench/fuzz_long.py _one", "message": str(error)[:300],
                "tags": [], "longest": 0, "program": case.show()[:2000]}
    record = {"seed": seed, "status": outcome.status, "stage": outcome.stage, "valid": outcome.valid,
              "ran": outcome.ran, "seconds": round(outcome.seconds, 4), "class": outcome.crash_class,
              "where": outcome.where, "message": outcome.message, "tags": list(outcome.tags),
              "longest": outcome.longest_diagnostic}
    if outcome.status in ("crash", "slow", "late"):
        record["program"] = case.show() if len(case.show()) < 20_000 else case.show()[:2000] + "\n..."
    return record


# Pieces of a line a reduction tries to drop: a `->` link, a `+ ...` term, a keyword argument.
_PIECES = re.compile(r" -> \w+(\([^()]*\))?| \+ [^\n]*$|, \w+=[^,()]*(?=[,)])")


def reduce_case(case: Case, key: str, limit: float = 5.0) -> str:
    """Return the main file of `case` with every line and piece removed that crash class `key` does not need."""
    lines = case.main.split("\n")

    def same(trial: list[str]) -> bool:
        outcome = run_case(Case(case.seed, {**case.files, "main.nn": "\n".join(trial)}, case.tags), limit)
        return outcome.status == "crash" and outcome.crash_class == key

    shrinking = True
    while shrinking:
        shrinking = False
        for i, line in enumerate(lines):
            if line.strip() in ("", "}") or line.startswith(("model ", "block ")):
                continue
            candidates = [lines[:i] + lines[i + 1:]]
            candidates += [lines[:i] + [line[:m.start()] + line[m.end():]] + lines[i + 1:]
                           for m in _PIECES.finditer(line)]
            for trial in candidates:
                if same(trial):
                    lines, shrinking = trial, True
                    break
            if shrinking:
                break
    return "\n".join(line for line in lines if line.strip())


def summarise(records: list[dict], seconds: float) -> dict:
    """Return the run's summary: counts, shares, crash classes, slow cases, timings."""
    n = len(records)
    status = Counter(r["status"] for r in records)
    classes: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        if r["status"] == "crash":
            classes[r["class"]].append(r)
        elif r["status"] == "late":
            classes["late diagnostic (check accepted, run refused): " + r["where"]].append(r)
    crash_summary = {}
    for key, rs in sorted(classes.items(), key=lambda kv: -len(kv[1])):
        ops = set.intersection(*(set(t for t in r["tags"] if t.startswith(("op:", "hostile:"))) for r in rs))
        shortest = min(rs, key=lambda r: len(r.get("program", "")))
        crash_summary[key] = {"count": len(rs), "seed": shortest["seed"], "seeds": [r["seed"] for r in rs[:10]],
                              "shared_tags": sorted(ops), "stage": shortest["stage"],
                              "where": shortest["where"], "message": shortest["message"][:200],
                              "reproducer": shortest.get("program", "")}
    kinds = {}
    for kind, prefixes in KINDS.items():
        rs = [r for r in records if any(t.startswith(prefixes) for t in r["tags"])]
        kinds[kind] = {"cases": len(rs), "valid_share": round(sum(r["valid"] for r in rs) / max(len(rs), 1), 3),
                       "ran_share": round(sum(r["ran"] for r in rs) / max(len(rs), 1), 3),
                       "crashes": sum(r["status"] == "crash" for r in rs),
                       "slow": sum(r["status"] == "slow" for r in rs)}
    slow = sorted((r for r in records if r["status"] == "slow"), key=lambda r: -r["seconds"])
    times = sorted(r["seconds"] for r in records)
    return {
        "cases": n, "seconds": round(seconds, 1), "cases_per_second": round(n / seconds, 1) if seconds else None,
        "status": dict(status), "valid_share": round(sum(r["valid"] for r in records) / max(n, 1), 3),
        "ran_share": round(sum(r["ran"] for r in records) / max(n, 1), 3),
        "crashes": status.get("crash", 0), "slow": len(slow), "late": status.get("late", 0),
        "classes": crash_summary, "kinds": kinds,
        "slow_cases": [{"seed": r["seed"], "seconds": r["seconds"], "tags": r["tags"], "stage": r["stage"]}
                       for r in slow[:20]],
        "case_seconds": {"median": times[n // 2] if n else 0, "p99": times[int(n * 0.99)] if n else 0,
                         "max": times[-1] if n else 0},
        "longest_diagnostic": max((r["longest"] for r in records), default=0),
        "diagnostics_over_10k_chars": sum(r["longest"] > 10_000 for r in records),
    }


def print_summary(s: dict) -> None:
    """Print the summary for a person."""
    print(f"cases {s['cases']} in {s['seconds']} s ({s['cases_per_second']}/s); "
          f"valid {s['valid_share']:.1%}, ran forward/backward {s['ran_share']:.1%}")
    print("status: " + ", ".join(f"{k} {v}" for k, v in sorted(s["status"].items())))
    print(f"case time: median {s['case_seconds']['median']:.3f} s, p99 {s['case_seconds']['p99']:.3f} s, "
          f"max {s['case_seconds']['max']:.3f} s")
    print(f"longest diagnostic {s['longest_diagnostic']:,} chars; {s['diagnostics_over_10k_chars']} over 10,000")
    for kind, k in s["kinds"].items():
        print(f"{kind}: {k['cases']} cases, valid {k['valid_share']:.1%}, ran {k['ran_share']:.1%}, "
              f"{k['crashes']} crashes, {k['slow']} slow")
    for key, c in s["classes"].items():
        print(f"\n== {c['count']} x {key}\n   stage {c['stage']}, {c['where']}: {c['message']}")
        print(f"   seeds {c['seeds']}; shared tags {c['shared_tags']}")
        print("   " + c["reproducer"].replace("\n", "\n   "))
    for r in s["slow_cases"]:
        print(f"slow: seed {r['seed']} {r['seconds']:.1f} s at {r['stage']} {r['tags']}")


def _write_json(path: str, summary: dict) -> None:
    """Write the summary to `path` atomically (a temporary file, then a rename); returns None."""
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(summary, indent=1))
    tmp.replace(path)


def main(argv=None) -> int:
    """Run the long fuzz run; return 1 when a case crashed or was slow, else 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--start", type=int, default=0, help="the first seed")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--limit", type=float, default=5.0, help="seconds one case may take")
    parser.add_argument("--exclude", action="append", default=[], help="skip constructs whose tag matches")
    parser.add_argument("--json", help="write the summary (with reproducers) to this file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    records = []
    seeds = range(args.start, args.start + args.cases)
    with multiprocessing.get_context("fork").Pool(args.jobs, _init, (tuple(args.exclude), args.limit),
                                                  maxtasksperchild=2000) as pool:
        for record in pool.imap_unordered(_one, seeds, chunksize=20):
            records.append(record)
            if len(records) % 5000 == 0:
                bad = sum(r["status"] in ("crash", "slow") for r in records)
                print(f"{len(records)} cases, {bad} crashes or slow, {time.perf_counter() - start:.0f} s",
                      file=sys.stderr, flush=True)
                if args.json:   # a partial summary: a run stopped early still reports what it saw
                    _write_json(args.json, summarise(records, time.perf_counter() - start))
    summary = summarise(records, time.perf_counter() - start)
    for key, c in summary["classes"].items():
        if not key.startswith("late"):   # a line-by-line reduction of the shortest program of the class
            c["reproducer"] = reduce_case(generate(c["seed"], tuple(args.exclude)), key, args.limit)
    print_summary(summary)
    if args.json:
        _write_json(args.json, summary)
    return 1 if summary["crashes"] or summary["slow"] else 0


if __name__ == "__main__":
    sys.exit(main())
