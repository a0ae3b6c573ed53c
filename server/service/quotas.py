"""Per-user storage quotas (``server.plans``): bytes held by live jobs and how many jobs are live.

A job is live until the sweeper purges its objects, whatever its status: a canceled job's photos
take disk until then, so canceling does not hand the quota back at once. Both figures are summed
from the job rows under the user's row lock, never stored, so they cannot drift.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.db.tables import JobRow, UserRow
from server.errors import QuotaExceeded
from server.plans import limits_for


def stored_bytes(session: Session, user_id: str) -> int:
    stmt = select(func.coalesce(func.sum(JobRow.stored_bytes), 0)).where(
        JobRow.user_id == user_id, JobRow.purged_at.is_(None)
    )
    return int(session.scalar(stmt) or 0)


def live_jobs(session: Session, user_id: str) -> int:
    stmt = select(func.count()).select_from(JobRow).where(JobRow.user_id == user_id, JobRow.purged_at.is_(None))
    return int(session.scalar(stmt) or 0)


def upload_allowance(item_count: int, max_upload_bytes: int) -> int:
    """What a new job's upload URLs can write: every item at the upload size limit."""
    return item_count * max_upload_bytes


def check_new_job(session: Session, user: UserRow, *, allowance_bytes: int) -> None:
    """Raise ``QuotaExceeded`` unless the user may hold one more job of ``allowance_bytes``.

    The caller holds the user row lock, so two creates cannot both pass on the same headroom."""
    limits = limits_for(user.plan)
    live = live_jobs(session, user.id)
    if live >= limits.max_live_jobs:
        raise QuotaExceeded(
            f"the {user.plan} plan keeps {limits.max_live_jobs} jobs; older canceled and finished jobs "
            "are deleted after their retention period"
        )
    held = stored_bytes(session, user.id)
    if held + allowance_bytes > limits.max_stored_bytes:
        raise QuotaExceeded(
            f"this job may need {allowance_bytes} bytes; {held} of the {user.plan} plan's "
            f"{limits.max_stored_bytes} bytes are held by your jobs"
        )
