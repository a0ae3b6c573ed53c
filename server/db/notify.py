"""PostgreSQL change notifications for watched jobs: the sending side and the listening side.

Sending: every flush that changes a job row or one of its item rows sends
``NOTIFY s3_job_changes, '<job id>'`` in the same transaction, so the notification goes out exactly
when the change is committed, and never for a change that was rolled back. It is hooked on the
session class the database hands out (``NotifyingSession``), so every writer (API, worker, sweeper,
operator tools) notifies without knowing it. Lease-only updates (heartbeats) are not progress and
send nothing.

Listening: one connection per process ``LISTEN``s and yields the job ids; after each (re)connection
it yields ``None`` first, meaning "anything may have changed while nobody listened".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from server.db.tables import JobItemRow, JobRow

log = logging.getLogger(__name__)

JOB_CHANNEL = "s3_job_changes"

# Columns whose change is bookkeeping of the work queue, not progress anyone watches.
_LEASE_ONLY = frozenset({"lease_owner", "lease_expires_at", "package_lease_owner", "package_lease_expires_at"})

_NOTIFY = text("SELECT pg_notify(:channel, job_id) FROM unnest(CAST(:job_ids AS text[])) AS job_id")

RECONNECT_DELAY_S = (0.5, 1.0, 2.0, 5.0)


def _progress_changed(obj: Any) -> bool:
    state = inspect(obj)
    return any(attr.history.has_changes() for attr in state.attrs if attr.key not in _LEASE_ONLY)


def _changed_job_ids(session: Session) -> set[str]:
    ids: set[str] = set()
    for obj in session.new | session.deleted:
        if isinstance(obj, JobRow):
            ids.add(obj.id)
        elif isinstance(obj, JobItemRow):
            ids.add(obj.job_id)
    for obj in session.dirty:
        if isinstance(obj, JobRow | JobItemRow) and _progress_changed(obj):
            ids.add(obj.id if isinstance(obj, JobRow) else obj.job_id)
    return ids


class NotifyingSession(Session):
    """A session that notifies listeners of the jobs its flushes changed (PostgreSQL only)."""


@event.listens_for(NotifyingSession, "after_flush")
def _notify_job_changes(session: Session, _flush_context: Any) -> None:
    # after_flush still sees the pre-flush new/dirty/deleted sets, and runs inside the transaction.
    job_ids = _changed_job_ids(session)
    if job_ids:
        session.connection().execute(_NOTIFY, {"channel": JOB_CHANNEL, "job_ids": sorted(job_ids)})


def _conninfo(url: URL) -> str:
    """The libpq form of a ``postgresql+psycopg://`` SQLAlchemy URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def job_changes(url: URL) -> AsyncIterator[str | None]:
    """Job ids as their changes commit, forever; reconnects (yielding ``None``) when the link drops."""
    conninfo = _conninfo(url)
    failures = 0
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        except psycopg.Error as e:
            delay = RECONNECT_DELAY_S[min(failures, len(RECONNECT_DELAY_S) - 1)]
            failures += 1
            log.warning("cannot listen for job changes (%s); retrying in %.1fs", e, delay)
            await asyncio.sleep(delay)
            continue
        try:
            async with conn:
                await conn.execute(f"LISTEN {JOB_CHANNEL}")
                failures = 0
                yield None
                async for notice in conn.notifies():
                    yield notice.payload
        except psycopg.Error as e:
            log.warning("listening for job changes stopped (%s); reconnecting", e)
            await asyncio.sleep(RECONNECT_DELAY_S[0])
