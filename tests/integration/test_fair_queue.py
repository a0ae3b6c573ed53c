"""Fairness of the real queue, on SQLite and PostgreSQL: measured by the order of claims, not by
the clock. One user's big album must not make another user's single photo wait behind it."""

from __future__ import annotations

import threading
from collections import Counter

from server.service.settle import ItemOutputs
from server.storage import keys
from server.work.queue import Claim, WorkQueue
from tests.support.invariants import check_invariants
from tests.support.pipeline import queued_job
from tests.support.stack import Stack


def _finish(queue: WorkQueue, owners: dict[str, str], claim: Claim) -> None:
    user = owners[claim.job_id]
    if claim.stage == "package":
        assert queue.complete_package(claim, keys.set_key(user, claim.job_id))
    else:
        assert queue.complete_item(claim, ItemOutputs(output_key=keys.output_key(user, claim.job_id, claim.idx)))


def _drain(queue: WorkQueue, owners: dict[str, str]) -> list[Claim]:
    """One worker serving the queue to the end; the claims in the order they were made."""
    order: list[Claim] = []
    while (claim := queue.claim("w")) is not None:
        order.append(claim)
        _finish(queue, owners, claim)
    return order


def test_a_small_job_overtakes_a_big_one_of_another_user(stack: Stack) -> None:
    big_user, big = queued_job(stack, 10)  # queued first: ten photos of a free account
    small_user, small = queued_job(stack, 1)  # then another user's single photo
    queue = WorkQueue(stack.db, stack.settings.queue)
    order = [c for c in _drain(queue, {big: big_user, small: small_user}) if c.stage != "package"]
    assert len(order) == 11
    # First come, first served would put it 11th, after every photo of the big album.
    position = next(i for i, c in enumerate(order) if c.job_id == small)
    assert position <= 1, [c.job_id[:4] for c in order]
    assert stack.services.jobs.get(small_user, small).status == "done"
    assert stack.services.jobs.get(big_user, big).status == "done"
    check_invariants(stack.db)


def test_users_are_served_round_robin(stack: Stack) -> None:
    jobs = [queued_job(stack, 4) for _ in range(3)]
    owners = {job_id: user for user, job_id in jobs}
    queue = WorkQueue(stack.db, stack.settings.queue)
    items = [owners[c.job_id] for c in _drain(queue, owners) if c.stage != "package"]
    assert len(items) == 12
    # While all three wait, each run of three claims serves each user once.
    for start in range(0, 12, 3):
        assert len(set(items[start : start + 3])) == 3, items
    check_invariants(stack.db)


def test_retry_backoff_still_holds_under_fair_claims(stack: Stack) -> None:
    """A failed attempt waits out its backoff even when its user's turn comes first."""
    user_a, job_a = queued_job(stack, 1)
    user_b, job_b = queued_job(stack, 2)
    queue = WorkQueue(stack.db, stack.settings.queue)
    first = queue.claim("w")
    assert first is not None and first.job_id == job_a
    queue.fail(first, "transient", retryable=True)  # backoff of retry_backoff_s before the retry
    second = queue.claim("w")
    assert second is not None and second.job_id == job_b, "the item in backoff must not be claimed"
    _finish(queue, {job_a: user_a, job_b: user_b}, second)
    check_invariants(stack.db)


def test_concurrent_fair_claims_lease_each_item_once(stack: Stack) -> None:
    """Several workers claiming at once (SKIP LOCKED on PostgreSQL, the turn upsert on both)."""
    jobs = [queued_job(stack, 3) for _ in range(3)]
    owners = {job_id: user for user, job_id in jobs}
    queue = WorkQueue(stack.db, stack.settings.queue)
    claimed: list[tuple[str, int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        try:
            while (claim := queue.claim(name)) is not None:
                if claim.stage != "package":
                    with lock:
                        claimed.append((claim.job_id, claim.idx))
                _finish(queue, owners, claim)
        except BaseException as e:  # reported below: a thread's exception would be lost otherwise
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert Counter(claimed) == Counter((job_id, idx) for _, job_id in jobs for idx in range(3))
    for user, job_id in jobs:
        assert stack.services.jobs.get(user, job_id).status == "done"
    check_invariants(stack.db)
