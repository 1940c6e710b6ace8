"""`graphc search`: run a file's hyperparameter search, or `--report` one from its storage.

Options become a SearchOptions (graphc/search/study.py); the study, its trials
and the files it leaves are described there and in the README ("Search").
"""
from __future__ import annotations

from pathlib import Path

from graphc.diagnostics import Diagnostics, GraphcError
from graphc.language.parse import parse_program
from graphc.language.spaces import all_spaces, find_spaces
from graphc.search.report import finish_study
from graphc.search.settings import SearchConfig
from graphc.search.storage import open_storage
from graphc.search.study import SearchOptions, search


def search_command(args) -> int:
    """`graphc search FILE` (run or continue the study) or `graphc search --report DIR`; return 0."""
    _needs_optuna()
    if args.report:
        return report_command(args)
    if not args.file:
        raise GraphcError("graphc search needs a .nn file (or --report DIR)",
                          help="graphc search model.nn [--trials N] [--storage URL] [--out DIR]")
    if args.jobs < 1:
        raise GraphcError(f"--jobs must be at least 1, got {args.jobs}")
    if args.limit is not None and args.limit < 1:
        raise GraphcError(f"--limit must be at least 1, got {args.limit}")
    options = SearchOptions(Path(args.file), model=args.model, trials=args.trials, storage=args.storage,
                            study=args.study, out=Path(args.out) if args.out else None, jobs=args.jobs,
                            data=args.data, limit=args.limit, epochs=args.epochs, sets=list(args.set),
                            worker=args.worker, sampler=args.sampler)
    search(options, say=lambda line: print(line, flush=True))
    return 0


def report_command(args) -> int:
    """Redraw the plots and print the best trials of an existing study (nothing is trained); return 0."""
    import optuna  # the search extra: imported by the command that reads studies
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = Path(args.report)
    if args.storage is None and not (out / "study.log").is_file():
        raise GraphcError(f"no study in {out}: {out / 'study.log'} does not exist",
                          help="give the --out folder of a search, or --storage URL (and --study NAME)")
    try:
        out.mkdir(parents=True, exist_ok=True)   # the plots and best.nn go there
    except OSError as error:
        raise GraphcError(f"cannot create {out}: {error.strerror}") from None
    storage, _, shown = open_storage(args.storage, out)
    names = optuna.get_all_study_names(storage)
    name = args.study or (names[0] if len(names) == 1 else None)
    if name not in names:
        raise GraphcError(f"{'no study named ' + repr(args.study) if args.study else 'several studies'} in {shown}",
                          help="studies there: " + (", ".join(names) or "none") + "; choose one with --study")
    study = optuna.load_study(study_name=name, storage=storage)
    attrs = study.user_attrs
    config = SearchConfig(metric=attrs.get("metric", "value"), direction=attrs.get("direction", "maximize"))
    modules, spaces = None, []
    source = Path(attrs.get("source", ""))
    if source.is_file():
        modules = parse_program(source)
        spaces = find_spaces(modules, Diagnostics())
    finish_study(study, modules if spaces else None, spaces, config, out, shown, lambda line: print(line, flush=True),
                 order=[s.name for s in all_spaces(spaces)])
    return 0


def _needs_optuna() -> None:
    try:
        import optuna  # noqa: F401  (the search extra; a clear message instead of an ImportError traceback)
    except ImportError:
        raise GraphcError("graphc search needs Optuna", help="pip install 'graphc[search]'") from None
