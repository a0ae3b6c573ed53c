"""The durable queue on each database: leases, heartbeats, expiry, retries, dead letters, races."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from server.service.settle import ItemOutputs
from server.storage import keys
from server.work.queue import Claim, WorkQueue
from tests.support.invariants import check_invariants
from tests.support.pipeline import queued_job
from tests.support.stack import Stack, jpeg_bytes, make_stack


def _outputs(user: str, claim: Claim) -> ItemOutputs:
    return ItemOutputs(output_key=keys.output_key(user, claim.job_id, claim.idx))


def test_items_are_leased_once_and_finish_the_job(stack: Stack) -> None:
    user, job_id = queued_job(stack, 3)
    queue = WorkQueue(stack.db, stack.settings.queue)
    claims = [queue.claim("w1"), queue.claim("w2"), queue.claim("w1")]
    assert sorted(c.idx for c in claims if c) == [0, 1, 2]
    assert queue.claim("w3") is None
    assert stack.services.jobs.get(user, job_id).status == "queued"
    for c in claims:
        assert c is not None and queue.heartbeat(c)
        assert queue.complete_item(c, _outputs(user, c))
    package = queue.claim("w1")
    assert package is not None and package.stage == "package"
    assert queue.complete_package(package, keys.set_key(user, job_id))
    job = stack.services.jobs.get(user, job_id)
    assert (job.status, job.done_items, job.credits_spent) == ("done", 3, 3)
    assert stack.services.accounts.me(user).active_jobs == 0
    check_invariants(stack.db)


def test_expired_lease_is_taken_over_and_the_late_result_dropped(database_url: str, tmp_path: Path) -> None:
    stack = make_stack(database_url, tmp_path / "data", lease_s=0.2)
    try:
        user, _job_id = queued_job(stack, 1)
        queue = WorkQueue(stack.db, stack.settings.queue)
        first = queue.claim("dead-worker")
        assert first is not None
        time.sleep(0.3)
        second = queue.claim("live-worker")
        assert second is not None and (second.idx, second.attempt) == (0, 2)
        assert not queue.heartbeat(first)
        assert not queue.complete_item(first, _outputs(user, first))
        assert queue.complete_item(second, _outputs(user, second))
        assert stack.services.accounts.me(user).credits_spent == 1
        check_invariants(stack.db)
    finally:
        stack.db.dispose()


def test_failures_retry_with_backoff_then_dead_letter(stack: Stack) -> None:
    user, job_id = queued_job(stack, 1)
    queue = WorkQueue(stack.db, stack.settings.queue)
    for attempt in (1, 2, 3):
        claim = None
        deadline = time.monotonic() + 5
        while claim is None and time.monotonic() < deadline:
            claim = queue.claim("w")
            time.sleep(0.02)
        assert claim is not None and claim.attempt == attempt
        queue.fail(claim, f"boom {attempt}", retryable=True)
    job = stack.services.jobs.get(user, job_id)
    assert job.status == "failed" and job.items and job.items[0].error == "boom 3"
    assert stack.services.accounts.me(user).credits_available == 100
    check_invariants(stack.db)


def test_exhausted_lease_is_dead_lettered_at_claim(database_url: str, tmp_path: Path) -> None:
    stack = make_stack(database_url, tmp_path / "data", lease_s=0.1, max_attempts=1)
    try:
        user, job_id = queued_job(stack, 1)
        queue = WorkQueue(stack.db, stack.settings.queue)
        assert queue.claim("crashing-worker") is not None
        time.sleep(0.2)
        assert queue.claim("next") is None
        job = stack.services.jobs.get(user, job_id)
        assert job.status == "failed" and "gave up after 1 attempts" in (job.items or ())[0].error  # type: ignore[operator]
        check_invariants(stack.db)
    finally:
        stack.db.dispose()


def test_cancel_drops_running_results(stack: Stack) -> None:
    user, job_id = queued_job(stack, 2)
    queue = WorkQueue(stack.db, stack.settings.queue)
    claim = queue.claim("w")
    assert claim is not None
    stack.services.jobs.cancel(user, job_id)
    assert not queue.complete_item(claim, _outputs(user, claim))
    assert queue.claim("w") is None
    me = stack.services.accounts.me(user)
    assert (me.credits_available, me.credits_spent) == (100, 0)
    check_invariants(stack.db)


def test_racing_workers_process_each_item_once(stack: Stack) -> None:
    user, job_id = queued_job(stack, 10)
    queue = WorkQueue(stack.db, stack.settings.queue)
    done: list[tuple[str, int]] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while True:
            claim = queue.claim(name)
            if claim is None:
                return
            if claim.stage == "package":
                queue.complete_package(claim, keys.set_key(user, claim.job_id))
                continue
            if queue.complete_item(claim, _outputs(user, claim)):
                with lock:
                    done.append((name, claim.idx))

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(idx for _, idx in done) == list(range(10))
    assert stack.services.jobs.get(user, job_id).status == "done"
    check_invariants(stack.db)


def test_packaging_retries_transient_failures_and_gives_up_on_permanent_ones(stack: Stack) -> None:
    user, job_id = queued_job(stack, 1)
    queue = WorkQueue(stack.db, stack.settings.queue)
    item = queue.claim("w")
    assert item is not None and queue.complete_item(item, _outputs(user, item))
    package = queue.claim("w")
    assert package is not None and package.stage == "package"
    queue.fail(package, "store unavailable", retryable=True)
    assert stack.services.jobs.get(user, job_id).status == "running"
    deadline = time.monotonic() + 5
    retry = None
    while retry is None and time.monotonic() < deadline:
        retry = queue.claim("w")
        time.sleep(0.02)
    assert retry is not None and (retry.stage, retry.attempt) == ("package", 2)
    queue.fail(retry, "output set 'gone' is not in preset 'interior'", retryable=False)
    job = stack.services.jobs.get(user, job_id)
    assert (job.status, job.set_key, job.done_items) == ("done", None, 1)
    assert job.error is not None and job.error.startswith("packaging failed: output set")
    assert queue.claim("w") is None
    check_invariants(stack.db)


def test_an_analysis_that_finds_nothing_is_done_not_pending(stack: Stack) -> None:
    user = stack.services.accounts.create_anonymous().user.user_id
    created = stack.services.jobs.create(user, preset_id="interior", item_count=1)
    stack.store.put(created.uploads[0].key, jpeg_bytes(), content_type="image/jpeg")
    job_id = created.job.job_id
    stack.services.jobs.confirm_upload(user, job_id)
    assert [i.analysis for i in stack.services.jobs.analyze(user, job_id, ["Wall"]).items or ()] == ["pending"]
    queue = WorkQueue(stack.db, stack.settings.queue)
    claim = queue.claim("w")
    assert claim is not None and claim.stage == "analyze"
    assert queue.complete_analysis(claim, [])
    item = (stack.services.jobs.get(user, job_id).items or ())[0]
    assert (item.analysis, item.instances) == ("done", ())
