"""lark's parser tables, cached per user where no other user can plant a file.

Input: the grammar text, the parser options, and the options lark cannot
pickle (post-lexer, transformer, callbacks). Output: a `Lark` parser.

Building the LALR tables costs ~150 ms per process; a cache makes `graphc
check` start fast. But lark's cache is a pickle, and loading a pickle runs
whatever code it names. So the cache is read only from a folder that belongs
to this user and that nobody else can write ($XDG_CACHE_HOME/graphc or
~/.cache/graphc, created with mode 0700), and written atomically (a scratch
file in that folder, then `os.replace`). Without such a folder (an unwritable
HOME, a folder others can write) the parser is built without a cache: never
with lark's `cache=True`, whose file sits at a predictable name in the shared
temp folder, where another local user could plant one.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import stat
import sys
from pathlib import Path

import lark
from lark import Lark


def build_parser(grammar_text: str, options: dict, **unpicklable) -> Lark:
    """Return `Lark(grammar_text, **options, **unpicklable)`, its tables loaded from / saved to the private cache.

    `options` shape the tables and name the cache file; `unpicklable` (postlex,
    transformer, lexer_callbacks) are attached after loading.
    """
    folder = private_cache_folder()
    if folder is None:
        return Lark(grammar_text, **options, **unpicklable)
    target = folder / cache_name(grammar_text, options)
    if _is_private(target, stat.S_ISREG):
        # lark rewrites the file only when it does not match (the name's digest makes that a corrupt file).
        return Lark(grammar_text, **options, **unpicklable, cache=str(target))
    # Nothing (or a file we do not trust) there: lark finds no scratch file, builds the tables and
    # writes them to it; renaming the scratch file over the target is atomic.
    scratch = folder / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    parser = Lark(grammar_text, **options, **unpicklable, cache=str(scratch))
    try:
        os.chmod(scratch, 0o600)
        os.replace(scratch, target)
    except OSError:
        scratch.unlink(missing_ok=True)
    return parser


def private_cache_folder() -> Path | None:
    """Return graphc's cache folder if this user alone can write it (creating it, mode 0700), else None.

    The folder is $XDG_CACHE_HOME/graphc, or ~/.cache/graphc when XDG_CACHE_HOME
    is unset or not absolute (the XDG rule).
    """
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    if not os.path.isabs(base):
        return None
    folder = Path(base) / "graphc"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if _is_private(folder, stat.S_ISDIR) else None


def cache_name(grammar_text: str, options: dict) -> str:
    """Return the cache file's name: a digest of the grammar and options, lark's and Python's versions."""
    digest = hashlib.sha256((grammar_text + repr(sorted(options.items()))).encode()).hexdigest()[:16]
    return f"grammar-{digest}-lark{lark.__version__}-py{sys.version_info[0]}.{sys.version_info[1]}.cache"


def _is_private(path: Path, is_kind) -> bool:
    """True when `path` is of the kind asked (a symlink is not), owned by this user, writable by no one else."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return is_kind(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
