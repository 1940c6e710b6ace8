"""`graphc run` never loses a run or hides a failure: output folders, pipes, divergence, locks, exit statuses.

Each class of the reliability issue is run the way a user meets it: `python -m graphc` in its own process,
checking the exit status, the diagnostic, that no traceback is shown, and that good files on disk survive.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from paths import MODELS, REPO

from graphc.cli import INTERNAL_ERROR, main
from graphc.training.checkpoint import load_arrays
from graphc.training.outdir import out_dir_lock

XOR = str(MODELS / "xor.nn")
SPIRAL = """\
model spiral_net {
  input x: [2]
  label y: class[3]
  h = linear(x, 16) -> relu
  logits = linear(h, 3)
  loss = cross_entropy(logits, y)
  output p = softmax(logits)
}
train {
  data = spiral
  batch = 8
  epochs = 2
  optimizer = sgd(lr=0.1)
  seed = 1
}
"""


def graphc(*argv, cwd, **kwargs) -> subprocess.CompletedProcess:
    """Return the finished `python -m graphc ARGV` run in `cwd` (no network: downloads fail at once)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(cwd / "cache"),
           "GRAPHC_MNIST_URL": "http://127.0.0.1:9/", "GRAPHC_DATA": ""}
    return subprocess.run([sys.executable, "-m", "graphc", *map(str, argv)], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=300, **kwargs)


def user_error(done: subprocess.CompletedProcess, says: str) -> None:
    """Assert `done` ended as a user error: status 1, `says` on stderr, no traceback, no numpy warning."""
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr, done.stderr


# ---- --out ------------------------------------------------------------------------------------

def test_out_naming_a_file_or_a_path_through_a_file(tmp_path):
    (tmp_path / "taken").write_text("not a folder\n")
    user_error(graphc("run", XOR, "--epochs", "1", "--out", "taken", cwd=tmp_path), "taken is a file, not a folder")
    user_error(graphc("run", XOR, "--epochs", "1", "--out", "taken/sub", cwd=tmp_path), "a part of the path is a file")
    assert (tmp_path / "taken").read_text() == "not a folder\n"


