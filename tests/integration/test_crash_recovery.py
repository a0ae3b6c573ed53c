"""Crashes with real processes: nothing is lost, nothing is charged twice.

- A ``python -m stack.worker`` process SIGKILLed in the middle of an item: its lease expires, a
  second worker process takes the item over and finishes the job; every item is spent exactly once.
- Fast failure detection, with the default lease and heartbeat: a worker process SIGKILLed
  mid-item while a second one is running has its item taken over within one lease (seconds), and
  each item is still charged once.
- The server SIGKILLed between reserving a job's credits and any upload: after a restart the sweeper
  cancels the abandoned job once its upload deadline passes and refunds it.

Both on SQLite and on PostgreSQL. Photos are large enough (about a second of work each on this
machine) that the worker is caught holding a live lease; the test checks that it was.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.config import Settings
from server.db.tables import JobRow
from server.ports import free_port
from server.storage import keys
from tests.support.invariants import check_invariants
from tests.support.pipeline import job_items, job_statuses, link_tiny_model, queued_job, spend_refs
from tests.support.processes import Child, child, service_env, wait_for, wait_http_ready
from tests.support.stack import Stack, make_stack

pytestmark = pytest.mark.integration

ITEMS = 3
PHOTO = (1200, 900)
"""About 1.5 s of pipeline work per photo here: far longer than the 20 ms poll that catches a claim."""


@pytest.fixture
def crash_stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    data_dir = link_tiny_model(tmp_path / "data")
    stack = make_stack(database_url, data_dir, inference="onnx", lease_s=1.0, sweep_interval_s=0.2)
    try:
        yield stack
    finally:
        stack.db.dispose()


def _leased_by(stack: Stack, job_id: str, pid: int) -> list[int]:
    """Indexes of the job's items that the worker process ``pid`` holds a lease on, mid-execute."""
    marker = f":{pid}:"
    return [
        i.idx
        for i in job_items(stack.db, job_id)
        if i.lease_owner and marker in i.lease_owner and i.status == "running"
    ]


def test_worker_killed_mid_item_is_taken_over_and_each_item_charged_once(crash_stack: Stack, tmp_path: Path) -> None:
    stack = crash_stack
    user, job_id = queued_job(stack, ITEMS, width=PHOTO[0], height=PHOTO[1])
    env = service_env(stack.settings)
    logs = tmp_path / "logs"

    with child("stack.worker", env, logs, name="doomed") as doomed:
        wait_for(
            lambda: bool(_leased_by(stack, job_id, doomed.pid)) or not doomed.alive(),
            timeout_s=60,
            what="the first worker to claim an item",
        )
        assert doomed.alive(), doomed.output()[-3000:]
        doomed.kill_hard()
    # Still leased by the dead process and not finished: it really died mid-item.
    orphaned = _leased_by(stack, job_id, doomed.pid)
    assert len(orphaned) == 1, (orphaned, doomed.output()[-3000:])
    assert f"item:{orphaned[0]}" not in spend_refs(stack.db, job_id)

    with child("stack.worker", env, logs, name="rescuer") as rescuer:
        wait_for(
            lambda: job_statuses(stack.db, [job_id]).get(job_id) == "done" or not rescuer.alive(),
            timeout_s=90,
            what="the second worker to finish the job",
        )
        assert rescuer.alive(), rescuer.output()[-3000:]
        rescuer.signal(signal.SIGTERM)
        assert rescuer.wait() == 0, rescuer.output()[-3000:]

    items = job_items(stack.db, job_id)
    assert [i.status for i in items] == ["done"] * ITEMS
    assert all(i.lease_owner is None for i in items)
    # The orphaned item was claimed a second time (after its lease expired), not processed twice.
    assert items[orphaned[0]].attempts == 2
    assert spend_refs(stack.db, job_id) == sorted(f"item:{i}" for i in range(ITEMS))
    me = stack.services.accounts.me(user)
    assert (me.credits_spent, me.credits_reserved, me.credits_available) == (ITEMS, 0, 100 - ITEMS)
    job = stack.services.jobs.get(user, job_id)
    assert job.done_items == ITEMS and job.set_key == keys.set_key(user, job_id)
    assert stack.store.head(keys.set_key(user, job_id)) is not None
    for i in range(ITEMS):
        assert stack.store.head(keys.output_key(user, job_id, i)) is not None
    check_invariants(stack.db)


TAKEOVER_BOUND_S = 20.0
"""The promise: a dead worker's item is worked on again within seconds. The default lease (10 s)
plus slack: the survivor may be mid-item (about 1.5 s here) and polls every 0.25 s."""


def _started(proc: Child) -> bool:
    return f":{proc.pid}:0 started" in proc.output()


