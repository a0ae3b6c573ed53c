"""Periodic clean-up: jobs abandoned in ``created`` past their upload deadline are canceled and
refunded; idempotency keys and refresh tokens past their time are deleted. (Expired item leases need
no sweep: the queue's claim query takes them back.)

Every process may run the sweeper loop; one per database sweeps: the holder of the sweeper lock
(``server.db.advisory.Leadership``), so hundreds of worker processes do not compete for the same rows.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from server.clock import utcnow
from server.db.advisory import Leadership
from server.db.engine import Database
from server.db.tables import JobRow
from server.service import job_state
from server.service.idempotency import sweep_idempotency_keys
from server.service.sessions import sweep_refresh_tokens
from server.service.settle import cancel_open_items, lock_job

log = logging.getLogger(__name__)


def expire_abandoned_uploads(db: Database, *, limit: int = 100) -> int:
    """Cancel and refund up to ``limit`` jobs whose upload deadline has passed. Returns the count."""
    with db.read() as s:
        stmt = (
            select(JobRow.id)
            .where(JobRow.status == "created", JobRow.upload_deadline_at < utcnow())
            .order_by(JobRow.upload_deadline_at)
            .limit(limit)
        )
        job_ids = list(s.scalars(stmt))
    expired = 0
    for job_id in job_ids:
        with db.write() as s:
            job = lock_job(s, job_id)
            # Re-check under the lock: the upload may have been confirmed meanwhile.
            if job is None or job.status != "created" or job.upload_deadline_at >= utcnow():
                continue
            cancel_open_items(s, job, "the upload deadline passed")
            job_state.move(job, "canceled")
            expired += 1
            log.info("job %s canceled: upload deadline passed, %d credits refunded", job.id, job.total_items)
    return expired


def delete_expired_records(db: Database) -> int:
    """Idempotency keys kept past their time and expired refresh tokens; returns how many rows."""
    return sweep_idempotency_keys(db) + sweep_refresh_tokens(db)


def sweep_if_leader(db: Database, leadership: Leadership) -> bool:
    """One sweep round, run only by the leader; True when this process swept."""
    if not leadership.refresh():
        return False
    expire_abandoned_uploads(db)
    delete_expired_records(db)
    return True
