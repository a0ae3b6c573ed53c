"""The worker loop survives a failure to record an outcome and goes on serving the queue."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from server.service.settle import ItemOutputs, PackageOutputs
from server.work.queue import Claim
from server.work.worker import Worker


class _Queue:
    """Two claims, then none; recording the first outcome breaks a database constraint."""

    def __init__(self) -> None:
        self.claims = [Claim("execute", "job", 0, 1, "w"), Claim("execute", "job", 1, 1, "w")]
        self.recorded: list[int] = []

    generation = 0
    fallback_s = 0.01

    def claim_batch(self, owner: str, n: int) -> list[Claim]:
        taken, self.claims = self.claims[:n], self.claims[n:]
        return taken

    async def wait_for_work(self, since: int, timeout_s: float) -> bool:
        await asyncio.sleep(timeout_s)
        return False

    def heartbeat_batch(self, claims: list[Claim]) -> set[Claim]:
        return set(claims)

    def complete_items(self, results: list[tuple[Claim, ItemOutputs]]) -> list[bool]:
        if any(claim.idx == 0 for claim, _ in results):
            raise IntegrityError("INSERT INTO billing_events", {}, Exception("duplicate key"))
        self.recorded.extend(claim.idx for claim, _ in results)
        return [True] * len(results)


class _Pipeline:
    async def run(self, claim: Claim) -> Any:
        return ItemOutputs(output_key=f"outputs/u/j/{claim.idx}_result.png")


def _run_until_recorded(queue: _Queue, pipeline: object, batch: int) -> Worker:
    """Runs a worker on ``queue`` until something is recorded (2 s at most), then stops it."""

    async def go() -> Worker:
        worker = Worker(queue, pipeline, name="w", lease_s=30, poll_s=0.01, batch=batch)  # type: ignore[arg-type]
        stopping = asyncio.Event()
        task = asyncio.create_task(worker.run(stopping))
        for _ in range(200):
            if queue.recorded:
                break
            await asyncio.sleep(0.01)
        stopping.set()
        await task
        return worker

    return asyncio.run(go())


@pytest.mark.parametrize("batch", [1, 2])
def test_worker_keeps_running_after_a_recording_error(batch: int) -> None:
    """With a batch of 2 both results may be recorded in one group: the failed group is recorded
    again item by item, so only the offending item is dropped."""
    queue = _Queue()

    worker = _run_until_recorded(queue, _Pipeline(), batch)
    assert queue.recorded == [1]
    assert (worker.stats.done, worker.stats.dropped) == (1, 1)


class _AcceptingQueue(_Queue):
    packaged: list[Claim]

    def __init__(self) -> None:
        super().__init__()
        self.packaged = []

    def complete_items(self, results: list[tuple[Claim, ItemOutputs]]) -> list[bool]:
        self.recorded.extend(claim.idx for claim, _ in results)
        return [True] * len(results)

    def complete_package(self, claim: Claim, set_key: str, *, stored_bytes: int = 0) -> bool:
        self.packaged.append(claim)
        return True


class _MixedPipeline:
    """Answers claim 0 with a set (an outcome of another stage), claim 1 properly."""

    async def run(self, claim: Claim) -> Any:
        if claim.idx == 0:
            return PackageOutputs(set_key="sets/j.zip")
        return ItemOutputs(output_key=f"outputs/u/j/{claim.idx}_result.png")


def test_an_outcome_of_another_stage_is_not_recorded() -> None:
    """Each outcome records itself (``Outcome.record``); one that does not belong to its claim's
    stage is refused before it is recorded anywhere, and the worker goes on."""
    queue = _AcceptingQueue()

    worker = _run_until_recorded(queue, _MixedPipeline(), 1)
    assert queue.recorded == [1]
    assert queue.packaged == []  # a set no package claim produced is not recorded as one
    assert (worker.stats.done, worker.stats.dropped) == (1, 1)
