"""The front end is safe with hostile or odd files: the parser cache, includes, BOMs, long lines.

Each command runs in a subprocess, as a user would run it: a refusal is exit
status 1 with a one-line reason and no traceback, and it never hangs.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from paths import MODELS, REPO

from graphc.language.grammar_cache import cache_name
from graphc.language.parse import PARSER_OPTIONS, grammar_path

MODEL = "model m {\n  input x: [2]\n  output y = relu(x)\n}\n"


def graphc(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 60):
    """Run `python -m graphc ARGS`; return the CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "graphc", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=cwd or REPO)


def refused(result, *phrases: str) -> None:
    """Assert exit status 1, a graphc error mentioning every phrase, and no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


# ---- the parser's table cache ----------------------------------------------------------------

class _Planted:
    """A pickle that, when loaded, creates the file `marker`: proof that a planted cache file ran code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(path: Path, marker: Path) -> None:
    # lark's cache file: a digest line, then pickles; the first pickle.load already runs the payload.
    path.write_bytes(b"0" * 64 + b"\n" + pickle.dumps(_Planted(marker)))


def _lark_default_cache_name(scratch: Path) -> str:
    """Return the file name lark's `cache=True` uses in the temp folder for graphc's grammar."""
    code = ("from lark import Lark; from graphc.language.parse import PARSER_OPTIONS, grammar_path; "
            "Lark(grammar_path().read_text(), **PARSER_OPTIONS, cache=True)")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "TMPDIR": str(scratch)}, cwd=REPO)
    (name,) = [p.name for p in scratch.iterdir() if p.name.startswith(".lark_cache")]
    return name


def test_an_unwritable_home_never_uses_the_shared_temp_folder(tmp_path):
    scratch, shared = tmp_path / "scratch", tmp_path / "shared-tmp"
    scratch.mkdir()
    shared.mkdir()
    marker = tmp_path / "PWNED"
    _plant(shared / _lark_default_cache_name(scratch), marker)
    before = sorted(p.name for p in shared.iterdir())
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    # HOME and XDG_CACHE_HOME under a regular file: no cache folder can be made (even as root).
    env = {"TMPDIR": str(shared), "HOME": str(not_a_folder / "home"), "XDG_CACHE_HOME": str(not_a_folder / "cache")}
    result = graphc("check", str(MODELS / "xor.nn"), env=env)
    assert result.returncode == 0, result.stderr
    assert not marker.exists(), "a cache file planted in the shared temp folder was unpickled"
    assert sorted(p.name for p in shared.iterdir()) == before, "graphc wrote into the shared temp folder"


