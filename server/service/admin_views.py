"""What the operator tools read: a user with their ledger, a job with its queue state, dead letters.

Plain frozen dataclasses (free of ORM and transport types) and the queries that fill them.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from server.db.tables import BillingEventRow, JobItemRow, JobRow, UserRow
from server.errors import ValidationFailed
from server.service.accounts import user_view
from server.service.job_views import job_view, load_items
from server.service.views import JobView, UserView

LOST_WORKER_PREFIX = "gave up after"
"""How ``WorkQueue`` words the error of an item given up on because its workers kept dying."""


@dataclass(frozen=True)
class BillingEventView:
    id: int
    job_id: str | None
    type: str
    amount: int
    ref: str
    created_at: datetime


@dataclass(frozen=True)
class AdminUserView:
    state: UserView
    credits_granted: int
    auth_provider: str
    created_at: datetime
    recent_events: tuple[BillingEventView, ...]
    """Newest first."""


@dataclass(frozen=True)
class ItemQueueView:
    idx: int
    stage: str
    available_at: datetime | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    requeues: int
    dead_lettered: bool


@dataclass(frozen=True)
class AdminJobView:
    job: JobView
    queue: tuple[ItemQueueView, ...]
    package_state: str
    package_attempts: int
    package_lease_owner: str | None
    error: str | None
    finished_at: datetime | None
    max_attempts: int


@dataclass(frozen=True)
class DeadLetterView:
    job_id: str
    user_id: str
    idx: int
    attempts: int
    error: str | None
    failed_at: datetime
    job_status: str


@dataclass(frozen=True)
class DeadLetterPage:
    items: list[DeadLetterView]
    next_page_token: str


def is_dead_letter(item: JobItemRow, max_attempts: int) -> bool:
    """Failed after exhausting its attempts (not, say, a photo rejected at upload)."""
    return item.status == "failed" and (
        item.attempts >= max_attempts or (item.error or "").startswith(LOST_WORKER_PREFIX)
    )


def dead_letter_clause(max_attempts: int) -> ColumnElement[bool]:
    """``is_dead_letter`` as SQL."""
    return and_(
        JobItemRow.status == "failed",
        or_(JobItemRow.attempts >= max_attempts, JobItemRow.error.like(f"{LOST_WORKER_PREFIX}%")),
    )


def admin_user_view(session: Session, row: UserRow, *, events_limit: int) -> AdminUserView:
    events = session.scalars(
        select(BillingEventRow)
        .where(BillingEventRow.user_id == row.id)
        .order_by(BillingEventRow.id.desc())
        .limit(events_limit)
    )
    return AdminUserView(
        state=user_view(session, row),
        credits_granted=row.credits_granted,
        auth_provider=row.auth_provider,
        created_at=row.created_at,
        recent_events=tuple(BillingEventView(e.id, e.job_id, e.type, e.amount, e.ref, e.created_at) for e in events),
    )


def admin_job_view(session: Session, job: JobRow, *, max_attempts: int) -> AdminJobView:
    items = load_items(session, job.id)
    return AdminJobView(
        job=job_view(job, items),
        queue=tuple(
            ItemQueueView(
                idx=i.idx,
                stage=i.stage,
                available_at=i.available_at,
                lease_owner=i.lease_owner,
                lease_expires_at=i.lease_expires_at,
                requeues=i.requeues,
                dead_lettered=is_dead_letter(i, max_attempts),
            )
            for i in items
        ),
        package_state=job.package_state,
        package_attempts=job.package_attempts,
        package_lease_owner=job.package_lease_owner,
        error=job.error,
        finished_at=job.finished_at,
        max_attempts=max_attempts,
    )


def encode_page_token(stamp: datetime, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{stamp.isoformat()}|{row_id}".encode()).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        stamp, row_id = raw.split("|", 1)
        return datetime.fromisoformat(stamp), int(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as e:
        raise ValidationFailed("page_token: is not a token this service issued", field="page_token") from e
