"""Which items a claim takes and how it leases them: the queue's fairness order, as SQL.

Open jobs are ranked by their users' turns: the user served longest ago (or never) first; between
users with the same turn, the one whose oldest claimable item has waited longest; a user's jobs by
their oldest claimable item. A claim takes the first job's oldest items, then the next job's, up
to the batch size, so one claim settles against few job and user rows and the next claim (any
worker's) serves the next user.

The cost of a claim grows with the open jobs, not with the items waiting in them: each open job's
oldest claimable item is one index probe (``ix_job_items_job_queue``), and on PostgreSQL each job's
items are read through a ``LATERAL`` subquery that locks (``SKIP LOCKED``) only the rows it hands
on, in turn order, until the batch is full. SQLite (one writer, the embedded mode) sorts the open
jobs' claimable items in one query with the same order.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import BindParameter, ColumnElement, DateTime, Select, bindparam, case, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql import func

from server.db.tables import JobItemRow, JobRow, QueueTurnRow
from server.service import item_state
from server.service.item_state import ItemStage
from server.service.job_state import OPEN
from server.wire_enums import JobStatus

NOW: BindParameter[Any] = bindparam("claim_now", type_=DateTime(timezone=True))
"""The statements below are built once and run with the claim's clock as this parameter."""


def claimable(now: Any = NOW) -> tuple[ColumnElement[bool], ...]:
    """An item a worker may lease now: on the queue, its backoff over, no live lease."""
    return (
        JobItemRow.stage.in_(item_state.CLAIMABLE_STAGES),
        JobItemRow.available_at <= now,
        or_(JobItemRow.lease_expires_at.is_(None), JobItemRow.lease_expires_at < now),
    )


def _turns() -> Any:
    """One row per open job with claimable work: job, user, the user's turn, ordered as served."""
    oldest_waiting = (
        select(JobItemRow.available_at)
        .where(JobItemRow.job_id == JobRow.id, *claimable())
        .order_by(JobItemRow.available_at)
        .limit(1)
        .correlate(JobRow)
        .scalar_subquery()
    )
    open_jobs = (
        select(
            JobRow.id.label("job_id"),
            JobRow.user_id.label("user_id"),
            QueueTurnRow.served_at.label("served_at"),
            oldest_waiting.label("waiting_since"),
        )
        .outerjoin(QueueTurnRow, QueueTurnRow.user_id == JobRow.user_id)
        .where(JobRow.status.in_(OPEN))
        # OFFSET 0 keeps PostgreSQL from inlining this level, which would probe each job's oldest
        # item three times (filter, window, order) instead of once.
        .offset(0)
        .subquery("open_jobs")
    )
    user_rank = func.min(open_jobs.c.waiting_since).over(partition_by=open_jobs.c.user_id)
    ranked = select(
        open_jobs.c.job_id,
        open_jobs.c.user_id,
        open_jobs.c.served_at,
        open_jobs.c.waiting_since,
        user_rank.label("user_rank"),
    ).where(open_jobs.c.waiting_since.is_not(None))
    return ranked.order_by(*_turn_order(ranked.selected_columns)).subquery("turns")


def _turn_order(c: Any) -> list[Any]:
    return [c.served_at.asc().nulls_first(), c.user_rank, c.user_id, c.waiting_since, c.job_id]


@lru_cache(maxsize=16)
def pick(n: int, *, lateral: bool) -> Select[Any]:
    """Up to ``n`` claimable items at ``claim_now`` in claim order, with what the claim records of
    their turn: ``id, user_id, user_rank, served_at``. ``lateral`` (PostgreSQL): the items are
    locked with ``FOR UPDATE SKIP LOCKED`` as they are read, so rows another claimer holds are
    passed over. Built once per batch size (building it costs more than running it)."""
    turns = _turns()
    columns = (turns.c.user_id, turns.c.user_rank, turns.c.served_at)
    if lateral:
        items = (
            select(JobItemRow.id)
            .where(JobItemRow.job_id == turns.c.job_id, *claimable())
            .order_by(JobItemRow.available_at, JobItemRow.id)
            .limit(n)
            .with_for_update(skip_locked=True)
            .lateral("items")
        )
        # No ORDER BY on this level: the rows come out of the nested loop in the turns' order,
        # and stopping at ``n`` keeps the later jobs' items unread and unlocked.
        return select(items.c.id, *columns).select_from(turns).join(items, true()).limit(n)
    return (
        select(JobItemRow.id, *columns)
        .join(turns, turns.c.job_id == JobItemRow.job_id)
        .where(*claimable())
        .order_by(*_turn_order(turns.c), JobItemRow.available_at, JobItemRow.id)
        .limit(n)
    )


