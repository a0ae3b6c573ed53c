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
from server.db.work_signal import WorkSignal

log = logging.getLogger(__name__)

JOB_CHANNEL = "s3_job_changes"
WORK_CHANNEL = "s3_work"
"""Work became claimable (``server.db.work_signal``); no payload."""
WORK_READY = "s3_work_ready"
"""``Session.info`` key set by a transaction that made work claimable."""
WORK_SIGNAL = "s3_work_signal"
"""``Session.info`` key: the database's in-process :class:`WorkSignal`, fired on commit."""

# Columns whose change is bookkeeping of the work queue, not progress anyone watches.
_LEASE_ONLY = frozenset({"lease_owner", "lease_expires_at", "package_lease_owner", "package_lease_expires_at"})

_NOTIFY = text("SELECT pg_notify(:channel, job_id) FROM unnest(CAST(:job_ids AS text[])) AS job_id")

RECONNECT_DELAY_S = (0.5, 1.0, 2.0, 5.0)


def _progress_changed(obj: Any) -> bool:
    # The attributes set since the last flush (``committed_state`` keeps their loaded values),
    # not every attribute's history: a settling batch flushes dozens of rows.
    return not _LEASE_ONLY.issuperset(inspect(obj).committed_state)


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


class WorkSession(Session):
    """A session that wakes this process's idle workers when its commit made work claimable."""


@event.listens_for(WorkSession, "after_commit")
def _wake_workers(session: Session) -> None:
    if session.info.pop(WORK_READY, False):
        signal = session.info.get(WORK_SIGNAL)
        if signal is not None:
            signal.fire()


class NotifyingSession(WorkSession):
    """A session that notifies listeners of the jobs its flushes changed, and the worker processes
    of work it made claimable (PostgreSQL only)."""


@event.listens_for(NotifyingSession, "before_commit")
def _notify_work_ready(session: Session) -> None:
    # Inside the transaction: the notification is delivered exactly when the work is committed.
    if session.info.get(WORK_READY):
        session.connection().execute(text("SELECT pg_notify(:channel, '')"), {"channel": WORK_CHANNEL})


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
    async for payload in _listen(url, JOB_CHANNEL):
        yield payload


async def work_ready(url: URL, signal: WorkSignal) -> None:
    """Fire ``signal`` on every ``s3_work`` notification, forever (and on every reconnection: work
    may have been queued while nobody listened)."""
    async for _ in _listen(url, WORK_CHANNEL):
        signal.fire()


async def _listen(url: URL, channel: str) -> AsyncIterator[str | None]:
    conninfo = _conninfo(url)
    failures = 0
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        except psycopg.Error as e:
            delay = RECONNECT_DELAY_S[min(failures, len(RECONNECT_DELAY_S) - 1)]
            failures += 1
            log.warning("cannot listen on %s (%s); retrying in %.1fs", channel, e, delay)
            await asyncio.sleep(delay)
            continue
        try:
            async with conn:
                await conn.execute(f"LISTEN {channel}")
                failures = 0
                yield None
                async for notice in conn.notifies():
                    yield notice.payload
        except psycopg.Error as e:
            log.warning("listening on %s stopped (%s); reconnecting", channel, e)
            await asyncio.sleep(RECONNECT_DELAY_S[0])
