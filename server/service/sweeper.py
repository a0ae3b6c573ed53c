"""Periodic clean-up.

- Jobs abandoned in ``created`` past their upload deadline are canceled and refunded.
- Jobs whose retention is over are purged: every object under their folders is deleted and the job
  stops counting against its user's quotas. Canceled (and expired) jobs are kept
  ``canceled_retention_s``, and never purged before their upload URLs have expired, so no URL can
  write an object again after the purge; done and failed jobs are kept ``finished_retention_s``.
- Idempotency keys and refresh tokens past their time are deleted.

(Expired item leases need no sweep: the queue's claim query takes them back.)

Every process may run the sweeper loop; one per database sweeps: the holder of the sweeper lock
(``server.db.advisory.Leadership``), so hundreds of worker processes do not compete for the same rows.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import ColumnElement, and_, or_, select

from server.clock import utcnow
from server.config import Settings
from server.db.advisory import Leadership
from server.db.engine import Database
from server.db.tables import JobRow
from server.errors import StorageUnavailable
from server.service import job_state
from server.service.idempotency import sweep_idempotency_keys
from server.service.sessions import sweep_refresh_tokens
from server.service.settle import cancel_open_items, lock_job
from server.storage import keys
from server.storage.port import ObjectStore
from server.wire_enums import JobStatus

log = logging.getLogger(__name__)


def expire_abandoned_uploads(db: Database, *, limit: int = 100) -> int:
    """Cancel and refund up to ``limit`` jobs whose upload deadline has passed. Returns the count."""
    with db.read() as s:
        stmt = (
            select(JobRow.id)
            .where(JobRow.status == JobStatus.CREATED, JobRow.upload_deadline_at < utcnow())
            .order_by(JobRow.upload_deadline_at)
            .limit(limit)
        )
        job_ids = list(s.scalars(stmt))
    expired = 0
    for job_id in job_ids:
        with db.write() as s:
            job = lock_job(s, job_id)
            # Re-check under the lock: the upload may have been confirmed meanwhile.
            if job is None or job.status != JobStatus.CREATED or job.upload_deadline_at >= utcnow():
                continue
            cancel_open_items(s, job, "the upload deadline passed")
            job_state.move(job, JobStatus.CANCELED)
            expired += 1
            log.info("job %s canceled: upload deadline passed, %d credits refunded", job.id, job.total_items)
    return expired


def delete_expired_records(db: Database) -> int:
    """Idempotency keys kept past their time and expired refresh tokens; returns how many rows."""
    return sweep_idempotency_keys(db) + sweep_refresh_tokens(db)


def _purgeable(settings: Settings) -> ColumnElement[bool]:
    now = utcnow()
    url_ttl_s = min(settings.storage.upload_url_ttl_s, settings.jobs.upload_deadline_s)
    canceled = and_(
        JobRow.status == JobStatus.CANCELED,
        JobRow.finished_at < now - timedelta(seconds=settings.sweeper.canceled_retention_s),
        JobRow.created_at < now - timedelta(seconds=url_ttl_s),
    )
    finished = and_(
        JobRow.status.in_((JobStatus.DONE, JobStatus.FAILED)),
        JobRow.finished_at < now - timedelta(seconds=settings.sweeper.finished_retention_s),
    )
    return and_(JobRow.purged_at.is_(None), or_(canceled, finished))


def purge_expired_jobs(db: Database, store: ObjectStore, settings: Settings, *, limit: int = 100) -> int:
    """Delete the objects of up to ``limit`` jobs past their retention; returns how many were purged.

    Objects go first, then the row is marked: a crash in between leaves the job to the next sweep,
    which deletes (nothing, or what is left) again. A store that does not answer is retried then.
    """
    with db.read() as s:
        stmt = select(JobRow.id, JobRow.user_id).where(_purgeable(settings)).order_by(JobRow.finished_at).limit(limit)
        jobs = [(row[0], row[1]) for row in s.execute(stmt)]
    purged = 0
    for job_id, user_id in jobs:
        try:
            removed = sum(store.delete_prefix(prefix) for prefix in keys.job_prefixes(user_id, job_id))
        except StorageUnavailable as e:
            log.warning("job %s not purged yet: %s", job_id, e)
            continue
        with db.write() as s:
            job = lock_job(s, job_id)
            if job is None or job.purged_at is not None:
                continue
            job.purged_at = utcnow()
            job.stored_bytes = 0
        purged += 1
        log.info("job %s purged: %d objects deleted", job_id, removed)
    return purged


def sweep_if_leader(db: Database, store: ObjectStore, settings: Settings, leadership: Leadership) -> bool:
    """One sweep round, run only by the leader; True when this process swept."""
    if not leadership.refresh():
        return False
    expire_abandoned_uploads(db)
    purge_expired_jobs(db, store, settings)
    delete_expired_records(db)
    return True