_LEASE_VALUES = item_state.lease_values(ItemStage.EXECUTE, bindparam("lease_owner"), bindparam("lease_until"), NOW)
_LEASE = update(JobItemRow).values(
    attempts=JobItemRow.attempts + 1,
    lease_owner=_LEASE_VALUES["lease_owner"],
    lease_expires_at=_LEASE_VALUES["lease_expires_at"],
    updated_at=_LEASE_VALUES["updated_at"],
    status=case((JobItemRow.stage == ItemStage.EXECUTE, _LEASE_VALUES["status"]), else_=JobItemRow.status),
)
"""A claim's lease on the rows it picked (``lease_owner``, ``lease_until`` and ``claim_now`` bound)."""
_LEASED = (JobItemRow.job_id, JobItemRow.idx, JobItemRow.attempts, JobItemRow.stage)


@lru_cache(maxsize=16)
def _lease_statement(n: int) -> Any:
    """PostgreSQL's one-statement claim of up to ``n`` items, built once per batch size."""
    chosen = pick(n, lateral=True).cte("picked")
    return _LEASE.where(JobItemRow.id == chosen.c.id).returning(
        *_LEASED, chosen.c.user_id, chosen.c.user_rank, chosen.c.served_at, chosen.c.id
    )


class Leased(NamedTuple):
    """A leased item, with the turn it was served in."""

    job_id: str
    idx: int
    attempts: int
    stage: str
    user_id: str
    user_rank: datetime
    """When the user's oldest claimable item became available."""
    served_at: datetime | None
    id: int

    def serve_order(self) -> tuple[Any, ...]:
        """The order the claim picked its rows in (``RETURNING`` keeps none): by user turn, then
        (ids grow with ``available_at`` within a job) by item."""
        return (self.served_at is not None, self.served_at or self.user_rank, self.user_rank, self.user_id, self.id)


def lease(s: Session, owner: str, n: int, *, now: datetime, until: datetime, lateral: bool) -> list[Leased]:
    """Lease up to ``n`` items to ``owner`` until ``until``, in serve order. ``lateral``
    (PostgreSQL): one statement picks (skipping rows other claimers hold), leases and returns."""
    params = {NOW.key: now, "lease_owner": owner, "lease_until": until}
    if lateral:
        rows = [Leased(*row) for row in s.execute(_lease_statement(n), params)]
    else:
        # SQLite's RETURNING cannot name the FROM table; the write lock is held since BEGIN
        # IMMEDIATE, so picking and leasing in two statements cannot interleave with a claimer.
        order = {row.id: row for row in s.execute(pick(n, lateral=False), params)}
        if not order:
            return []
        stmt = _LEASE.where(JobItemRow.id.in_(list(order))).returning(*_LEASED, JobItemRow.id)
        rows = []
        for job_id, idx, attempts, stage, item_id in s.execute(stmt, params):
            p = order[item_id]
            rows.append(Leased(job_id, idx, attempts, stage, p.user_id, p.user_rank, p.served_at, item_id))
    rows.sort(key=Leased.serve_order)
    return rows


@lru_cache(maxsize=2)
def turn_upsert(postgres: bool) -> Any:
    """One user's turn stamped (run once per served user, in user id order)."""
    insert = postgresql.insert if postgres else sqlite.insert
    stmt = insert(QueueTurnRow).values(user_id=bindparam("user_id"), served_at=bindparam("served_at"))
    return stmt.on_conflict_do_update(index_elements=["user_id"], set_={"served_at": stmt.excluded.served_at})


@lru_cache(maxsize=2)
def package_lookup(postgres: bool) -> Any:
    """The id of the job whose set waits longest to be packaged (``claim_now`` bound)."""
    stmt = (
        select(JobRow.id)
        .where(
            JobRow.package_state == "pending",
            JobRow.status == JobStatus.RUNNING,
            or_(JobRow.package_lease_expires_at.is_(None), JobRow.package_lease_expires_at < NOW),
        )
        .order_by(JobRow.updated_at)
        .limit(1)
    )
    # PostgreSQL: locked here, skipping a job another claimer is leasing (SQLite holds the one write lock).
    return stmt.with_for_update(skip_locked=True) if postgres else stmt
