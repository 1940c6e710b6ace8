"""The PostgreSQL plumbing under the many-workers search: the test server answers, each test gets its own database,
Optuna keeps a study there, and two processes share one study without losing or duplicating a trial (no graphc).

The server comes from CI's .ci/postgres ($GRAPHC_TEST_POSTGRES); without one these tests skip with the reason, except
the ones about the reason itself and .ci/postgres's command line.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from paths import REPO
from postgres_server import (
    ENV_UNAVAILABLE,
    ENV_URL,
    UNSET_REASON,
    PostgresUnavailable,
    fresh_database,
    optuna_url,
    postgres_url,
    with_database,
)

# One worker process: load the study the test created, run its share of trials, each recording which process ran it.
WORKER = textwrap.dedent("""
    import os, sys, time
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage, n_trials = sys.argv[1], int(sys.argv[2])
    study = optuna.load_study(study_name="plumbing", storage=storage)

    def objective(trial):
        x = trial.suggest_float("x", -3.0, 3.0)
        trial.set_user_attr("pid", os.getpid())
        time.sleep(0.05)   # long enough for the two workers' trials to be in flight together
        return (x - 1.0) ** 2

    study.optimize(objective, n_trials=n_trials)
""")


def _databases(url: str) -> set[str]:
    import psycopg
    with psycopg.connect(url, connect_timeout=3) as conn:
        return {name for (name,) in conn.execute("SELECT datname FROM pg_database")}


def test_server_accepts_connections(postgres_url_fixture):
    import psycopg
    with psycopg.connect(postgres_url_fixture, connect_timeout=3) as conn:
        (one,) = conn.execute("SELECT 1").fetchone()
        major = conn.info.server_version // 10000
    assert one == 1
    assert major >= 13, "fresh databases are dropped WITH (FORCE), which needs PostgreSQL 13"


def test_each_fresh_database_is_new_empty_and_dropped_after(postgres_url_fixture):
    import psycopg
    with fresh_database(postgres_url_fixture) as first, fresh_database(postgres_url_fixture) as second:
        assert first != second
        names = {first.rsplit("/", 1)[1], second.rsplit("/", 1)[1]}
        assert names <= _databases(postgres_url_fixture)
        with psycopg.connect(first, connect_timeout=3, autocommit=True) as conn:
            tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
            conn.execute("CREATE TABLE t (x int)")
        assert tables == 0
        # A session left open (as a killed worker leaves it) must not stop the drop.
        leaked = psycopg.connect(second, connect_timeout=3)
    assert not names & _databases(postgres_url_fixture)
    leaked.close()


def test_optuna_keeps_a_study_in_postgres(fresh_postgres_url):
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = optuna_url(fresh_postgres_url)
    study = optuna.create_study(study_name="kept", storage=optuna.storages.RDBStorage(url), direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.set_user_attr("metric", "val_acc")
    study.optimize(lambda t: -abs(t.suggest_float("lr", 1e-6, 1e-2, log=True) - 1e-3), n_trials=3)
    # A second connection (as another machine would open) sees the same trials.
    again = optuna.load_study(study_name="kept", storage=optuna.storages.RDBStorage(url))
    assert [t.params for t in again.trials] == [t.params for t in study.trials]
    assert [t.state for t in again.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert again.user_attrs == {"metric": "val_acc"}
    assert again.direction == optuna.study.StudyDirection.MAXIMIZE


def test_two_processes_share_one_study(fresh_postgres_url):
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = optuna_url(fresh_postgres_url)
    # Create the study before starting workers: concurrent creation races on the schema (research.md A3).
    optuna.create_study(study_name="plumbing", storage=url)
    per_worker = 4
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, url, str(per_worker)], stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    for w in workers:
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err
    trials = optuna.load_study(study_name="plumbing", storage=url).trials
    assert sorted(t.number for t in trials) == list(range(2 * per_worker)), "a trial number lost or given twice"
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    ran_by = [t.user_attrs["pid"] for t in trials]
    assert {pid: ran_by.count(pid) for pid in set(ran_by)} == {w.pid: per_worker for w in workers}


def test_skip_reason_says_why_without_a_server(monkeypatch):
    monkeypatch.delenv(ENV_URL, raising=False)
    monkeypatch.delenv(ENV_UNAVAILABLE, raising=False)
    with pytest.raises(PostgresUnavailable) as unset:
        postgres_url()
    assert str(unset.value) == UNSET_REASON
    monkeypatch.setenv(ENV_UNAVAILABLE, "PostgreSQL unavailable: apt-get install postgresql failed")
    with pytest.raises(PostgresUnavailable) as recorded:
        postgres_url()
    assert str(recorded.value).startswith(UNSET_REASON)
    assert str(recorded.value).endswith("apt-get install postgresql failed")


def test_skip_reason_carries_the_connection_error(monkeypatch):
    pytest.importorskip("psycopg")
    monkeypatch.setenv(ENV_URL, "postgresql://postgres@127.0.0.1:1/nothing_listens_here")
    with pytest.raises(PostgresUnavailable) as refused:
        postgres_url()
    message = str(refused.value)
    assert message.startswith("PostgreSQL not available at postgresql://postgres@127.0.0.1:1/")
    assert "\n" not in message and len(message) > len("PostgreSQL not available at ... : ") + 40


def test_urls_for_optuna_and_for_another_database():
    assert optuna_url("postgresql://postgres@127.0.0.1:55432/graphc_test") == \
        "postgresql+psycopg://postgres@127.0.0.1:55432/graphc_test"
    assert optuna_url("sqlite:///study.db") == "sqlite:///study.db"
    assert with_database("postgresql://postgres@127.0.0.1:55432/graphc_test?sslmode=disable", "other") == \
        "postgresql://postgres@127.0.0.1:55432/other?sslmode=disable"


def test_ci_postgres_command_line():
    script = REPO / ".ci" / "postgres"
    assert os.access(script, os.X_OK), ".ci/postgres must be executable: CI runs it directly"
    usage = subprocess.run([script, "frobnicate"], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 2 and "usage: .ci/postgres start" in usage.stderr
    bad_port = subprocess.run([script, "start", "not-a-port"], capture_output=True, text=True, timeout=30)
    assert bad_port.returncode == 2 and bad_port.stdout == ""
    # A port where this script never started a cluster: status says so and fails; stop is a harmless no-op.
    status = subprocess.run([script, "status", "postgresql://postgres@127.0.0.1:1/x"], capture_output=True,
                            text=True, timeout=30)
    assert status.returncode == 1 and "port 1" in status.stdout + status.stderr
    stop = subprocess.run([script, "stop", "1"], capture_output=True, text=True, timeout=30)
    assert stop.returncode == 0
