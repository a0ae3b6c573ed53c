"""PostgreSQL advisory locks: one process at a time for what must not run concurrently.

Two uses, each with its own key:

- ``held(engine, MIGRATIONS)``: every process that starts on a fresh database may run Alembic; the
  lock makes them take turns, so the first migrates and the others find the schema current.
- ``Leadership(db, SWEEPER)``: many processes run the sweeper loop, one of them sweeps (and exports
  the database gauges). The leader is whoever holds a session-level lock on a connection it keeps
  open; when its process dies, PostgreSQL ends the session and frees the lock, and the next
  process to try takes over.

The locks are session-level and live on a connection of their own, so a connection returned to the
pool never carries one. On SQLite there is nothing to take: the database has one writer at a time
(``BEGIN IMMEDIATE``, see ``server.db.engine``) and is used by a single embedded process, which
is always the leader.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from enum import IntEnum

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from server.db.engine import Database

log = logging.getLogger(__name__)


class LockKey(IntEnum):
    """The advisory lock keys of this service (one bigint namespace per database)."""

    MIGRATIONS = 0x5333_0001
    SWEEPER = 0x5333_0002


@contextmanager
def held(engine: Engine, key: LockKey) -> Iterator[None]:
    """Block until this process holds ``key``; release it when the block ends."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": int(key)})
        # The lock belongs to the session, not the transaction: end the transaction so the
        # connection does not sit "idle in transaction" while the block runs.
        conn.commit()
        try:
            yield
        finally:
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": int(key)})
                conn.commit()
            except SQLAlchemyError:
                # A broken session has released the lock with it; make sure the pool drops it.
                conn.invalidate()


class Leadership:
    """Whether this process is the one that holds ``key``; re-checked by :meth:`refresh`.

    ``is_leader`` is a cached answer (cheap, safe to read from any thread, e.g. a metrics scrape);
    :meth:`refresh` is the one call that talks to the database: it keeps the lock while the
    session lives and tries to take it when free.
    """

    def __init__(self, db: Database, key: LockKey = LockKey.SWEEPER) -> None:
        self._db = db
        self._key = int(key)
        self._conn: Connection | None = None
        self.is_leader = not db.is_postgres

    def refresh(self) -> bool:
        if not self._db.is_postgres:
            return True
        try:
            if self._conn is not None:
                # Still our session, so still our lock.
                self._conn.execute(text("SELECT 1"))
                self._conn.commit()
                return self._become(True)
            conn = self._db.engine.connect()
            try:
                won = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}).scalar())
                conn.commit()
            except BaseException:
                conn.close()
                raise
            if won:
                self._conn = conn
            else:
                conn.close()
            return self._become(won)
        except SQLAlchemyError as e:
            log.warning("leader lock %#x: %s", self._key, getattr(e, "orig", None) or e)
            self._drop()
            return self._become(False)

    def _become(self, leader: bool) -> bool:
        if leader != self.is_leader:
            log.info("leader lock %#x: %s", self._key, "taken" if leader else "not held")
        self.is_leader = leader
        return leader

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # Invalidate rather than return it: a pooled connection must not carry the lock.
            with suppress(SQLAlchemyError):
                conn.invalidate()
            with suppress(SQLAlchemyError):
                conn.close()

    def close(self) -> None:
        """Give the lock up (shutdown): another process takes over at its next refresh."""
        if self._conn is not None:
            with suppress(SQLAlchemyError):
                self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
                self._conn.commit()
        self._drop()
        self.is_leader = not self._db.is_postgres
