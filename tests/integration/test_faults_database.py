"""PostgreSQL connections dropped under an album run: while real workers (the pipeline with the tiny
SAM3 on onnxruntime) process the album, every backend of the service's database is terminated with
``pg_terminate_backend`` again and again. The workers must ride it out: the album ends, every item is
charged at most once, and the credit invariant holds; the service takes new work afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from server.db.engine import DatabaseUnavailable
from server.inference.factory import build_segmenter
from server.pipeline import Pipeline
from server.service.job_state import TERMINAL
from server.work.queue import WorkQueue
from server.work.worker import Worker, WorkerStats
from tests.servers.postgres import PostgresServer
from tests.support.invariants import check_invariants
from tests.support.pipeline import job_items, job_statuses, link_tiny_model, process_jobs, queued_job, spend_refs
from tests.support.stack import Stack, make_stack

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

ITEMS = 6
KILL_EVERY_S = 0.15


@pytest.fixture
def pg_stack(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[tuple[Stack, str]]:
    with postgres_server.fresh_database("faults_db") as url:
        stack = make_stack(
            url, link_tiny_model(tmp_path / "data"), inference="onnx", lease_s=2.0, max_attempts=5, retry_backoff_s=0.1
        )
        try:
            yield stack, url.rsplit("/", 1)[1]
        finally:
            stack.db.dispose()


async def _run_album(stack: Stack, job_id: str, *, workers: int, timeout_s: float) -> list[WorkerStats]:
    """Real workers until the job is terminal. Like ``tests.support.pipeline.process_jobs``, except
    that this loop's own status polls ride out the dropped connections too."""
    async with contextlib.AsyncExitStack() as resources:
        segmenter = await build_segmenter(stack.settings, resources)
        queue = WorkQueue(stack.db, stack.settings.queue)
        pipeline = Pipeline(stack.db, stack.store, segmenter, stack.settings.photos)
        crew = [
            Worker(queue, pipeline, name=f"w{n}", lease_s=stack.settings.queue.lease_s, poll_s=0.05)
            for n in range(workers)
        ]
        stopping = asyncio.Event()
        tasks = [asyncio.create_task(w.run(stopping)) for w in crew]
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                with contextlib.suppress(DatabaseUnavailable):
                    if (await asyncio.to_thread(job_statuses, stack.db, [job_id])).get(job_id) in TERMINAL:
                        break
                # A worker task that ended on its own died of the fault: that is the failure.
                assert not any(t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
            else:
                raise TimeoutError(f"job {job_id} not finished within {timeout_s}s")
        finally:
            stopping.set()
            await asyncio.gather(*tasks)
        return [w.stats for w in crew]


def _terminate_backends(server: PostgresServer, database: str) -> int:
    with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchone()
    return int(row[0]) if row else 0


def test_workers_ride_out_dropped_connections(pg_stack: tuple[Stack, str], postgres_server: PostgresServer) -> None:
    stack, database = pg_stack
    _, job_id = queued_job(stack, ITEMS, width=640, height=480)
    outcome: dict[str, list[WorkerStats] | BaseException] = {}

    def run() -> None:
        try:
            outcome["stats"] = asyncio.run(_run_album(stack, job_id, workers=2, timeout_s=120))
        except BaseException as e:
            outcome["error"] = e

    worker_thread = threading.Thread(target=run, name="album")
    worker_thread.start()
    rounds = terminated = 0
    while worker_thread.is_alive():
        time.sleep(KILL_EVERY_S)
        terminated += _terminate_backends(postgres_server, database)
        rounds += 1
    worker_thread.join()
    print(f"terminated {terminated} backends in {rounds} rounds; outcome {outcome}")
    if "error" in outcome:
        raise AssertionError(f"the album did not finish: {outcome['error']!r}")
    assert terminated > 0, "no connection was ever dropped: the test proved nothing"

    assert job_statuses(stack.db, [job_id])[job_id] in ("done", "failed")
    items = job_items(stack.db, job_id)
    refs = spend_refs(stack.db, job_id)
    assert len(refs) == len(set(refs)) == sum(1 for i in items if i.status == "done")
    check_invariants(stack.db)

    # The service takes new work on fresh connections.
    _, again = queued_job(stack, 1)
    process_jobs(stack, [again], workers=1, timeout_s=60)
    assert job_statuses(stack.db, [again])[again] == "done"
    check_invariants(stack.db)
