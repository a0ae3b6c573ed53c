"""Credit movements are staged and written in one statement per flush: they land with the rows they
move credits on, a second spend of the same item is still refused by the database, and nothing
staged survives a rollback."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.db.tables import BillingEventRow, JobRow, UserRow
from server.service import ledger
from tests.support.invariants import check_invariants
from tests.support.pipeline import queued_job, spend_refs
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def _job_and_user(s: Session, job_id: str) -> tuple[JobRow, UserRow]:
    job = s.get(JobRow, job_id)
    assert job is not None
    user = s.get(UserRow, job.user_id)
    assert user is not None
    return job, user


def _spent(stack: Stack, job_id: str) -> int:
    with stack.db.read() as s:
        return _job_and_user(s, job_id)[1].credits_spent


def test_spends_are_written_with_the_flush_and_a_second_spend_is_refused(stack: Stack) -> None:
    _, job_id = queued_job(stack, 3)
    with stack.db.write() as s:
        job, user = _job_and_user(s, job_id)
        for idx in (0, 1):
            ledger.spend_item(s, user, job, idx)
        s.flush()
        # Written by the flush, inside the transaction, one row per movement.
        refs = s.scalars(
            select(BillingEventRow.ref).where(BillingEventRow.job_id == job_id, BillingEventRow.type == "spend")
        )
        assert sorted(refs) == ["item:0", "item:1"]
    assert spend_refs(stack.db, job_id) == ["item:0", "item:1"]
    spent = _spent(stack, job_id)

    with pytest.raises(IntegrityError), stack.db.write() as s:
        job, user = _job_and_user(s, job_id)
        ledger.spend_item(s, user, job, 2)
        ledger.spend_item(s, user, job, 1)  # already spent: the unique key refuses it
    # Nothing of that transaction stayed, the good movement beside the bad one included.
    assert spend_refs(stack.db, job_id) == ["item:0", "item:1"]
    assert _spent(stack, job_id) == spent


def test_a_movement_is_written_at_commit_when_nothing_else_flushed(stack: Stack) -> None:
    _, job_id = queued_job(stack, 1)
    with stack.db.write() as s:
        job, user = _job_and_user(s, job_id)
        s.expunge(user)  # its balance changes are not flushed: only the staged movement remains
        ledger.spend_item(s, user, job, 0)
        s.expunge(job)
    assert spend_refs(stack.db, job_id) == ["item:0"]


def test_a_rollback_drops_what_was_staged(stack: Stack) -> None:
    _, job_id = queued_job(stack, 1)
    with pytest.raises(RuntimeError), stack.db.write() as s:
        job, user = _job_and_user(s, job_id)
        ledger.spend_item(s, user, job, 0)
        raise RuntimeError("the caller gives up")
    assert spend_refs(stack.db, job_id) == []
    check_invariants(stack.db)  # nothing moved: the balances still match the ledger
