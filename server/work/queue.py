"""The durable work queue, kept in the database.

Work is item rows whose ``stage`` is ``analyze`` or ``execute``, plus jobs whose output set is
``pending``. A worker claims a batch with leases (one ``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP
LOCKED)`` on PostgreSQL, the single writer lock on SQLite), extends them with heartbeats (one
statement for the whole batch), and reports outcomes; finished items are settled in groups, one
transaction per group (``complete_items``). A worker that dies simply stops heartbeating: its
leases expire and the work becomes claimable again. Failures are retried with exponential backoff;
after ``max_attempts`` the item is dead-lettered: reported ``failed`` and refunded. Every status
change goes through ``server.service.item_state``.

Lock order, everywhere: job rows, then item rows, then user rows; where a transaction locks several
of one kind it locks them in one statement in key order (jobs and users by id, items by job and
index), so two settling transactions cannot deadlock. Claims take only item (or job) rows with
``SKIP LOCKED`` (never waiting) and the claiming users' ``queue_turns`` rows (in user id order),
which nothing else locks; anything that finishes an item does so in a new transaction that starts
at the job.

Fairness: claims are served round robin between users. Each claim stamps the served users' turns;
a claim takes the oldest available items of the user served longest ago (or never), up to the
batch size, spilling into the next user's when that one has fewer, so one user's 100 photos do not
make another user's single photo wait more than one batch, and concurrent workers spread over
users and jobs rather than queueing on one job's rows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import select, tuple_, update
from sqlalchemy.orm import Session

from server.clock import utcnow
from server.config.sections import QueueConfig
from server.db.engine import Database
from server.db.tables import JobItemRow, JobRow
from server.item_records import StoredInstance
from server.service import item_state
from server.service.item_state import ItemStage
from server.service.job_state import OPEN, TERMINAL
from server.service.locking import lock_users
from server.service.settle import (
    FINISHED_ITEM_STATES,
    ItemOutputs,
    complete_package,
    end_analysis_if_idle,
    finish_item,
    lock_job,
)
from server.wire_enums import ItemStatus, JobStatus
from server.work import claim_order

log = logging.getLogger(__name__)

Stage = Literal["analyze", "execute", "package"]
OPEN_JOB_STATES = OPEN
WAKE_FALLBACK_S = 5.0
"""Idle workers claim at least this often without a notification (ended backoffs, expired leases)."""
WAKE_FALLBACK_SQLITE_S = 1.0
"""SQLite has no cross-process notification: worker processes beside the server poll a local file."""


@dataclass(frozen=True)
class Claim:
    stage: Stage
    job_id: str
    idx: int
    """The item's index; -1 for a package claim."""
    attempt: int
    owner: str