def test_out_that_cannot_be_created(tmp_path):
    user_error(graphc("run", XOR, "--epochs", "1", "--out", "/proc/graphc-out", cwd=tmp_path),
               "cannot create output folder /proc/graphc-out")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_out_that_is_not_writable(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    user_error(graphc("run", XOR, "--epochs", "1", "--out", locked, cwd=tmp_path), "is not writable")


# ---- a reader that leaves ------------------------------------------------------------------------

def test_run_piped_into_a_reader_that_leaves_still_writes_everything(tmp_path):
    # The loop prints ~20 lines over the run; the reader leaves after the first (like `| head -1`).
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-m", "graphc", "run", XOR, "--epochs", "3000", "--out", "out"],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = child.stdout.readline()
    child.stdout.close()
    _, err = child.communicate(timeout=300)
    assert first.startswith(b"training xor")
    assert child.returncode == 0, err
    assert b"Traceback" not in err and b"Broken pipe" not in err, err
    arrays, meta = load_arrays(tmp_path / "out" / "weights.npz")
    assert meta["epochs"] == 3000
    assert all(np.all(np.isfinite(a)) for a in arrays.values())
    assert {"checkpoint.npz", "metrics.json"} <= set(os.listdir(tmp_path / "out"))


# ---- divergence ---------------------------------------------------------------------------------

def test_a_diverging_run_exits_1_and_keeps_the_good_files(tmp_path):
    good = graphc("run", XOR, "--epochs", "50", "--out", "out", "--quiet", cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    before = {name: (tmp_path / "out" / name).read_bytes() for name in ("weights.npz", "checkpoint.npz")}
    for epochs in ("1", "3"):
        done = graphc("run", XOR, "--set", "optimizer=sgd(lr=1e39)", "--epochs", epochs, "--out", "out",
                      cwd=tmp_path)
        user_error(done, "training diverged in epoch 1, step 1")
        assert "NaN or infinite" in done.stderr and "lower the learning rate" in done.stderr
        for name, data in before.items():
            assert (tmp_path / "out" / name).read_bytes() == data, name


# ---- locking -----------------------------------------------------------------------------------

def test_a_second_run_into_the_same_out_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    with out_dir_lock(tmp_path / "out"):
        done = graphc("run", XOR, "--epochs", "1", "--out", "out", cwd=tmp_path)
    user_error(done, f"another graphc run (pid {os.getpid()}) is writing to out")
    assert not (tmp_path / "out" / "weights.npz").exists()
    # the lock goes with its holder: the same run now succeeds
    assert graphc("run", XOR, "--epochs", "1", "--out", "out", "--quiet", cwd=tmp_path).returncode == 0


def test_the_lock_of_a_killed_run_does_not_block(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-m", "graphc", "run", XOR, "--epochs", "100000", "--out", "out",
                              "--quiet"], cwd=tmp_path, env=env)
    lock = tmp_path / "out" / ".lock"
    deadline = time.monotonic() + 60
    while not (lock.exists() and lock.read_text().strip() == str(child.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    child.kill()
    child.wait()
    assert graphc("run", XOR, "--epochs", "1", "--out", "out", "--quiet", cwd=tmp_path).returncode == 0


# ---- --resume and --eval -------------------------------------------------------------------------

def test_resume_refuses_a_changed_limit(tmp_path):
    (tmp_path / "s.nn").write_text(SPIRAL)
    assert graphc("run", "s.nn", "--limit", "40", "--out", "out", "--quiet", cwd=tmp_path).returncode == 0
    done = graphc("run", "s.nn", "--limit", "80", "--epochs", "3", "--resume", "--out", "out", cwd=tmp_path)
    user_error(done, "different train settings")
    assert "limit: checkpoint 40, now 80" in done.stderr
    done = graphc("run", "s.nn", "--epochs", "3", "--resume", "--out", "out", cwd=tmp_path)
    user_error(done, "limit: checkpoint 40, now (absent)")
    done = graphc("run", "s.nn", "--limit", "40", "--epochs", "3", "--resume", "--out", "out", "--quiet",
                  cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_eval_without_weights_uses_the_runs_own(tmp_path):
    (tmp_path / "s.nn").write_text(SPIRAL)
    user_error(graphc("run", "s.nn", "--eval", "--out", "out", cwd=tmp_path), "nothing to evaluate: out/weights.npz")
    train = graphc("run", "s.nn", "--out", "out", cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    test_line = next(line for line in train.stdout.splitlines() if line.startswith("test:"))
    done = graphc("run", "s.nn", "--eval", "--out", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == test_line and "evaluating out/weights.npz" in done.stderr


# ---- inspect without data ------------------------------------------------------------------------

def test_inspect_filters_needs_no_data(tmp_path):
    done = graphc("inspect", MODELS / "lenet5.nn", "--filters", "--init", "zeros", "-o", "f.png", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "download" not in done.stderr and (tmp_path / "f.png").is_file()


# ---- exit statuses -------------------------------------------------------------------------------

def test_an_internal_bug_exits_70_with_its_traceback_and_a_request(monkeypatch, capsys):
    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("graphc.cli.check.check_command", broken)
    assert main(["check", XOR]) == INTERNAL_ERROR
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError: a bug" in err
    assert "graphc: internal error (a bug): please report it" in err


def test_user_error_and_usage_statuses(tmp_path, capsys):
    assert main(["run", XOR, "--limit", "0"]) == 1
    assert main(["run", XOR, "--no-such-option"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_half_written_files_of_a_killed_run_are_removed_by_the_next(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".weights.npz.{dead.stdout.strip()}.0badc0de.tmp"
    stale.write_bytes(b"half a file")
    keep = out / ".notes.tmp"   # not one of ours: left alone
    keep.write_text("mine")
    assert graphc("run", XOR, "--epochs", "1", "--out", "out", "--quiet", cwd=tmp_path).returncode == 0
    assert not stale.exists() and keep.exists()
