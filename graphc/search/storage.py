"""Where a study lives, and the lock that keeps its trial budget exact.

Input: `--storage` (None, a journal file path, `sqlite:///...`, or `postgresql://...`)
and the output folder. Output: an Optuna storage and a `BudgetLock`.

Default: Optuna's journal file `<out>/study.log` (JournalFileBackend). Measured
on this machine kind (research.md A3): 4 processes x 40 trials ran without an
error in 9.4 s, where a fresh SQLite file crashed one worker at schema creation
and took 21 s; Optuna itself never recommends SQLite for parallel workers. Many
machines share a PostgreSQL study (`postgresql://user@host/db`), with Optuna's
heartbeat: a worker that dies stops beating, its trial is failed and retried
with the same values by the next worker that asks for one.

The budget lock: workers ask for trials while holding it, so `trials = N` means
exactly N trials that complete or are pruned, however many workers share the
study (Optuna's own MaxTrialsCallback overshoots when workers race). A file lock
(flock) on one machine; a PostgreSQL advisory lock across machines.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import warnings
from pathlib import Path

from graphc.diagnostics import GraphcError

HEARTBEAT_SECONDS = 5     # a running trial's heartbeat; stale after GRACE_SECONDS without one
GRACE_SECONDS = 20


def open_storage(url: str | None, out: Path):
    """Return (the Optuna storage, a BudgetLock, the storage's display name) for `--storage` (None: the journal file)."""
    # The search extra: imported by the commands that search, not at graphc's import.
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend
    if url is None or "://" not in url:
        path = Path(url) if url is not None else out / "study.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        storage = JournalStorage(JournalFileBackend(str(path)))
        # Not `<journal>.lock`: Optuna's journal backend uses that name for its own lock.
        return storage, FileLock(path.with_name(path.name + ".budget-lock")), str(path)
    scheme = url.split("://", 1)[0]
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        sqlalchemy_url = "postgresql+psycopg://" + url.split("://", 1)[1]
        # Workers that start together on a fresh database would race to create Optuna's tables
        # (seen here: a duplicate-key error in pg_type): the first creates them under the lock.
        schema_lock = AdvisoryLock(url, "graphc-search-schema")
        try:
            schema_lock.acquire()
            with warnings.catch_warnings():
                # Heartbeats are marked experimental by Optuna; they are what makes a dead worker's trial retried.
                warnings.simplefilter("ignore", ExperimentalWarning)
                storage = RDBStorage(sqlalchemy_url, heartbeat_interval=HEARTBEAT_SECONDS,
                                     grace_period=GRACE_SECONDS,
                                     heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
                                     engine_kwargs={"pool_pre_ping": True})
        except GraphcError:
            raise   # the schema lock could not connect: already said in words
        except ImportError as error:
            raise GraphcError(f"--storage {_hide_password(url)}: {error}",
                              help="pip install 'graphc[search]' (psycopg)") from None
        except Exception as error:   # SQLAlchemy's OperationalError and friends: the server said no
            raise GraphcError(f"cannot open the study storage {_hide_password(url)}: {str(error).splitlines()[0]}",
                              help="check the host, port, user and database; the server must accept connections") \
                from None
        finally:
            schema_lock.release()
            schema_lock.close()
        return storage, AdvisoryLock(url), _hide_password(url)
    if scheme == "sqlite":
        storage = RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 30}})
        return storage, FileLock(Path(url.split("///", 1)[-1] + ".budget-lock")), url
    raise GraphcError(f"--storage {_hide_password(url)}: unknown kind of storage `{scheme}`",
                      help="a journal file path (the default is <out>/study.log), sqlite:///FILE, or "
                           "postgresql://USER@HOST:PORT/DB for many machines")


def _hide_password(url: str) -> str:
    """Return the URL with any password replaced by ***: storage URLs are printed."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, at, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in credentials else ''}@{host}"


class FileLock:
    """An exclusive flock on a file beside the study: one machine's workers take turns asking for trials."""

    def __init__(self, path: Path):
        self.path, self.fd = Path(path), None

    def for_study(self, name: str) -> "FileLock":
        """Return this lock: the file already belongs to one study's folder."""
        return self

    def acquire(self) -> None:
        """Block until this process holds the lock; returns None."""
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self) -> None:
        """Release the lock if held; returns None."""
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class AdvisoryLock:
    """A PostgreSQL session advisory lock keyed by the study: every machine's workers take turns."""

    def __init__(self, url: str, key: str = "graphc-search"):
        self.url, self.conn, self.held = url, None, False
        self.key = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)

    def for_study(self, name: str) -> "AdvisoryLock":
        """Return a lock keyed by this study's name (studies in one database do not wait for each other)."""
        return AdvisoryLock(self.url, f"graphc-search:{name}")

    def acquire(self) -> None:
        """Block until this process holds the lock; returns None."""
        import psycopg  # the search extra's PostgreSQL driver, needed only with a postgresql:// storage
        url = "postgresql://" + self.url.split("://", 1)[1]
        if self.conn is None:
            try:
                self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
            except psycopg.Error as error:
                raise GraphcError(f"cannot connect to {_hide_password(self.url)}: {str(error).strip().splitlines()[0]}",
                                  help="check the host, port, user and database; the server must accept "
                                       "connections") from None
        self.conn.execute("SELECT pg_advisory_lock(%s)", (self.key,))
        self.held = True

    def release(self) -> None:
        """Release the lock if held; returns None."""
        if self.conn is not None and self.held:
            self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            self.held = False

    def close(self) -> None:
        """Close the lock's connection; returns None."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
