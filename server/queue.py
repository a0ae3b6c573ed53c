"""The durable work queue, kept in the database.

Work is item rows whose ``stage`` is ``analyze`` or ``execute``, plus jobs whose output set is
``pending``. A worker claims one with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the single
writer lock on SQLite), extends it with heartbeats, and reports the outcome. A worker that dies
simply stops heartbeating: its lease expires and the work becomes claimable again. Failures are
retried with exponential backoff; after ``max_attempts`` the item is dead-lettered: reported
``failed`` and refunded.

Lock order, everywhere: job row, then item rows, then the user row. Claims take only the item (or
job) row, and the claiming user's ``queue_turns`` row, which nothing else locks; anything that
finishes an item does so in a new transaction that starts at the job.

Fairness: items are served round robin between users. Each claim stamps the user's turn; the next
claim takes the oldest available item of the user served longest ago (never served first), so one
user's 100 photos do not make another user's single photo wait behind them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from server.clock import utcnow
from server.config import Settings
from server.db.engine import Database
from server.db.tables import JobItemRow, JobRow, QueueTurnRow
from server.service.job_state import TERMINAL
from server.service.settle import (
    FINISHED_ITEM_STATES,
    ItemOutputs,
    complete_package,
    end_analysis_if_idle,
    finish_item,
    lock_job,
)

log = logging.getLogger(__name__)

Stage = Literal["analyze", "execute", "package"]
OPEN_JOB_STATES = ("uploaded", "queued", "running")


@dataclass(frozen=True)
class Claim:
    stage: Stage
    job_id: str
    idx: int
    """The item's index; -1 for a package claim."""
    attempt: int
    owner: str


