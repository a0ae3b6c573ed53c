"""Credit movements. Each one changes the user row and writes a ``billing_events`` row in the same
transaction, so ``granted = available + reserved + spent`` holds at every commit (the database
checks it too). The unique (user, job, type, ref) key turns a second spend or refund of the same
item into an integrity error instead of a silent double charge.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from server.clock import utcnow
from server.db.tables import BillingEventRow, JobRow, UserRow
from server.errors import InsufficientCredits


def _event(session: Session, user: UserRow, job_id: str | None, kind: str, amount: int, ref: str) -> None:
    session.add(BillingEventRow(user_id=user.id, job_id=job_id, type=kind, amount=amount, ref=ref, created_at=utcnow()))


def reserve(session: Session, user: UserRow, job_id: str, amount: int) -> None:
    if user.credits_available < amount:
        raise InsufficientCredits(f"this job needs {amount} credits; {user.credits_available} are available")
    user.credits_available -= amount
    user.credits_reserved += amount
    _event(session, user, job_id, "reserve", amount, "job")


def spend_item(session: Session, user: UserRow, job: JobRow, idx: int) -> None:
    """One item done: its reserved credits become spent."""
    amount = job.cost_per_item
    user.credits_reserved -= amount
    user.credits_spent += amount
    job.credits_reserved -= amount
    job.credits_spent += amount
    _event(session, user, job.id, "spend", amount, f"item:{idx}")


def refund_item(session: Session, user: UserRow, job: JobRow, idx: int) -> None:
    """One item failed or canceled: its reserved credits return to the user."""
    amount = job.cost_per_item
    user.credits_reserved -= amount
    user.credits_available += amount
    job.credits_reserved -= amount
    _event(session, user, job.id, "refund", amount, f"item:{idx}")


def grant(session: Session, user: UserRow, amount: int, ref: str, *, kind: str = "admin_grant") -> None:
    user.credits_granted += amount
    user.credits_available += amount
    _event(session, user, None, kind, amount, ref)