def test_a_cache_folder_others_can_write_is_not_trusted(tmp_path):
    folder = tmp_path / "cache" / "graphc"
    folder.mkdir(parents=True)
    folder.chmod(0o777)
    marker = tmp_path / "PWNED"
    _plant(folder / cache_name(grammar_path().read_text(), PARSER_OPTIONS), marker)
    result = graphc("check", str(MODELS / "xor.nn"), env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert not marker.exists(), "a cache file in a world-writable folder was unpickled"


def test_a_cache_file_others_can_write_is_replaced_not_loaded(tmp_path):
    folder = tmp_path / "cache" / "graphc"
    folder.mkdir(parents=True, mode=0o700)
    marker = tmp_path / "PWNED"
    target = folder / cache_name(grammar_path().read_text(), PARSER_OPTIONS)
    _plant(target, marker)
    target.chmod(0o666)
    result = graphc("check", str(MODELS / "xor.nn"), env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    assert target.stat().st_mode & 0o077 == 0, "the cache was not rewritten privately"
    assert [p.name for p in folder.iterdir()] == [target.name], "a scratch file was left behind"
    # The next start loads the cache graphc wrote itself.
    assert graphc("check", str(MODELS / "xor.nn"), env={"XDG_CACHE_HOME": str(tmp_path / "cache")}).returncode == 0


def test_the_cache_folder_is_private_and_importing_graphc_builds_nothing(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", "import graphc, graphc.language.parse"], env={**os.environ, **env},
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "cache").exists(), "importing graphc created the cache folder"
    assert graphc("check", str(MODELS / "xor.nn"), env=env).returncode == 0
    folder = tmp_path / "cache" / "graphc"
    assert folder.stat().st_mode & 0o777 == 0o700
    (cache,) = folder.iterdir()
    assert cache.stat().st_mode & 0o077 == 0


# ---- what an include (or the main file) may name ----------------------------------------------

def _main_including(tmp_path: Path, target: str) -> Path:
    main = tmp_path / "main.nn"
    main.write_text(f'include "{target}"\n' + MODEL)
    return main


def test_a_byte_order_mark_is_skipped(tmp_path):
    path = tmp_path / "bom.nn"
    path.write_bytes(b"\xef\xbb\xbf" + MODEL.encode())
    (tmp_path / "blocks.nn").write_bytes(b"\xef\xbb\xbfblock b(x) { return x }\n")
    _main_including(tmp_path, "blocks.nn")
    assert graphc("check", str(path)).returncode == 0
    assert graphc("check", str(tmp_path / "main.nn")).returncode == 0
    assert graphc("fmt", "--check", str(path)).returncode == 0


def test_including_a_directory(tmp_path):
    (tmp_path / "sub").mkdir()
    refused(graphc("check", str(_main_including(tmp_path, "sub"))), "included file `sub` is a directory",
            "main.nn:1:1")


def test_including_a_binary_file_never_echoes_it(tmp_path):
    (tmp_path / "blob.nn").write_bytes(b"\x7fELF\x00\x01SECRET-BYTES\xff\xfe")
    result = graphc("check", str(_main_including(tmp_path, "blob.nn")))
    refused(result, "included file `blob.nn` is a binary file")
    assert "SECRET" not in result.stderr and "ELF" not in result.stderr


def test_including_a_non_utf8_file(tmp_path):
    (tmp_path / "latin1.nn").write_bytes("# caf\xe9 SECRET\nblock b(x) { return x }\n".encode("latin-1"))
    result = graphc("check", str(_main_including(tmp_path, "latin1.nn")))
    refused(result, "included file `latin1.nn` is not UTF-8 text (an invalid byte on line 1)")
    assert "SECRET" not in result.stderr


def test_a_non_utf8_main_file_for_check_and_fmt(tmp_path):
    path = tmp_path / "latin1.nn"
    path.write_bytes(b"# caf\xe9\n" + MODEL.encode())
    refused(graphc("check", str(path)), f"cannot read {path}: is not UTF-8 text")
    refused(graphc("fmt", str(path)), f"cannot read {path}: is not UTF-8 text")
    refused(graphc("fmt", "--write", str(path)), "is not UTF-8 text")
    assert path.read_bytes().startswith(b"# caf\xe9\n"), "a refused file was rewritten"


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_including_dev_zero_does_not_hang(tmp_path):
    refused(graphc("check", str(_main_including(tmp_path, "/dev/zero")), timeout=30),
            "included file `/dev/zero` is not a regular file")
    refused(graphc("check", "/dev/zero", timeout=30), "cannot read /dev/zero: is not a regular file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_including_a_fifo_does_not_hang(tmp_path):
    os.mkfifo(tmp_path / "pipe.nn")
    refused(graphc("check", str(_main_including(tmp_path, "pipe.nn")), timeout=30),
            "included file `pipe.nn` is not a regular file")


def test_a_huge_file_is_refused(tmp_path):
    path = tmp_path / "huge.nn"
    path.write_bytes(b"#" * (5 * 1024 * 1024))
    refused(graphc("check", str(path)), "is larger than 4 MB")


def test_a_long_include_chain_is_a_diagnostic(tmp_path):
    for i in range(70):
        (tmp_path / f"f{i}.nn").write_text(f'include "f{i + 1}.nn"\n')
    (tmp_path / "f70.nn").write_text("block b(x) { return x }\n")
    main = _main_including(tmp_path, "f0.nn")
    refused(graphc("check", str(main)), "includes nested more than 64 files deep")


def test_an_include_symlink_loop_is_a_diagnostic(tmp_path):
    os.symlink(tmp_path / "loop_b.nn", tmp_path / "loop_a.nn")
    os.symlink(tmp_path / "loop_a.nn", tmp_path / "loop_b.nn")
    refused(graphc("check", str(_main_including(tmp_path, "loop_a.nn"))), "loop_a.nn")


# ---- messages stay short ---------------------------------------------------------------------

def test_a_huge_line_gives_a_short_message(tmp_path):
    path = tmp_path / "long.nn"
    path.write_text("model m {\n  input x: [2]\n  output y = " + "x + " * 500_000 + "$ + x\n}\n")
    result = graphc("check", str(path))
    refused(result, "unexpected character `$`")
    assert len(result.stderr) < 2000, len(result.stderr)
    snippet = [line for line in result.stderr.splitlines() if "| " in line]
    assert snippet and all(len(line) < 220 for line in snippet)
    caret_line = next(line for line in snippet if "^" in line)
    source_line = snippet[snippet.index(caret_line) - 1]
    assert source_line[caret_line.index("^")] == "$"


def test_a_huge_token_is_not_echoed_whole(tmp_path):
    path = tmp_path / "name.nn"
    path.write_text("model m {\n  input x: [2]\n  output y = x " + "n" * 100_000 + "\n}\n")
    result = graphc("check", str(path))
    refused(result)
    assert len(result.stderr) < 2000


# ---- fmt --write ------------------------------------------------------------------------------

def test_fmt_write_replaces_the_file_and_keeps_its_mode(tmp_path):
    path = tmp_path / "m.nn"
    path.write_text(textwrap.dedent("""\
        model m { input x: [2]; output y = relu(x) }
    """))
    path.chmod(0o640)
    inode = path.stat().st_ino
    assert graphc("fmt", "--write", str(path)).returncode == 0
    assert path.read_text() == MODEL
    assert path.stat().st_ino != inode, "written in place rather than through a rename"
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["m.nn"], "a temp file was left behind"
