"""Where a stream's events come from: on PostgreSQL, the NOTIFY that every writing transaction sends
(with polling as good as off, changes still arrive at once; a write that does not notify is not
seen); on SQLite, the one poll of all watched jobs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from protos.s3.v1 import jobs_pb2 as jpb
from protos.s3.v1 import jobs_pb2_grpc
from server.clock import utcnow
from server.db.notify import JOB_CHANNEL
from server.db.tables import JobRow
from server.grpc_api.server import build_grpc_server
from server.service.settle import ItemOutputs
from server.service.streams import StreamPolicy
from server.storage import keys
from server.work.queue import WorkQueue
from tests.servers.postgres import PostgresServer
from tests.support.pipeline import queued_job
from tests.support.stack import Stack, make_stack

pytestmark = pytest.mark.integration

NEVER_S = 3600.0


@contextmanager
def _served(stack: Stack, policy: StreamPolicy) -> Iterator[str]:
    server = build_grpc_server(replace(stack.services, streams=policy), bind="127.0.0.1:0", max_workers=4)
    server.start()
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        server.stop(1.0)


class Watch:
    """One WatchJob call whose events land in a queue, so a test can wait for "none within N s"."""

    def __init__(self, target: str, token: str, job_id: str) -> None:
        self._channel = grpc.aio.insecure_channel(target)
        stub = jobs_pb2_grpc.JobServiceStub(self._channel)
        self._call = stub.WatchJob(jpb.JobRef(job_id=job_id), metadata=(("authorization", f"Bearer {token}"),))
        self.events: asyncio.Queue[jpb.JobEvent] = asyncio.Queue()
        self._pump = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for event in self._call:
            await self.events.put(event)

    async def next(self, timeout_s: float) -> jpb.JobEvent:
        return await asyncio.wait_for(self.events.get(), timeout_s)

    async def until(self, wanted: Callable[[jpb.JobEvent], bool], timeout_s: float) -> jpb.JobEvent:
        """The first event ``wanted`` accepts (earlier ones are skipped), within ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            event = await self.next(max(deadline - loop.time(), 0.001))
            if wanted(event):
                return event

    async def close(self) -> None:
        self._call.cancel()
        await asyncio.gather(self._pump, return_exceptions=True)
        await self._channel.close(None)


def _token(stack: Stack, user_id: str) -> str:
    return stack.services.tokens.issue(user_id).token


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def _write_without_notifying(stack: Stack, job_id: str) -> None:
    # A plain session, not the database's notifying one: the row changes, nobody is told.
    with Session(stack.db.engine) as s, s.begin():
        row = s.get(JobRow, job_id)
        assert row is not None
        row.error = "changed behind the streams' back"
        row.updated_at = utcnow()


def _work_side_finishes_one_item(stack: Stack, user_id: str) -> None:
    queue = WorkQueue(stack.db, stack.settings.queue)
    claim = queue.claim("worker-1")
    assert claim is not None
    assert queue.heartbeat(claim)
    assert queue.complete_item(claim, ItemOutputs(output_key=keys.output_key(user_id, claim.job_id, claim.idx)))


@pytest.mark.postgres
def test_postgres_streams_follow_notifications_of_the_work_side(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    with postgres_server.fresh_database("stream_notify") as url:
        stack = make_stack(url, tmp_path / "data")
        try:
            user_id, job_id = queued_job(stack, 2)
            policy = StreamPolicy(poll_interval_s=NEVER_S, notify_fallback_poll_s=NEVER_S)
            with _served(stack, policy) as target:

                async def scenario() -> None:
                    watch = Watch(target, _token(stack, user_id), job_id)
                    try:
                        first = await watch.next(10)
                        assert first.job.status == "queued" and not first.final
                        # Once listening, and once the re-read that every (re)connection makes is over.
                        await _until_listening(stack, other_than=())
                        await asyncio.sleep(1.0)
                        # The guard: with polling off, a change that sends no NOTIFY never arrives.
                        await _in_thread(_write_without_notifying, stack, job_id)
                        with pytest.raises(TimeoutError):
                            await watch.next(1.5)
                        # A worker finishing an item notifies, and the stream sees it at once.
                        await _in_thread(_work_side_finishes_one_item, stack, user_id)
                        progressed = await watch.until(lambda e: e.job.done_items == 1, 5)
                        assert not progressed.final
                        await _in_thread(stack.services.jobs.cancel, user_id, job_id)
                        final = await watch.next(5)
                        assert final.final and final.job.status == "canceled"
                    finally:
                        await watch.close()

                asyncio.run(scenario())
        finally:
            stack.db.dispose()


def test_sqlite_streams_follow_the_poll(tmp_path: Path) -> None:
    stack = make_stack(f"sqlite:///{tmp_path / 's3.db'}", tmp_path / "data")
    try:
        user_id, job_id = queued_job(stack, 2)
        with _served(stack, StreamPolicy(poll_interval_s=0.2)) as target:

            async def scenario() -> None:
                watches = [Watch(target, _token(stack, user_id), job_id) for _ in range(3)]
                try:
                    firsts = [await w.next(10) for w in watches]
                    assert all(e.job.status == "queued" for e in firsts)
                    await _in_thread(_work_side_finishes_one_item, stack, user_id)
                    for w in watches:
                        await w.until(lambda e: e.job.done_items == 1, 5)
                finally:
                    for w in watches:
                        await w.close()

            asyncio.run(scenario())
    finally:
        stack.db.dispose()


def _listener_pids(stack: Stack) -> list[int]:
    with stack.db.read() as s:
        rows = s.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = :q"),
            {"q": f"LISTEN {JOB_CHANNEL}"},
        )
        return [int(r[0]) for r in rows]


def _kill_listeners(stack: Stack) -> list[int]:
    pids = _listener_pids(stack)
    with stack.db.read() as s:
        for pid in pids:
            s.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    return pids


async def _until_listening(stack: Stack, *, other_than: Sequence[int]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not set(await _in_thread(_listener_pids, stack)) - set(other_than):
        assert loop.time() < deadline, "no connection listens for job changes"
        await asyncio.sleep(0.1)


@pytest.mark.postgres
def test_postgres_streams_survive_a_lost_listening_connection(tmp_path: Path, postgres_server: PostgresServer) -> None:
    with postgres_server.fresh_database("stream_relisten") as url:
        stack = make_stack(url, tmp_path / "data")
        try:
            user_id, job_id = queued_job(stack, 1)
            policy = StreamPolicy(poll_interval_s=NEVER_S, notify_fallback_poll_s=NEVER_S)
            with _served(stack, policy) as target:

                async def scenario() -> None:
                    watch = Watch(target, _token(stack, user_id), job_id)
                    try:
                        assert (await watch.next(10)).job.status == "queued"
                        await _until_listening(stack, other_than=())
                        killed = await _in_thread(_kill_listeners, stack)
                        assert len(killed) == 1
                        await _until_listening(stack, other_than=killed)
                        await _in_thread(stack.services.jobs.cancel, user_id, job_id)
                        final = await watch.until(lambda e: e.final, 5)
                        assert final.job.status == "canceled"
                    finally:
                        await watch.close()

                asyncio.run(scenario())
        finally:
            stack.db.dispose()
