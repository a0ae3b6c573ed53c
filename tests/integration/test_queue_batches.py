"""Batched claims and group settlement: statements per item, fairness within a batch, wake-ups."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy import select, update

from bench.statement_count import counting
from server.db.engine import Database
from server.db.tables import JobItemRow, JobRow
from server.service.settle import ItemOutputs
from server.work.queue import Claim, WorkQueue
from tests.support.invariants import check_invariants
from tests.support.pipeline import queued_albums
from tests.support.stack import Stack, make_stack


def _outputs(claim: Claim) -> ItemOutputs:
    return ItemOutputs(output_key=f"outputs/{claim.job_id}/{claim.idx}.png")


def _drain(queue: WorkQueue, batch: int) -> int:
    """Claim and settle every item, a batch (one group commit) at a time; returns how many."""
    settled = 0
    while claims := queue.claim_batch("w", batch):
        if claims[0].stage == "package":
            assert queue.complete_package(claims[0], f"sets/{claims[0].job_id}.zip")
            continue
        assert all(queue.complete_items([(c, _outputs(c)) for c in claims]))
        settled += len(claims)
    return settled


def test_a_batch_costs_at_most_four_statements_per_item(stack: Stack) -> None:
    """The guard on the queue's cost: claim + settle in batches of 8 (4 jobs of 4 users) in at most
    4 statements per item (``bench.statement_count``; ``executemany`` counts every row)."""
    queued_albums(stack, 4, 8)
    queue = WorkQueue(stack.db, stack.settings.queue)
    with counting(stack.db.engine) as count:
        settled = _drain(queue, 8)
    assert settled == 32
    assert count.per(settled) <= 4.0, (count.per(settled), count.by_kind)
    check_invariants(stack.db)


def test_one_item_at_a_time_stays_cheap(stack: Stack) -> None:
    """Unbatched (one item a claim and a group), packaging included: the old path cost ~17."""
    queued_albums(stack, 1, 4)
    queue = WorkQueue(stack.db, stack.settings.queue)
    with counting(stack.db.engine) as count:
        settled = _drain(queue, 1)
    assert settled == 4
    assert count.per(settled) <= 14.0, (count.per(settled), count.by_kind)


def test_batches_rotate_between_users(stack: Stack) -> None:
    """A claim takes the longest-waiting user's items (spilling into the next user's), and the
    next claim serves the next user: one user's album never holds the others back by more than a
    batch, and concurrent claims land on different jobs."""
    users = queued_albums(stack, 3, 4)
    queue = WorkQueue(stack.db, stack.settings.queue)
    with stack.db.read() as s:
        owner = {job_id: user_id for job_id, user_id in s.execute(select(JobRow.id, JobRow.user_id))}

    def served(n: int) -> list[str]:
        return [owner[c.job_id] for c in queue.claim_batch("w", n)]

    first = served(6)
    assert first[:4] == [first[0]] * 4 and first[4:] == [first[4]] * 2 and first[4] != first[0]
    (third,) = set(users) - set(first)
    assert served(2) == [third] * 2  # never served yet: before the second user's remaining items
    assert served(4) == [first[4]] * 2 + [third] * 2  # the second user waited longer than the third


def test_a_lost_lease_in_a_group_drops_only_that_item(stack: Stack) -> None:
    queued_albums(stack, 1, 3)
    queue = WorkQueue(stack.db, stack.settings.queue)
    claims = queue.claim_batch("w", 3)
    stolen = claims[1]
    with stack.db.write() as s:
        s.execute(
            update(JobItemRow)
            .where(JobItemRow.job_id == stolen.job_id, JobItemRow.idx == stolen.idx)
            .values(lease_owner="someone-else")
        )
    assert queue.complete_items([(c, _outputs(c)) for c in claims]) == [True, False, True]
    assert queue.heartbeat_batch(claims) == set()  # recorded or not ours: nothing left to extend
    check_invariants(stack.db)


def test_an_idle_worker_is_woken_by_queued_work(stack: Stack) -> None:
    """A commit of claimable work wakes a waiting worker at once: in this process by the database's
    signal, from another process (a second engine here) by ``NOTIFY`` on PostgreSQL."""
    other = Database.from_url(stack.settings.effective_database_url) if stack.db.is_postgres else stack.db
    queue = WorkQueue(other, stack.settings.queue)

    async def wait() -> tuple[bool, float]:
        # The first wait starts the listener, which wakes its waiters once it is connected (work
        # may have been queued while nobody listened).
        await queue.wait_for_work(queue.generation, 2.0)
        assert not await queue.wait_for_work(queue.generation, 0.3)  # nothing queued: times out
        waiting = asyncio.create_task(queue.wait_for_work(queue.generation, 30.0))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await asyncio.to_thread(queued_albums, stack, 1, 1)
        woken = await waiting
        return woken, time.monotonic() - started

    try:
        woken, seconds = asyncio.run(wait())
    finally:
        if other is not stack.db:
            other.dispose()
    assert woken and seconds < 5.0
    assert queue.claim("w") is not None


def test_a_dead_letter_at_claim_keeps_the_attempt_count(database_url: str, tmp_path: Path) -> None:
    """The claim that finds an item out of attempts is no attempt of its own."""
    stack = make_stack(database_url, tmp_path / "data", lease_s=0.1, max_attempts=2)
    try:
        queued_albums(stack, 1, 1)
        queue = WorkQueue(stack.db, stack.settings.queue)
        for _ in range(2):  # two workers die holding it
            assert queue.claim("crashing-worker") is not None
            time.sleep(0.2)
        assert queue.claim("next") is None
        with stack.db.read() as s:
            item = s.scalars(select(JobItemRow)).one()
        assert (item.status, item.attempts, item.lease_owner) == ("failed", 2, None)
        check_invariants(stack.db)
    finally:
        stack.db.dispose()
