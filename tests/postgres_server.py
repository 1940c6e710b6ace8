"""A real PostgreSQL server for the tests (the search's many-workers test): found, checked, and one fresh database per test.

CI's `.ci/postgres start` runs a throwaway server on localhost and `.ci/run` exports its URL as $GRAPHC_TEST_POSTGRES
(postgresql://postgres@127.0.0.1:55432/graphc_test); when it cannot, it exports the reason as
$GRAPHC_TEST_POSTGRES_UNAVAILABLE instead. By hand: `export GRAPHC_TEST_POSTGRES="$(.ci/postgres start)"`.

Fixtures (tests/conftest.py loads this module as a plugin, so tests ask for them by name):
- `postgres_url_fixture`: the server's URL, checked to accept a connection; skips the test with the reason when not.
- `fresh_postgres_url`: the URL of a new, empty database made for this one test and dropped after it, so tests
  never see each other's studies.
Optuna's RDBStorage takes SQLAlchemy URLs, where bare `postgresql://` means psycopg2: `optuna_url()` names psycopg 3.
"""
from __future__ import annotations

import contextlib
import functools
import os
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

ENV_URL = "GRAPHC_TEST_POSTGRES"
ENV_UNAVAILABLE = "GRAPHC_TEST_POSTGRES_UNAVAILABLE"   # .ci/run's "PostgreSQL unavailable: <reason>" line
CONNECT_TIMEOUT_S = 3
UNSET_REASON = f"PostgreSQL not available: {ENV_URL} unset (CI's .ci/postgres could not start a server)"


class PostgresUnavailable(RuntimeError):
    """No usable PostgreSQL server; the message is the reason, fit for a skip."""


def postgres_url() -> str:
    """Return the URL in $GRAPHC_TEST_POSTGRES after checking that it accepts a connection within 3 s.

    Raises PostgresUnavailable with the reason (variable unset, psycopg missing, or the connection error).
    """
    url = os.environ.get(ENV_URL, "").strip()
    if not url:
        recorded = os.environ.get(ENV_UNAVAILABLE, "").strip()
        raise PostgresUnavailable(UNSET_REASON + (f": {recorded}" if recorded else ""))
    reason = _connection_problem(url)
    if reason:
        raise PostgresUnavailable(f"PostgreSQL not available at {url}: {reason}")
    return url


def optuna_url(url: str) -> str:
    """Return `url` as the SQLAlchemy URL Optuna's RDBStorage needs for psycopg 3: postgresql+psycopg://..."""
    scheme, rest = url.split("://", 1)
    return ("postgresql+psycopg" if scheme in ("postgresql", "postgres") else scheme) + "://" + rest


def with_database(url: str, database: str) -> str:
    """Return `url` naming another database on the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


@contextlib.contextmanager
def fresh_database(url: str) -> Iterator[str]:
    """Create a new empty database on the server of `url`; yield its URL; drop it afterwards (even if in use)."""
    # psycopg is optional (the [search] extra) and postgres_url() already said whether it is there.
    import psycopg
    from psycopg import sql

    name = f"graphc_test_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(url, name)
    finally:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True) as conn:
            # FORCE (PostgreSQL 13+) ends the sessions a killed or leaking worker left open.
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@functools.cache
def _connection_problem(url: str) -> str | None:
    """Return why `url` does not accept a connection (one line), or None when it does. Checked once per process."""
    try:
        # psycopg is optional (the [search] extra): without it there is no way to talk to the server.
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[search]')"
    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        return " ".join(str(e).split()) or type(e).__name__
    return None


@pytest.fixture(scope="session")
def postgres_url_fixture() -> str:
    """Return the test server's URL (checked to accept connections); skip the test with the reason when there is none."""
    try:
        return postgres_url()
    except PostgresUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture
def fresh_postgres_url(postgres_url_fixture) -> Iterator[str]:
    """Yield the URL (postgresql://...) of a new empty database for this test only; it is dropped afterwards."""
    with fresh_database(postgres_url_fixture) as url:
        yield url
