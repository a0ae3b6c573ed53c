"""The worker loop survives a failure to record an outcome and goes on serving the queue."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.exc import IntegrityError

from server.queue import Claim
from server.service.settle import ItemOutputs
from server.worker import Worker


class _Queue:
    """Two claims, then none; recording the first outcome breaks a database constraint."""

    def __init__(self) -> None:
        self.claims = [Claim("execute", "job", 0, 1, "w"), Claim("execute", "job", 1, 1, "w")]
        self.recorded: list[int] = []

    def claim(self, owner: str) -> Claim | None:
        return self.claims.pop(0) if self.claims else None

    def heartbeat(self, claim: Claim) -> bool:
        return True

    def complete_item(self, claim: Claim, outputs: ItemOutputs) -> bool:
        if claim.idx == 0:
            raise IntegrityError("INSERT INTO billing_events", {}, Exception("duplicate key"))
        self.recorded.append(claim.idx)
        return True


class _Pipeline:
    async def run(self, claim: Claim) -> Any:
        return ItemOutputs(output_key=f"outputs/u/j/{claim.idx}_result.png")


def test_worker_keeps_running_after_a_recording_error() -> None:
    queue = _Queue()

    async def go() -> Worker:
        worker = Worker(queue, _Pipeline(), name="w", lease_s=30, poll_s=0.01)  # type: ignore[arg-type]
        stopping = asyncio.Event()
        task = asyncio.create_task(worker.run(stopping))
        for _ in range(200):
            if queue.recorded:
                break
            await asyncio.sleep(0.01)
        stopping.set()
        await task
        return worker

    worker = asyncio.run(go())
    assert queue.recorded == [1]
    assert (worker.stats.done, worker.stats.dropped) == (1, 1)
