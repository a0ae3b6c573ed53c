"""The job state machine (seed 004): the only place job statuses change.

    created -> uploaded -> queued -> running -> done | failed
    any non-terminal -> canceled

Any other transition is ``INVALID_STATE``.
"""

from __future__ import annotations

from types import MappingProxyType

from sqlalchemy.orm import object_session

from server.clock import utcnow
from server.db.tables import JobRow
from server.errors import InvalidState
from server.service import webhooks
from server.wire_enums import JobStatus

J = JobStatus
TERMINAL: frozenset[str] = frozenset({J.DONE, J.FAILED, J.CANCELED})
ACTIVE: tuple[str, ...] = tuple(s for s in J if s not in TERMINAL)
"""Counted against the plan's concurrency."""
OPEN: tuple[str, ...] = (J.UPLOADED, J.QUEUED, J.RUNNING)
"""Whose queued items may be claimed."""

TRANSITIONS: MappingProxyType[str, frozenset[str]] = MappingProxyType(
    {
        J.CREATED: frozenset({J.UPLOADED, J.CANCELED}),
        J.UPLOADED: frozenset({J.QUEUED, J.CANCELED}),
        J.QUEUED: frozenset({J.RUNNING, J.CANCELED}),
        J.RUNNING: frozenset({J.DONE, J.FAILED, J.CANCELED}),
        J.DONE: frozenset(),
        J.FAILED: frozenset(),
        J.CANCELED: frozenset(),
    }
)


def require(job: JobRow, *allowed: str, action: str) -> None:
    """Raise ``InvalidState`` unless the job is in one of ``allowed``."""
    if job.status not in allowed:
        raise InvalidState(f"cannot {action} a job that is {job.status} (needs {' or '.join(allowed)})")


def move(job: JobRow, to: str) -> None:
    if to not in TRANSITIONS[job.status]:
        raise InvalidState(f"a job cannot go from {job.status} to {to}")
    now = utcnow()
    job.status = to
    job.updated_at = now
    if to in TERMINAL:
        job.finished_at = now
        # Every status change happens here, inside the caller's transaction: the job's webhook
        # event joins that transaction (the outbox), so it exists exactly when the change does.
        session = object_session(job)
        if session is not None:
            webhooks.job_ended(session, job)
