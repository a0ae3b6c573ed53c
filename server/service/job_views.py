"""Reading jobs: the user's job list (newest first, keyset-paginated) and one job with its items."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from server.db.engine import Database
from server.db.tables import JobItemRow, JobRow
from server.errors import ValidationFailed
from server.service.locking import get_user
from server.service.views import JobItemView, JobPage, JobView
from server.wire_enums import ItemStatus, JobStatus

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100

ProgressKey = tuple[str, int, int, datetime]
"""What a progress stream compares to decide whether a job changed."""


class _HasProgress(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def done_items(self) -> int: ...
    @property
    def failed_items(self) -> int: ...
    @property
    def updated_at(self) -> datetime: ...


def progress_key(job: _HasProgress) -> ProgressKey:
    """The same key from a job row, a row of :func:`progress_keys` and a :class:`JobView`."""
    return (job.status, job.done_items, job.failed_items, job.updated_at)


def progress_keys(db: Database, job_ids: Sequence[str]) -> Mapping[str, ProgressKey]:
    """The progress key of each job that exists, in one query (no ownership check: ids come from
    streams whose owner was checked when they opened)."""
    if not job_ids:
        return {}
    stmt = select(JobRow.id, JobRow.status, JobRow.done_items, JobRow.failed_items, JobRow.updated_at).where(
        JobRow.id.in_(job_ids)
    )
    with db.read() as s:
        return {row.id: progress_key(row) for row in s.execute(stmt)}


def analysis_state(row: JobItemRow) -> str:
    """Distinguishes 'no instances yet' from 'analysed, none found' for the Instances stage; stored
    by ``server.service.item_state``."""
    return row.analysis_state


def serves_objects(job: JobRow) -> bool:
    """Whether the job's objects are handed out: a canceled job's are not (they wait for the
    sweeper's purge), a purged job's no longer exist."""
    return job.status != JobStatus.CANCELED and job.purged_at is None


def item_view(row: JobItemRow, *, served: bool = True) -> JobItemView:
    return JobItemView(
        idx=row.idx,
        status=row.status,
        input_key=row.input_key if served else "",
        output_key=row.output_key if served else None,
        preview_key=row.preview_key if served else None,
        # Objects not handed out: no key a URL could be signed for.
        instances=tuple(i if served else replace(i, mask_key=None) for i in row.instances or []),
        renditions=tuple(r if served else replace(r, key="") for r in row.renditions or []),
        protect_check=dict(row.protect_check) if row.protect_check else None,
        error=row.error,
        attempts=row.attempts,
        analysis=analysis_state(row),
    )


def job_view(row: JobRow, items: list[JobItemRow] | None) -> JobView:
    return JobView(
        job_id=row.id,
        user_id=row.user_id,
        status=row.status,
        preset_id=row.preset_id,
        rule_id=row.rule_id,
        total_items=row.total_items,
        done_items=row.done_items,
        failed_items=row.failed_items,
        cost_per_item=row.cost_per_item,
        credits_reserved=row.credits_reserved,
        credits_spent=row.credits_spent,
        analyzed_concepts=list(row.analyzed_concepts or []),
        set_key=row.set_key if serves_objects(row) else None,
        error=row.error if row.status in (ItemStatus.FAILED, ItemStatus.DONE) else None,
        created_at=row.created_at,
        updated_at=row.updated_at,
        upload_deadline_at=row.upload_deadline_at,
        items=None if items is None else tuple(item_view(i, served=serves_objects(row)) for i in items),
        webhook_url=row.webhook_url,
        webhook_events=tuple(row.webhook_events or ()),
    )


def load_items(session: Session, job_id: str) -> list[JobItemRow]:
    return list(session.scalars(select(JobItemRow).where(JobItemRow.job_id == job_id).order_by(JobItemRow.idx)))


def _encode_token(created_at: datetime, job_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{job_id}".encode()).decode().rstrip("=")


def _decode_token(token: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        stamp, job_id = raw.split("|", 1)
        return datetime.fromisoformat(stamp), job_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as e:
        raise ValidationFailed("page_token: is not a token this service issued", field="page_token") from e


def list_jobs(db: Database, user_id: str, *, page_size: int = 0, page_token: str = "") -> JobPage:
    if page_size < 0 or page_size > MAX_PAGE_SIZE:
        raise ValidationFailed(f"page_size: must be between 1 and {MAX_PAGE_SIZE}", field="page_size")
    size = page_size or DEFAULT_PAGE_SIZE
    with db.read() as s:
        get_user(s, user_id)
        stmt = select(JobRow).where(JobRow.user_id == user_id)
        if page_token:
            created, last_id = _decode_token(page_token)
            stmt = stmt.where(or_(JobRow.created_at < created, and_(JobRow.created_at == created, JobRow.id < last_id)))
        rows = list(s.scalars(stmt.order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(size + 1)))
    more = len(rows) > size
    rows = rows[:size]
    token = _encode_token(rows[-1].created_at, rows[-1].id) if more and rows else ""
    return JobPage([job_view(r, None) for r in rows], token)
