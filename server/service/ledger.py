"""Credit movements. Each one changes the user row and writes a ``billing_events`` row in the same
transaction, so ``granted = available + reserved + spent`` holds at every commit (the database
checks it too). The unique (user, job, type, ref) key turns a second spend or refund of the same
item into an integrity error instead of a silent double charge.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

from sqlalchemy import TextClause, event, insert, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import KeyedColumnElement

from server.clock import utcnow
from server.db.tables import BillingEventRow, JobRow, UserRow
from server.errors import InsufficientCredits

_PENDING = "s3_billing_events"
"""``Session.info`` key: the transaction's credit movements not yet written."""


def _event(session: Session, user: UserRow, job_id: str | None, kind: str, amount: int, ref: str) -> None:
    # Staged, then written in one statement at the session's next flush or at commit, whichever
    # comes first: a settling batch moves credits for every item, and nothing needs the rows' ids,
    # so the ORM need not insert them one by one and fetch each id back.
    row = {"user_id": user.id, "job_id": job_id, "type": kind, "amount": amount, "ref": ref, "created_at": utcnow()}
    session.info.setdefault(_PENDING, []).append(row)


@event.listens_for(Session, "after_flush")
def _write_events(session: Session, _flush_context: object) -> None:
    # Inside the transaction: the movements commit with the balances they change, and a second
    # spend of the same item fails on the unique key before anything commits.
    rows = session.info.pop(_PENDING, None)
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        columns = _event_columns()
        session.execute(_unnest_insert(), {c.name: [row[c.name] for row in rows] for c in columns})
    else:
        session.execute(insert(BillingEventRow), rows)


@cache
def _event_columns() -> tuple[KeyedColumnElement[Any], ...]:
    return tuple(c for c in BillingEventRow.__table__.c if not c.primary_key)


@cache
def _unnest_insert() -> TextClause:
    """PostgreSQL: every staged row in one statement, one array per column (the same SQL whatever
    the row count, so it is parsed and planned once)."""
    dialect = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
    columns = _event_columns()
    arrays = ", ".join(f"CAST(:{c.name} AS {c.type.compile(dialect)}[])" for c in columns)
    names = ", ".join(c.name for c in columns)
    return text(f"INSERT INTO {BillingEventRow.__tablename__} ({names}) SELECT * FROM unnest({arrays})")


@event.listens_for(Session, "before_commit")
def _write_remaining(session: Session) -> None:
    # Runs before the commit's own flush, so movements staged since the last flush go in here.
    if session.info.get(_PENDING):
        _write_events(session, None)


@event.listens_for(Session, "after_rollback")
def _drop_staged(session: Session) -> None:
    session.info.pop(_PENDING, None)


def reserve(session: Session, user: UserRow, job_id: str, amount: int) -> None:
    if user.credits_available < amount:
        raise InsufficientCredits(f"this job needs {amount} credits; {user.credits_available} are available")
    user.credits_available -= amount
    user.credits_reserved += amount
    _event(session, user, job_id, "reserve", amount, "job")


def item_ref(idx: int, requeues: int = 0) -> str:
    """The ledger ref of one item's movements: ``item:3``, and ``item:3/r1`` after an operator's
    first requeue, so each round of an item reserves, spends or refunds at most once."""
    return f"item:{idx}/r{requeues}" if requeues else f"item:{idx}"


def reserve_item(session: Session, user: UserRow, job: JobRow, idx: int, *, requeues: int) -> None:
    """A refunded item goes back to work (operator requeue): its credits are reserved again."""
    amount = job.cost_per_item
    if user.credits_available < amount:
        raise InsufficientCredits(f"requeueing needs {amount} credits; {user.credits_available} are available")
    user.credits_available -= amount
    user.credits_reserved += amount
    job.credits_reserved += amount
    _event(session, user, job.id, "reserve", amount, item_ref(idx, requeues))


def spend_item(session: Session, user: UserRow, job: JobRow, idx: int, *, requeues: int = 0) -> None:
    """One item done: its reserved credits become spent."""
    amount = job.cost_per_item
    user.credits_reserved -= amount
    user.credits_spent += amount
    job.credits_reserved -= amount
    job.credits_spent += amount
    _event(session, user, job.id, "spend", amount, item_ref(idx, requeues))


def refund_item(session: Session, user: UserRow, job: JobRow, idx: int, *, requeues: int = 0) -> None:
    """One item failed or canceled: its reserved credits return to the user."""
    amount = job.cost_per_item
    user.credits_reserved -= amount
    user.credits_available += amount
    job.credits_reserved -= amount
    _event(session, user, job.id, "refund", amount, item_ref(idx, requeues))


def grant(session: Session, user: UserRow, amount: int, ref: str, *, kind: str = "admin_grant") -> None:
    user.credits_granted += amount
    user.credits_available += amount
    _event(session, user, None, kind, amount, ref)


# -- analyses ----------------------------------------------------------------------------------------
def analysis_price(items: int, items_per_credit: int) -> int:
    """An analysis of ``items`` photos on a new concept set: one credit per started group of
    ``items_per_credit`` photos (``Settings.analyze_items_per_credit``)."""
    return math.ceil(items / items_per_credit) if items > 0 else 0


def analysis_ref(pass_no: int) -> str:
    return f"analysis:{pass_no}"


def reserve_analysis(session: Session, user: UserRow, job: JobRow, amount: int, *, items: int) -> None:
    """Start analysis pass ``job.analysis_passes`` (already counted) over ``items`` photos."""
    if user.credits_available < amount:
        raise InsufficientCredits(f"this analysis needs {amount} credits; {user.credits_available} are available")
    user.credits_available -= amount
    user.credits_reserved += amount
    job.analysis_credits_reserved = amount
    job.analysis_pass_items = items
    job.analysis_pass_done = 0
    if amount:
        _event(session, user, job.id, "reserve", amount, analysis_ref(job.analysis_passes))


def settle_analysis(session: Session, user: UserRow, job: JobRow) -> None:
    """The pass is over (every item analysed, given up or canceled): the share of the reservation
    for the photos analysed is spent (rounded up), the rest goes back. Computed from the
    reservation alone, so a pass never costs more than it reserved."""
    reserved = job.analysis_credits_reserved
    if reserved == 0:
        return
    items = max(job.analysis_pass_items, 1)
    spent = min(reserved, -(-reserved * job.analysis_pass_done // items))
    refund = reserved - spent
    ref = analysis_ref(job.analysis_passes)
    user.credits_reserved -= reserved
    user.credits_spent += spent
    user.credits_available += refund
    job.analysis_credits_reserved = 0
    job.analysis_credits_spent += spent
    if spent:
        _event(session, user, job.id, "spend", spent, ref)
    if refund:
        _event(session, user, job.id, "refund", refund, ref)
