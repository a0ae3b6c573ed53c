"""Which items a claim takes: the queue's fairness order, as SQL.

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

from functools import lru_cache
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, DateTime, Select, bindparam, or_, select, true
from sqlalchemy.sql import func

from server.db.tables import JobItemRow, JobRow, QueueTurnRow
from server.service import item_state
from server.service.job_state import OPEN

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