class WorkQueue:
    def __init__(self, db: Database, config: QueueConfig) -> None:
        self._db = db
        self._lease = timedelta(seconds=config.lease_s)
        self._max_attempts = config.max_attempts
        self._backoff_s = config.retry_backoff_s
        self._listeners: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
        self.fallback_s = WAKE_FALLBACK_S if db.is_postgres else WAKE_FALLBACK_SQLITE_S
        """How long an idle worker waits for a wake-up before it claims anyway."""

    # -- claiming -------------------------------------------------------------------------------
    def claim(self, owner: str) -> Claim | None:
        """The next piece of work for ``owner``, leased to it; None when there is none."""
        claims = self.claim_batch(owner, 1)
        return claims[0] if claims else None

    def claim_batch(self, owner: str, n: int) -> list[Claim]:
        """Up to ``n`` pieces of work leased to ``owner``, spread round robin over users; empty
        when there is none. A set to package is handed out alone: it is what ends a job."""
        for _ in range(8):  # a few dead-letters may have to be cleared before real work shows up
            with self._db.write() as s:
                # Packaging first: it is what ends a job (releasing its slot, settling its credits),
                # and behind a steady stream of items it would otherwise wait for the queue to drain.
                job = self._next_package(s)
                if job is not None:
                    return [self._lease_package(job, owner)]
                leased = self._lease_items(s, owner, n)
            if not leased:
                return []
            claims: list[Claim] = []
            for claim, exhausted in leased:
                if exhausted:
                    self._dead_letter(claim, reason=f"gave up after {self._max_attempts} attempts (worker lost)")
                else:
                    claims.append(claim)
            if claims:
                return claims
        return []

    def _lease_items(self, s: Session, owner: str, n: int) -> list[tuple[Claim, bool]]:
        """Lease up to ``n`` claimable items in one statement and stamp their users' turns in a
        second. Returns each claim with whether its item had run out of attempts already."""
        now = utcnow()
        rows = claim_order.lease(s, owner, n, now=now, until=now + self._lease, lateral=self._db.is_postgres)
        if not rows:
            return []
        self._take_turns(s, [row.user_id for row in rows])
        stage_of: dict[str, Stage] = {ItemStage.EXECUTE: "execute", ItemStage.ANALYZE: "analyze"}
        return [
            (Claim(stage_of[row.stage], row.job_id, row.idx, row.attempts, owner), row.attempts > self._max_attempts)
            for row in rows
        ]

    def _take_turns(self, s: Session, users_in_serve_order: Sequence[str]) -> None:
        """Stamp the served users' turns, in the order they were served (a microsecond apart), so
        their next items wait until every other waiting user had one. One statement, rows in user
        id order (the lock order of ``queue_turns``)."""
        now = utcnow()
        stamps: dict[str, Any] = {}
        for user_id in users_in_serve_order:
            stamps.setdefault(user_id, now + timedelta(microseconds=len(stamps)))
        rows = [{"user_id": u, "served_at": stamps[u]} for u in sorted(stamps)]
        s.execute(claim_order.turn_upsert(self._db.is_postgres), rows)

    def _next_package(self, s: Session) -> JobRow | None:
        """The job whose set waits longest to be packaged, locked; None (the usual answer, so it is
        one prebuilt id lookup) when there is none."""
        job_id = s.scalar(claim_order.package_lookup(self._db.is_postgres), {claim_order.NOW.key: utcnow()})
        return None if job_id is None else s.get(JobRow, job_id)

    def _lease_package(self, job: JobRow, owner: str) -> Claim:
        job.package_attempts += 1
        job.package_lease_owner = owner
        job.package_lease_expires_at = utcnow() + self._lease
        return Claim("package", job.id, -1, job.package_attempts, owner)

    # -- waiting --------------------------------------------------------------------------------
    @property
    def generation(self) -> int:
        """Pass to :meth:`wait_for_work` the value read before the claim that came back empty."""
        return self._db.work_signal.generation

    async def wait_for_work(self, since: int, timeout_s: float) -> bool:
        """Until work may be claimable (a commit in this process, or on PostgreSQL a ``NOTIFY`` from
        any process) or ``timeout_s``; True when woken."""
        if self._db.is_postgres:
            self._ensure_listener()
        return await self._db.work_signal.wait(since, timeout_s)

    def _ensure_listener(self) -> None:
        from server.db.notify import work_ready

        loop = asyncio.get_running_loop()
        task = self._listeners.get(loop)
        if task is None or task.done():
            listener = work_ready(self._db.engine.url, self._db.work_signal)
            self._listeners[loop] = loop.create_task(listener, name="s3-work-listener")

    # -- leases ---------------------------------------------------------------------------------
    def heartbeat(self, claim: Claim) -> bool:
        """Extend the lease; False when it is lost (expired and taken, or the job was canceled)."""
        return claim in self.heartbeat_batch([claim])

    def heartbeat_batch(self, claims: Sequence[Claim]) -> set[Claim]:
        """Extend every lease of ``claims`` (one statement for the items); returns those still held."""
        alive: set[Claim] = set()
        until = utcnow() + self._lease
        with self._db.write() as s:
            for claim in claims:
                if claim.stage != "package":
                    continue
                job = s.get(JobRow, claim.job_id)
                if job is not None and job.package_lease_owner == claim.owner and job.status not in TERMINAL:
                    job.package_lease_expires_at = until
                    alive.add(claim)
            items = [c for c in claims if c.stage != "package"]
            if items:
                by_key = {(c.job_id, c.idx): c for c in items}
                # Locked in (job, index) order, the order settling locks items in: no deadlock
                # with this worker's own results being recorded at the same moment.
                held = (
                    select(JobItemRow.id)
                    .where(
                        tuple_(JobItemRow.job_id, JobItemRow.idx).in_(sorted(by_key)),
                        JobItemRow.lease_owner.in_({c.owner for c in items}),
                        JobItemRow.status.not_in(FINISHED_ITEM_STATES),
                        JobItemRow.stage != ItemStage.NONE,
                    )
                    .order_by(JobItemRow.job_id, JobItemRow.idx)
                    .with_for_update()
                )
                stmt = (
                    update(JobItemRow)
                    .where(JobItemRow.id.in_(held.scalar_subquery()))
                    .values(lease_expires_at=until)
                    .returning(JobItemRow.job_id, JobItemRow.idx, JobItemRow.lease_owner)
                )
                for job_id, idx, owner in s.execute(stmt):
                    claim = by_key[(job_id, idx)]
                    if claim.owner == owner:
                        alive.add(claim)
        return alive

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
        if not _still_owned(job, item, claim):
            return None
        return job, item

    # -- outcomes -------------------------------------------------------------------------------
    def complete_item(self, claim: Claim, outputs: ItemOutputs) -> bool:
        """Record a processed item (done, credits spent). False when the result was dropped."""
        return self.complete_items([(claim, outputs)])[0]

    def complete_items(self, results: Sequence[tuple[Claim, ItemOutputs]]) -> list[bool]:
        """Record processed items in one transaction: jobs, items and users each locked in one
        statement (in that order, each in key order), then every item settled as
        :meth:`complete_item` would. Per item: whether it was recorded (False: dropped)."""
        if not results:
            return []
        with self._db.write() as s:
            job_ids = sorted({c.job_id for c, _ in results})
            jobs = {
                j.id: j
                for j in s.scalars(select(JobRow).where(JobRow.id.in_(job_ids)).order_by(JobRow.id).with_for_update())
            }
            keys = sorted({(c.job_id, c.idx) for c, _ in results})
            item_stmt = (
                select(JobItemRow)
                .where(tuple_(JobItemRow.job_id, JobItemRow.idx).in_(keys))
                .order_by(JobItemRow.job_id, JobItemRow.idx)
                .with_for_update()
            )
            items = {(i.job_id, i.idx): i for i in s.scalars(item_stmt)}
            users = lock_users(s, {j.user_id for j in jobs.values()}) if jobs else {}
            recorded = []
            for claim, outputs in results:
                job = jobs.get(claim.job_id)
                item = items.get((claim.job_id, claim.idx))
                if job is None or item is None or not _still_owned(job, item, claim):
                    recorded.append(False)
                    continue
                finish_item(s, job, item, outputs=outputs, user=users[job.user_id])
                recorded.append(True)
            return recorded

    def complete_analysis(self, claim: Claim, instances: Sequence[StoredInstance], *, stored_bytes: int = 0) -> bool:
        """Record an analysed item: ``instances`` is every record the item now has (those of the
        concepts analysed before are kept by the pipeline), and its analysed concepts grow."""
        with self._db.write() as s:
            owned = self._owned(s, claim)
            if owned is None:
                return False
            job, item = owned
            now = utcnow()
            item_state.finish_analysis(item, instances, job.analyzed_concepts or [], now)
            job.stored_bytes += stored_bytes
            job.analysis_pass_done += 1
            job.updated_at = now
            end_analysis_if_idle(s, job)
            return True

    def fail(self, claim: Claim, error: str, *, retryable: bool) -> None:
        """A failed attempt: retried after a backoff, or dead-lettered when out of attempts."""
        with self._db.write() as s:
            if claim.stage == "package":
                self._fail_package(s, claim, error, retryable=retryable)
                return
            owned = self._owned(s, claim)
            if owned is None:
                return
            job, item = owned
            now = utcnow()
            if retryable and item.attempts < self._max_attempts:
                delay = self._backoff_s * 2 ** (item.attempts - 1)
                item_state.retry(item, error, available_at=now + timedelta(seconds=delay), now=now)
                log.warning(
                    "%s/%d attempt %d failed, retry in %.1fs: %s", job.id, item.idx, item.attempts, delay, error
                )
                return
            log.error("%s/%d dead-lettered after %d attempts: %s", job.id, item.idx, item.attempts, error)
            self._give_up(s, job, item, error)

    def _fail_package(self, s: Session, claim: Claim, error: str, *, retryable: bool) -> None:
        job = lock_job(s, claim.job_id)
        if job is None or job.package_lease_owner != claim.owner or job.status != JobStatus.RUNNING:
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

    def _dead_letter(self, claim: Claim, *, reason: str) -> None:
        """An item claimed with its attempts used up (its workers kept dying): given up, under
        the lease this claim holds, in a transaction of its own that starts at the job."""
        with self._db.write() as s:
            owned = self._owned(s, claim)
            if owned is None:
                return
            job, item = owned
            log.error("%s/%d dead-lettered: %s", claim.job_id, claim.idx, reason)
            now = utcnow()
            item_state.release(item, now)  # this claim was no attempt: the count stays at the maximum
            self._give_up(s, job, item, reason)

    @staticmethod
    def _give_up(s: Session, job: JobRow, item: JobItemRow, error: str) -> None:
        if item.stage == ItemStage.EXECUTE:
            finish_item(s, job, item, outputs=None, error=error)
            return
        item_state.fail_analysis(item, error, utcnow())
        end_analysis_if_idle(s, job)

    def complete_package(self, claim: Claim, set_key: str, *, stored_bytes: int = 0) -> bool:
        with self._db.write() as s:
            job = lock_job(s, claim.job_id)
            if job is None or job.package_lease_owner != claim.owner or job.status != JobStatus.RUNNING:
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
                    item_state.mark_work_ready(s)
                return
            owned = self._owned(s, claim)
            if owned is None:
                return
            _, item = owned
            item_state.release(item, utcnow())


def _still_owned(job: JobRow, item: JobItemRow, claim: Claim) -> bool:
    if not item_state.holds_lease(item, claim.owner) or job.status in TERMINAL:
        log.info("dropping the result of %s/%d: the lease is gone or the job ended", claim.job_id, claim.idx)
        return False
    return True


__all__ = ["Claim", "ItemStatus", "Stage", "WorkQueue"]
