"""``python -m stack.worker`` processes sharing one PostgreSQL database, and worker shutdown.

- Two worker processes finish an album together; each item is processed and charged once.
- SIGTERM to a worker in the middle of an item: it stops claiming, drains the item it holds (the
  drain time is far longer than one item), exits 0, and the other worker finishes the album.
- A worker whose drain time runs out returns its item to the queue untouched (the attempt is not
  counted) and another worker finishes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.inference.factory import build_segmenter
from server.pipeline import Pipeline
from server.storage import keys
from server.work.queue import WorkQueue
from server.work.worker import Worker
from tests.servers.postgres import PostgresServer
from tests.support.invariants import check_invariants
from tests.support.pipeline import job_items, job_statuses, link_tiny_model, process_jobs, queued_job, spend_refs
from tests.support.processes import Child, child, service_env, wait_for
from tests.support.stack import Stack, make_stack

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

STATS = re.compile(r"stopped: WorkerStats\(done=(\d+), failed=(\d+), dropped=(\d+)\)")


@pytest.fixture
def pg_stack(postgres_server: PostgresServer, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    data_dir = link_tiny_model(tmp_path / "data")
    with postgres_server.fresh_database(request.node.name[:30]) as url:
        stack = make_stack(url, data_dir, inference="onnx", lease_s=2.0)
        try:
            yield stack
        finally:
            stack.db.dispose()


def _stats(worker: Child) -> tuple[int, int, int]:
    """The counters a worker process logs when it stops (done, failed, dropped)."""
    for line in worker.output().splitlines():
        try:
            msg = str(json.loads(line).get("msg", ""))
        except ValueError:
            continue
        if m := STATS.search(msg):
            return int(m[1]), int(m[2]), int(m[3])
    raise AssertionError(f"{worker.name} logged no final stats:\n{worker.output()[-3000:]}")


def _holding(stack: Stack, job_id: str, pid: int) -> list[int]:
    return [i.idx for i in job_items(stack.db, job_id) if i.lease_owner and f":{pid}:" in i.lease_owner]


def _assert_finished_once(stack: Stack, user: str, job_id: str, n: int) -> None:
    items = job_items(stack.db, job_id)
    assert [i.status for i in items] == ["done"] * n
    assert spend_refs(stack.db, job_id) == sorted(f"item:{i}" for i in range(n))
    assert stack.services.jobs.get(user, job_id).status == "done"
    assert stack.store.head(keys.set_key(user, job_id)) is not None
    check_invariants(stack.db)


def test_two_worker_processes_finish_an_album(pg_stack: Stack, tmp_path: Path) -> None:
    stack = pg_stack
    n = 6
    user, job_id = queued_job(stack, n, width=640, height=480)
    env = service_env(stack.settings)
    with (
        child("stack.worker", env, tmp_path / "logs", name="a") as a,
        child("stack.worker", env, tmp_path / "logs", name="b") as b,
    ):
        wait_for(
            lambda: job_statuses(stack.db, [job_id]).get(job_id) == "done" or not (a.alive() and b.alive()),
            timeout_s=90,
            what="two workers to finish the album",
            poll_s=0.1,
        )
        assert a.alive() and b.alive(), a.output()[-2000:] + b.output()[-2000:]
        a.signal(signal.SIGTERM)
        b.signal(signal.SIGTERM)
        assert (a.wait(), b.wait()) == (0, 0)
    _assert_finished_once(stack, user, job_id, n)
    done_a, failed_a, dropped_a = _stats(a)
    done_b, failed_b, dropped_b = _stats(b)
    # n items plus the packaging of the set, each recorded by exactly one of them.
    assert done_a + done_b == n + 1
    assert (failed_a, failed_b, dropped_a, dropped_b) == (0, 0, 0, 0)
    assert done_a > 0 and done_b > 0, "both workers should have taken part"


def test_sigterm_mid_item_drains_it_and_the_other_worker_finishes(pg_stack: Stack, tmp_path: Path) -> None:
    stack = pg_stack
    n = 4
    user, job_id = queued_job(stack, n, width=1200, height=900)
    env = service_env(stack.settings)
    logs = tmp_path / "logs"
    with child("stack.worker", env, logs, name="leaving") as leaving:
        wait_for(
            lambda: bool(_holding(stack, job_id, leaving.pid)) or not leaving.alive(),
            timeout_s=60,
            what="the first worker to claim an item",
        )
        (held,) = _holding(stack, job_id, leaving.pid)
        with child("stack.worker", env, logs, name="staying") as staying:
            leaving.signal(signal.SIGTERM)
            assert leaving.wait(timeout_s=30) == 0, leaving.output()[-3000:]
            # Drained: the item it held was finished by it and recorded, and nothing else is held.
            assert _holding(stack, job_id, leaving.pid) == []
            assert job_items(stack.db, job_id)[held].status == "done"
            assert _stats(leaving)[0] == 1, leaving.output()[-3000:]
            wait_for(
                lambda: job_statuses(stack.db, [job_id]).get(job_id) == "done" or not staying.alive(),
                timeout_s=90,
                what="the remaining worker to finish the album",
                poll_s=0.1,
            )
            staying.signal(signal.SIGTERM)
            assert staying.wait() == 0, staying.output()[-3000:]
    assert _stats(staying)[0] == n  # the other n - 1 items and the set
    assert all(i.attempts == 1 for i in job_items(stack.db, job_id))
    _assert_finished_once(stack, user, job_id, n)


async def _stop_mid_item(stack: Stack, job_id: str) -> int:
    """A worker with almost no drain time stopped while it holds an item; returns that item's index."""
    async with contextlib.AsyncExitStack() as resources:
        segmenter = await build_segmenter(stack.settings, resources)
        queue = WorkQueue(stack.db, stack.settings.queue)
        pipeline = Pipeline(stack.db, stack.store, segmenter, stack.settings.photos)
        worker = Worker(queue, pipeline, name="short-drain:1:0", lease_s=stack.settings.queue.lease_s, drain_s=0.01)
        stopping = asyncio.Event()
        run = asyncio.create_task(worker.run(stopping))
        held: list[int] = []
        for _ in range(600):
            held = [i.idx for i in await asyncio.to_thread(job_items, stack.db, job_id) if i.lease_owner]
            if held:
                break
            await asyncio.sleep(0.02)
        stopping.set()
        await run
        assert len(held) == 1 and worker.stats.done == 0, (held, worker.stats)
        return held[0]


def test_worker_out_of_drain_time_returns_its_item(pg_stack: Stack) -> None:
    stack = pg_stack
    user, job_id = queued_job(stack, 2, width=1200, height=900)
    returned = asyncio.run(_stop_mid_item(stack, job_id))
    item = job_items(stack.db, job_id)[returned]
    # Back in the queue at once, as if never claimed: no lease, attempt not counted, nothing charged.
    assert (item.status, item.stage, item.lease_owner, item.attempts) == ("queued", "execute", None, 0)
    assert spend_refs(stack.db, job_id) == []
    check_invariants(stack.db)
    process_jobs(stack, [job_id], workers=1)
    assert [i.attempts for i in job_items(stack.db, job_id)] == [1, 1]
    _assert_finished_once(stack, user, job_id, 2)