class WorkQueue:
    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._lease = timedelta(seconds=settings.lease_s)
        self._max_attempts = settings.max_attempts
        self._backoff_s = settings.retry_backoff_s

    # -- claiming -------------------------------------------------------------------------------
    def claim(self, owner: str) -> Claim | None:
        """The next piece of work for ``owner``, leased to it; None when there is none."""
        for _ in range(8):  # a few dead-letters may have to be cleared before real work shows up
            exhausted: tuple[str, int] | None = None
            with self._db.write() as s:
                # Packaging first: it is what ends a job (releasing its slot, settling its credits),
                # and behind a steady stream of items it would otherwise wait for the queue to drain.
                job = self._next_package(s)
                if job is not None:
                    return self._lease_package(job, owner)
                found = self._next_item(s)
                if found is None:
                    return None
                item, user_id = found
                if item.attempts >= self._max_attempts:
                    exhausted = (item.job_id, item.idx)
                else:
                    self._take_turn(s, user_id)
                    return self._lease_item(s, item, owner)
            if exhausted is not None:
                self._dead_letter(*exhausted, reason=f"gave up after {self._max_attempts} attempts (worker lost)")
        return None

    def _next_item(self, s: Session) -> tuple[JobItemRow, str] | None:
        """The oldest available item of the user whose turn is oldest, with that user's id."""
        now = utcnow()
        stmt = (
            select(JobItemRow, JobRow.user_id)
            .join(JobRow, JobRow.id == JobItemRow.job_id)
            .outerjoin(QueueTurnRow, QueueTurnRow.user_id == JobRow.user_id)
            .where(
                JobItemRow.stage.in_(("analyze", "execute")),
                JobItemRow.available_at <= now,
                or_(JobItemRow.lease_expires_at.is_(None), JobItemRow.lease_expires_at < now),
                JobRow.status.in_(OPEN_JOB_STATES),
            )
            .order_by(QueueTurnRow.served_at.asc().nulls_first(), JobItemRow.available_at, JobItemRow.id)
            .limit(1)
        )
        if self._db.is_postgres:
            stmt = stmt.with_for_update(skip_locked=True, of=JobItemRow)
        row = s.execute(stmt).first()
        return None if row is None else (row[0], row[1])

    def _take_turn(self, s: Session, user_id: str) -> None:
        """Stamp the user's turn: their next item waits until every other waiting user had one."""
        insert = postgresql.insert if self._db.is_postgres else sqlite.insert
        now = utcnow()
        stmt = insert(QueueTurnRow).values(user_id=user_id, served_at=now)
        s.execute(stmt.on_conflict_do_update(index_elements=["user_id"], set_={"served_at": now}))

    def _lease_item(self, s: Session, item: JobItemRow, owner: str) -> Claim:
        now = utcnow()
        item.attempts += 1
        item.lease_owner = owner
        item.lease_expires_at = now + self._lease
        item.updated_at = now
        if item.stage == "execute":
            item.status = "running"
        stage: Stage = "execute" if item.stage == "execute" else "analyze"
        return Claim(stage, item.job_id, item.idx, item.attempts, owner)

    def _next_package(self, s: Session) -> JobRow | None:
        now = utcnow()
        stmt = (
            select(JobRow)
            .where(
                JobRow.package_state == "pending",
                JobRow.status == "running",
                or_(JobRow.package_lease_expires_at.is_(None), JobRow.package_lease_expires_at < now),
            )
            .order_by(JobRow.updated_at)
            .limit(1)
        )
        if self._db.is_postgres:
            stmt = stmt.with_for_update(skip_locked=True)
        return s.scalars(stmt).first()

    def _lease_package(self, job: JobRow, owner: str) -> Claim:
        job.package_attempts += 1
        job.package_lease_owner = owner
        job.package_lease_expires_at = utcnow() + self._lease
        return Claim("package", job.id, -1, job.package_attempts, owner)

    # -- leases ---------------------------------------------------------------------------------
    def heartbeat(self, claim: Claim) -> bool:
        """Extend the lease; False when it is lost (expired and taken, or the job was canceled)."""
        with self._db.write() as s:
            if claim.stage == "package":
                job = s.get(JobRow, claim.job_id)
                if job is None or job.package_lease_owner != claim.owner or job.status in TERMINAL:
                    return False
                job.package_lease_expires_at = utcnow() + self._lease
                return True
            item = self._item(s, claim)
            if item is None or item.lease_owner != claim.owner or item.status in FINISHED_ITEM_STATES:
                return False
            item.lease_expires_at = utcnow() + self._lease
            return True

    @staticmethod
    def _item(s: Session, claim: Claim) -> JobItemRow | None:
        stmt = select(JobItemRow).where(JobItemRow.job_id == claim.job_id, JobItemRow.idx == claim.idx)
        return s.scalars(stmt.with_for_update()).one_or_none()

    def _owned(self, s: Session, claim: Claim) -> tuple[JobRow, JobItemRow] | None:
        """Job and item, locked, if the claim still owns the item and the job is still open."""
        job = lock_job(s, claim.job_id)
        item = self._item(s, claim) if job is not None else None
        if job is None or item is None:
            return None
        if item.lease_owner != claim.owner or item.status in FINISHED_ITEM_STATES or job.status in TERMINAL:
            log.info("dropping the result of %s/%d: the lease is gone or the job ended", claim.job_id, claim.idx)
            return None
        return job, item

    # -- outcomes -------------------------------------------------------------------------------
    def complete_item(self, claim: Claim, outputs: ItemOutputs) -> bool:
        """Record a processed item (done, credits spent). False when the result was dropped."""
        with self._db.write() as s:
            owned = self._owned(s, claim)
            if owned is None:
                return False
            job, item = owned
            finish_item(s, job, item, outputs=outputs)
            return True

    def complete_analysis(self, claim: Claim, instances: Sequence[Mapping[str, Any]], *, stored_bytes: int = 0) -> bool:
        """Record an analysed item: ``instances`` is every record the item now has (those of the
        concepts analysed before are kept by the pipeline), and its analysed concepts grow."""
        with self._db.write() as s:
            owned = self._owned(s, claim)
            if owned is None:
                return False
            job, item = owned
            now = utcnow()
            item.instances = [dict(i) for i in instances]
            item.analyzed_concepts = list(
                dict.fromkeys([*(item.analyzed_concepts or []), *(job.analyzed_concepts or [])])
            )
            job.stored_bytes += stored_bytes
            job.analysis_pass_done += 1
            item.stage = "none"
            item.error = None
            item.available_at = None
            item.lease_owner = None
            item.lease_expires_at = None
            item.updated_at = now
            job.updated_at = now
            end_analysis_if_idle(s, job)
            return True

    def fail(self, claim: Claim, error: str, *, retryable: bool) -> None:
        """A failed attempt: retried after a backoff, or dead-lettered when out of attempts."""
        with self._db.write() as s:
            if claim.stage == "package":
                job = lock_job(s, claim.job_id)
                if job is None or job.package_lease_owner != claim.owner or job.status != "running":
                    return
                if not retryable:
                    # Every item's output is stored and paid for; only the zip cannot be made.
                    # The job ends done without a set rather than retrying forever.
                    log.error("job %s packaging failed for good: %s", job.id, error)
                    complete_package(job, None, error=f"packaging failed: {error}")
                    return
                # Transient (store or database outage): keep trying, backoff capped near a minute,
                # so the set appears once the dependency is back.
                job.package_lease_owner = None
                delay = min(self._backoff_s * 2 ** min(job.package_attempts - 1, 10), 60.0)
                job.package_lease_expires_at = utcnow() + timedelta(seconds=delay)
                job.error = f"packaging: {error}"
                return
            owned = self._owned(s, claim)
            if owned is None:
                return
            job, item = owned
            now = utcnow()
            if retryable and item.attempts < self._max_attempts:
                delay = self._backoff_s * 2 ** (item.attempts - 1)
                item.available_at = now + timedelta(seconds=delay)
                item.lease_owner = None
                item.lease_expires_at = None
                item.error = error
                item.updated_at = now
                if item.stage == "execute":
                    item.status = "queued"
                log.warning(
                    "%s/%d attempt %d failed, retry in %.1fs: %s", job.id, item.idx, item.attempts, delay, error
                )
                return
            log.error("%s/%d dead-lettered after %d attempts: %s", job.id, item.idx, item.attempts, error)
            self._give_up(s, job, item, error)

    def _dead_letter(self, job_id: str, idx: int, *, reason: str) -> None:
        with self._db.write() as s:
            job = lock_job(s, job_id)
            if job is None:
                return
            item = s.scalars(
                select(JobItemRow).where(JobItemRow.job_id == job_id, JobItemRow.idx == idx).with_for_update()
            ).one_or_none()
            if item is None or item.stage == "none" or item.status in FINISHED_ITEM_STATES:
                return
            now = utcnow()
            if item.lease_expires_at is not None and item.lease_expires_at >= now:
                return  # someone holds a live lease after all
            log.error("%s/%d dead-lettered: %s", job_id, idx, reason)
            self._give_up(s, job, item, reason)

    @staticmethod
    def _give_up(s: Session, job: JobRow, item: JobItemRow, error: str) -> None:
        if item.stage == "execute":
            finish_item(s, job, item, outputs=None, error=error)
            return
        # A failed analysis leaves the item usable: execute segments it again. Not paid for.
        item.stage = "none"
        item.error = f"analysis failed: {error}"
        item.available_at = None
        item.lease_owner = None
        item.lease_expires_at = None
        item.updated_at = utcnow()
        end_analysis_if_idle(s, job)

    def complete_package(self, claim: Claim, set_key: str, *, stored_bytes: int = 0) -> bool:
        with self._db.write() as s:
            job = lock_job(s, claim.job_id)
            if job is None or job.package_lease_owner != claim.owner or job.status != "running":
                return False
            job.stored_bytes += stored_bytes
            complete_package(job, set_key)
            return True

    def release(self, claim: Claim) -> None:
        """Give claimed work back untouched (shutdown): claimable at once, the attempt not counted."""
        with self._db.write() as s:
            if claim.stage == "package":
                job = lock_job(s, claim.job_id)
                if job is not None and job.package_lease_owner == claim.owner:
                    job.package_lease_owner = None
                    job.package_lease_expires_at = None
                    job.package_attempts = max(job.package_attempts - 1, 0)
                return
            owned = self._owned(s, claim)
            if owned is None:
                return
            _, item = owned
            item.lease_owner = None
            item.lease_expires_at = None
            item.attempts = max(item.attempts - 1, 0)
            item.available_at = utcnow()
            item.updated_at = utcnow()
            if item.stage == "execute":
                item.status = "queued"