def test_a_killed_workers_item_is_retried_within_the_default_lease(database_url: str, tmp_path: Path) -> None:
    defaults = Settings()
    stack = make_stack(
        database_url,
        link_tiny_model(tmp_path / "data"),
        inference="onnx",
        lease_s=defaults.queue.lease_s,
        heartbeat_s=None,
    )
    try:
        # Both workers up and idle before there is work, so the survivor is ready when the other dies.
        env = service_env(stack.settings)
        logs = tmp_path / "logs"
        with (
            child("stack.worker", env, logs, name="doomed") as doomed,
            child("stack.worker", env, logs, name="survivor") as survivor,
        ):
            wait_for(
                lambda: (_started(doomed) and _started(survivor)) or not (doomed.alive() and survivor.alive()),
                timeout_s=90,
                what="both worker processes to start",
            )
            assert doomed.alive() and survivor.alive(), doomed.output()[-2000:] + survivor.output()[-2000:]
            user, job_id = queued_job(stack, ITEMS + 1, width=PHOTO[0], height=PHOTO[1])
            wait_for(lambda: bool(_leased_by(stack, job_id, doomed.pid)), timeout_s=30, what="doomed to claim an item")
            doomed.kill_hard()
            killed_at = time.monotonic()
            orphaned = _leased_by(stack, job_id, doomed.pid)
            assert len(orphaned) == 1, orphaned
            orphan = orphaned[0]

            def taken_over() -> bool:
                item = job_items(stack.db, job_id)[orphan]
                return item.attempts == 2 and (item.lease_owner is None or f":{doomed.pid}:" not in item.lease_owner)

            wait_for(
                taken_over,
                timeout_s=TAKEOVER_BOUND_S,
                what="the survivor to take over the dead worker's item",
            )
            assert time.monotonic() - killed_at <= TAKEOVER_BOUND_S
            wait_for(
                lambda: job_statuses(stack.db, [job_id]).get(job_id) == "done" or not survivor.alive(),
                timeout_s=90,
                what="the survivor to finish the job",
            )
            assert survivor.alive(), survivor.output()[-3000:]
            survivor.signal(signal.SIGTERM)
            assert survivor.wait() == 0, survivor.output()[-3000:]

        items = job_items(stack.db, job_id)
        assert [i.status for i in items] == ["done"] * (ITEMS + 1)
        assert items[orphan].attempts == 2
        # Charged exactly once each, the orphan included.
        assert spend_refs(stack.db, job_id) == sorted(f"item:{i}" for i in range(ITEMS + 1))
        me = stack.services.accounts.me(user)
        assert (me.credits_spent, me.credits_reserved) == (ITEMS + 1, 0)
        check_invariants(stack.db)
    finally:
        stack.db.dispose()


def _ok(response: httpx.Response, status: int = 200) -> Any:
    body = response.json()
    assert response.status_code == status, body
    return body["data"]


def test_server_killed_between_reserve_and_upload_is_swept_and_refunded(database_url: str, tmp_path: Path) -> None:
    data_dir = link_tiny_model(tmp_path / "data")
    http_port, grpc_port = free_port(), free_port()
    stack = make_stack(
        database_url,
        data_dir,
        inference="onnx",
        http_port=http_port,
        grpc_port=grpc_port,
        upload_deadline_s=2,
        sweep_interval_s=0.2,
        workers=0,
    )
    base = f"http://127.0.0.1:{http_port}"
    logs = tmp_path / "logs"
    try:
        # The first server: a long sweep interval, so only the restarted server can do the sweeping.
        first_env = service_env(stack.settings.changed(sweep_interval_s=3600.0))
        with child("stack.serve", first_env, logs, name="first") as first:
            wait_http_ready(base, first)
            with httpx.Client(base_url=base, timeout=30) as http:
                anon = _ok(http.post("/auth/anon"), 201)
                auth = {"Authorization": f"Bearer {anon['token']}"}
                created = _ok(http.post("/jobs", json={"preset": "interior", "item_count": 3}, headers=auth), 201)
            first.kill_hard()
        job_id, user = created["job_id"], anon["user_id"]
        assert created["status"] == "created" and len(created["upload_urls"]) == 3

        # What the crash left: the reservation, no upload, the job still counted as active.
        me = stack.services.accounts.me(user)
        assert (me.credits_available, me.credits_reserved, me.active_jobs) == (97, 3, 1)
        assert all(stack.store.head(u["key"]) is None for u in created["upload_urls"])
        check_invariants(stack.db)

        with child("stack.serve", service_env(stack.settings), logs, name="restarted") as restarted:
            wait_http_ready(base, restarted)
            wait_for(
                lambda: job_statuses(stack.db, [job_id]).get(job_id) == "canceled",
                timeout_s=30,
                what="the sweeper to cancel the abandoned job",
                poll_s=0.1,
            )
            with httpx.Client(base_url=base, timeout=30) as http:
                job = _ok(http.get(f"/jobs/{job_id}", headers=auth))
                assert job["status"] == "canceled"
                assert [i["status"] for i in job["items"]] == ["canceled"] * 3
                me_rest = _ok(http.get("/me", headers=auth))
                assert (me_rest["credits"], me_rest["active_jobs"]) == (100, 0)
                # The freed concurrency slot is usable again.
                _ok(http.post("/jobs", json={"preset": "interior", "item_count": 1}, headers=auth), 201)
            restarted.signal(signal.SIGTERM)
            assert restarted.wait() == 0, restarted.output()[-3000:]

        with stack.db.read() as s:
            row = s.get(JobRow, job_id)
            assert row is not None and row.credits_reserved == 0 and row.finished_at is not None
        me = stack.services.accounts.me(user)
        assert (me.credits_spent, me.credits_reserved, me.credits_available) == (0, 1, 99)
        check_invariants(stack.db)
    finally:
        stack.db.dispose()
