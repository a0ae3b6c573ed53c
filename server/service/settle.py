"""Finishing items and jobs: money and states move together, inside the caller's transaction.

Used by the in-process workers, by remote-worker callbacks, by cancel and by the sweeper, so an
item is finished the same way whoever finishes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.clock import utcnow
from server.db.tables import JobItemRow, JobRow, UserRow
from server.item_records import StoredInstance, StoredRendition
from server.service import item_state, job_state, ledger, webhooks
from server.service.item_state import ItemStage
from server.service.locking import lock_user
from server.wire_enums import JobStatus

FINISHED_ITEM_STATES = item_state.FINISHED


class OutcomeSink(Protocol):
    """Where a worker records a claim's outcome; each outcome type calls its own method."""

    async def items(self, outputs: ItemOutputs) -> None: ...

    async def analysis(self, outputs: AnalysisOutputs) -> None: ...

    async def package(self, outputs: PackageOutputs) -> None: ...


@dataclass(frozen=True)
class ItemOutputs:
    """What a processed item produced (object keys, not bytes)."""

    output_key: str
    preview_key: str | None = None
    renditions: Sequence[StoredRendition] = ()
    instances: Sequence[StoredInstance] = ()
    protect_check: Mapping[str, Any] = field(default_factory=dict)
    width: int | None = None
    height: int | None = None
    stored_bytes: int = 0
    """Bytes written for this item (counted against the user's storage quota)."""
    stage: ClassVar[str] = "execute"
    """The claim stage this is the outcome of."""

    async def record(self, sink: OutcomeSink) -> None:
        await sink.items(self)


@dataclass(frozen=True)
class AnalysisOutputs:
    """What an analysis stored: every instance record of the item (earlier concepts kept)."""

    instances: Sequence[StoredInstance]
    stored_bytes: int = 0
    stage: ClassVar[str] = "analyze"

    async def record(self, sink: OutcomeSink) -> None:
        await sink.analysis(self)


@dataclass(frozen=True)
class PackageOutputs:
    set_key: str
    stored_bytes: int = 0
    stage: ClassVar[str] = "package"

    async def record(self, sink: OutcomeSink) -> None:
        await sink.package(self)


Outcome = ItemOutputs | AnalysisOutputs | PackageOutputs
"""What running a claim produces; ``outcome.record(sink)`` records it where it belongs."""


def lock_job(session: Session, job_id: str) -> JobRow | None:
    return session.scalars(select(JobRow).where(JobRow.id == job_id).with_for_update()).one_or_none()


def finish_item(
    session: Session,
    job: JobRow,
    item: JobItemRow,
    *,
    outputs: ItemOutputs | None,
    error: str | None = None,
    user: UserRow | None = None,
) -> None:
    """Record an item as done (``outputs``) or failed (``error``) and settle what follows.

    The caller holds the job row lock and has checked the item is not finished yet; ``user`` is the
    job's user row when the caller has locked it already (a batch settles many items per lock).
    """
    user = user if user is not None else lock_user(session, job.user_id)
    now = utcnow()
    if outputs is not None:
        item_state.finish_done(item, outputs.instances, now)
        item.output_key = outputs.output_key
        item.preview_key = outputs.preview_key
        item.renditions = list(outputs.renditions)
        item.protect_check = dict(outputs.protect_check) or None
        item.width = outputs.width or item.width
        item.height = outputs.height or item.height
        job.stored_bytes += outputs.stored_bytes
        ledger.spend_item(session, user, job, item.idx, requeues=item.requeues)
        job.done_items += 1
    else:
        item_state.finish_failed(item, error or "processing failed", now)
        ledger.refund_item(session, user, job, item.idx, requeues=item.requeues)
        job.failed_items += 1
    webhooks.item_finished(session, job, item.idx, item.status, item.error)
    if job.status == JobStatus.QUEUED:
        job_state.move(job, JobStatus.RUNNING)  # the contract's queued -> running on the first item result
    job.updated_at = now
    settle_job(session, job)


def settle_job(session: Session, job: JobRow) -> None:
    """Once every item is finished: failed when none is done, else package the output set.

    The job becomes ``done`` when its set is packaged (``complete_package``), so a client that sees
    ``done`` finds the set, or, if it could never be made, the job's error saying why.
    """
    if job.status != JobStatus.RUNNING or job.done_items + job.failed_items < job.total_items:
        return
    if job.done_items == 0:
        job_state.move(job, JobStatus.FAILED)
    elif job.package_state == "none":
        job.package_state = "pending"
        job.updated_at = utcnow()
        item_state.mark_work_ready(session)


def complete_package(job: JobRow, set_key: str | None, *, error: str | None = None) -> None:
    """The job is done: with its set, or (``set_key`` None) with the reason the set could not be made."""
    job.set_key = set_key
    job.error = error
    job.package_state = "done" if set_key else "failed"
    job.package_lease_owner = None
    job.package_lease_expires_at = None
    job_state.move(job, JobStatus.DONE)


def cancel_open_items(session: Session, job: JobRow, reason: str) -> int:
    """Cancel every unfinished item of the job and refund it. Returns how many were canceled."""
    items = list(
        session.scalars(
            select(JobItemRow).where(JobItemRow.job_id == job.id).order_by(JobItemRow.idx).with_for_update()
        )
    )
    user = lock_user(session, job.user_id)  # after the items: the lock order is job, items, user
    now = utcnow()
    canceled = 0
    for item in items:
        if item.status in FINISHED_ITEM_STATES:
            continue
        item_state.cancel(item, reason, now)
        ledger.refund_item(session, user, job, item.idx, requeues=item.requeues)
        canceled += 1
    # An analysis under way ends with the job: what it analysed is paid, the rest refunded.
    ledger.settle_analysis(session, user, job)
    return canceled


def end_analysis_if_idle(session: Session, job: JobRow) -> None:
    """Settle the job's analysis once no item of it is still waiting for one (caller holds the job
    and item locks)."""
    if job.analysis_credits_reserved == 0:
        return
    pending = session.scalar(
        select(JobItemRow.id).where(JobItemRow.job_id == job.id, JobItemRow.stage == ItemStage.ANALYZE).limit(1)
    )
    if pending is None:
        ledger.settle_analysis(session, lock_user(session, job.user_id), job)
