"""Many machines, for real: three `graphc search` workers share one study on a PostgreSQL server.

CI's `.ci/run` installs Debian's postgresql and starts a throwaway server
(`.ci/postgres`); without one these tests skip with the reason. Each worker is
its own process with its own output folder, as on three machines; together they
must finish exactly the requested trials, none lost or run twice, and
`--report` must show them all. A worker killed mid-trial stops beating; Optuna's
heartbeat fails its trial and a live worker retries it with the same values.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

optuna = pytest.importorskip("optuna", reason="the search extra (optuna) is not installed")

from postgres_server import optuna_url  # noqa: E402
from tiny_models import TINY_SEARCH  # noqa: E402

MODEL = TINY_SEARCH.replace("LR_LOW", "1e-3").replace("SEARCH", "sampler = random; pruner = none")


def worker(nn, url, out, trials, **popen):
    argv = [sys.executable, "-m", "graphc", "search", str(nn), "--storage", url, "--study", "shared",
            "--out", str(out), "--trials", str(trials), "--limit", "300"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def load(url):
    return optuna.load_study(study_name="shared", storage=optuna_url(url))


def test_three_workers_complete_exactly_the_requested_trials(tmp_path, fresh_postgres_url):
    nn = tmp_path / "tiny.nn"
    nn.write_text(MODEL.replace("EPOCHS", "2"))
    workers = [worker(nn, fresh_postgres_url, tmp_path / f"machine{i}", 9) for i in range(3)]
    outputs = [w.communicate(timeout=600) for w in workers]
    for w, (_, stderr) in zip(workers, outputs):
        assert w.returncode == 0, stderr
    trials = load(fresh_postgres_url).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 9          # exactly 9, none failed or left running
    assert sorted(t.number for t in trials) == list(range(9))
    folders = sorted(p.name for i in range(3) for p in (tmp_path / f"machine{i}" / "trials").iterdir())
    assert folders == [f"trial-{n:04d}" for n in range(9)]            # each trial ran once, on one machine
    assert len({t.user_attrs["pid"] for t in trials}) == 3             # all three workers took part
    report = subprocess.run([sys.executable, "-m", "graphc", "search", "--report", str(tmp_path / "report"),
                             "--storage", fresh_postgres_url, "--study", "shared"], capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    assert "9 complete" in report.stdout and (tmp_path / "report" / "best_curves.png").is_file()


def test_a_killed_worker_s_trial_is_retried_by_another(tmp_path, fresh_postgres_url):
    nn = tmp_path / "tiny.nn"
    nn.write_text(MODEL.replace("EPOCHS", "400"))   # trials of seconds: the kill lands inside one
    doomed = worker(nn, fresh_postgres_url, tmp_path / "doomed", 3, start_new_session=True)
    deadline = time.monotonic() + 180
    while not list((tmp_path / "doomed" / "trials").glob("trial-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.communicate()
    survivor = worker(nn, fresh_postgres_url, tmp_path / "survivor", 3)
    stdout, stderr = survivor.communicate(timeout=600)
    assert survivor.returncode == 0, stderr
    trials = load(fresh_postgres_url).trials
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == 3 and states.count("FAIL") == 1, states
    failed = next(t for t in trials if t.state.name == "FAIL")
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == failed.number)
    assert retry.params == failed.params and retry.state.name == "COMPLETE"
