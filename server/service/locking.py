"""Row access that serialises a user's limit checks across processes."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.db.tables import JobRow, RuleRow, UserRow
from server.errors import InvalidToken
from server.service.job_state import ACTIVE as ACTIVE_JOB_STATES


def lock_user(session: Session, user_id: str) -> UserRow:
    """The user row, locked until the transaction ends.

    PostgreSQL: ``FOR UPDATE``. SQLite: the write transaction already holds the database write lock
    (``BEGIN IMMEDIATE``), and SQLAlchemy leaves ``FOR UPDATE`` out there.
    """
    row = session.scalars(select(UserRow).where(UserRow.id == user_id).with_for_update()).one_or_none()
    if row is None:
        # A valid signature for a user that does not exist (deleted, or another deployment's token).
        raise InvalidToken("the token's user does not exist")
    return row


def lock_users(session: Session, user_ids: Iterable[str]) -> dict[str, UserRow]:
    """Several user rows in one statement, locked in id order (the order every multi-row lock of
    users takes, so two such transactions cannot deadlock)."""
    ids = sorted(set(user_ids))
    rows = session.scalars(select(UserRow).where(UserRow.id.in_(ids)).order_by(UserRow.id).with_for_update())
    found = {row.id: row for row in rows}
    if len(found) != len(ids):
        raise InvalidToken("the token's user does not exist")
    return found


def get_user(session: Session, user_id: str) -> UserRow:
    row = session.get(UserRow, user_id)
    if row is None:
        raise InvalidToken("the token's user does not exist")
    return row


def count_rules(session: Session, user_id: str) -> int:
    return session.scalar(select(func.count()).select_from(RuleRow).where(RuleRow.user_id == user_id)) or 0


def count_active_jobs(session: Session, user_id: str) -> int:
    stmt = (
        select(func.count()).select_from(JobRow).where(JobRow.user_id == user_id, JobRow.status.in_(ACTIVE_JOB_STATES))
    )
    return session.scalar(stmt) or 0
