"""Engine and transactions.

Transactions are owned by the service layer: ``db.write()`` for anything that changes state,
``db.read()`` for queries. Correctness under concurrency comes from the database, not from locks in
this process, so several server and worker processes can share one database:

- PostgreSQL: row locks (``SELECT ... FOR UPDATE``) on the user row serialise a user's limit checks;
  queue claims use ``FOR UPDATE SKIP LOCKED``.
- PostgreSQL sessions also ``NOTIFY`` the jobs they change (``server.db.notify``), which is how
  progress streams learn of changes without polling.
- SQLite: every write transaction starts with ``BEGIN IMMEDIATE``, which takes the database's one
  write lock up front, so check-then-write sequences cannot interleave (and never fail half-way with
  a lock upgrade error). WAL lets readers go on meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from server.db.notify import WORK_SIGNAL, NotifyingSession, WorkSession
from server.db.work_signal import WorkSignal
from server.errors import Internal

log = logging.getLogger(__name__)

_WRITE = "s3_write"


class DatabaseUnavailable(Internal):
    """The database did not answer (connection refused, lost, or locked past the timeout)."""


def _sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event, not the driver, decide how a transaction starts.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(_WRITE, True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def create_db_engine(url: str, *, echo: bool = False) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30}, pool_pre_ping=True
        )
        _sqlite_hooks(engine)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    """Owns the engine; hands out sessions bound to one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._reader = engine.execution_options(**{_WRITE: False})
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.is_postgres = engine.dialect.name == "postgresql"
        self._session_class: type[Session] = NotifyingSession if self.is_postgres else WorkSession
        self.work_signal = WorkSignal()
        """Fired when this process commits claimable work (and, on PostgreSQL, by the listener)."""

    @classmethod
    def from_url(cls, url: str) -> Database:
        return cls(create_db_engine(url))

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction: committed when the block ends, rolled back on any exception."""
        with self._session(self.engine) as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._session(self._reader) as session:
            yield session

    @contextmanager
    def _session(self, bind: Engine) -> Iterator[Session]:
        try:
            with self._session_class(bind, expire_on_commit=False) as session, session.begin():
                session.info[WORK_SIGNAL] = self.work_signal
                yield session
        except (OperationalError, DBAPIError) as e:
            if isinstance(e, OperationalError) or e.connection_invalidated:
                log.error("database error: %s", e.orig if e.orig is not None else e)
                raise DatabaseUnavailable("the database is unavailable, try again") from e
            raise

    def ping(self) -> None:
        with self.read() as s:
            s.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
