"""Pipeline workers: claim work from the queue, run it under a heartbeat, record the outcome.

In-process workers run inside ``make serve`` (``S3_WORKERS``); at scale, ``python -m server.worker``
runs them as separate processes against the same database and object store. On SIGTERM a worker
stops claiming, gives its current item ``drain_s`` to finish, and otherwise returns it to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from server.config import Settings, heartbeat_for
from server.db.advisory import Leadership
from server.db.engine import Database, DatabaseUnavailable
from server.errors import InferenceUnavailable, StorageUnavailable
from server.pipeline import PermanentFailure
from server.queue import Claim
from server.service.settle import AnalysisOutputs, ItemOutputs, PackageOutputs
from server.service.sweeper import sweep_if_leader
from server.storage.port import ObjectStore

log = logging.getLogger(__name__)

TRANSIENT = (InferenceUnavailable, StorageUnavailable, DatabaseUnavailable, OSError, TimeoutError)


def worker_name(n: int) -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{n}"


@dataclass
class WorkerStats:
    done: int = 0
    failed: int = 0
    dropped: int = 0


class WorkSource(Protocol):
    """Where a worker gets claims and records outcomes: the database queue (``WorkQueue``), or the
    WorkerService of a JobService replica (``server.remote_worker.ApiWorkSource``)."""

    def claim(self, owner: str) -> Claim | None: ...

    def heartbeat(self, claim: Claim) -> bool: ...

    def complete_item(self, claim: Claim, outputs: ItemOutputs) -> bool: ...

    def complete_analysis(
        self, claim: Claim, instances: Sequence[Mapping[str, Any]], *, stored_bytes: int = 0
    ) -> bool: ...

    def complete_package(self, claim: Claim, set_key: str, *, stored_bytes: int = 0) -> bool: ...

    def fail(self, claim: Claim, error: str, *, retryable: bool) -> None: ...

    def release(self, claim: Claim) -> None: ...


class ClaimRunner(Protocol):
    """What works on a claim: ``Pipeline``, or one built per claim from its lease."""

    async def run(self, claim: Claim) -> ItemOutputs | AnalysisOutputs | PackageOutputs: ...


class Worker:
    def __init__(
        self,
        queue: WorkSource,
        pipeline: ClaimRunner,
        *,
        name: str,
        lease_s: float,
        heartbeat_s: float | None = None,
        poll_s: float = 0.25,
        drain_s: float = 20.0,
    ) -> None:
        self._queue = queue
        self._pipeline = pipeline
        self.name = name
        self._heartbeat_s = heartbeat_s if heartbeat_s is not None else heartbeat_for(lease_s)
        self._poll_s = poll_s
        self._drain_s = drain_s
        self.stats = WorkerStats()

    async def run(self, stopping: asyncio.Event) -> None:
        log.info("worker %s started", self.name)
        while not stopping.is_set():
            try:
                claim = await asyncio.to_thread(self._queue.claim, self.name)
            except DatabaseUnavailable:
                log.warning("worker %s: database unavailable, retrying", self.name)
                claim = None
            if claim is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self._poll_s)
                continue
            await self.handle(claim, stopping)
        log.info("worker %s stopped: %s", self.name, self.stats)

    async def handle(self, claim: Claim, stopping: asyncio.Event) -> None:
        """Work on one claim under a heartbeat and record its outcome; never raises (a replica
        runs the package claims its remote workers' leases turn up through this too)."""
        try:
            await self._process(claim, stopping)
        except DatabaseUnavailable as e:
            # The outcome could not be recorded (its transaction rolled back, nothing charged).
            # The lease runs out and the work is claimed again; this worker carries on.
            self.stats.dropped += 1
            log.warning("worker %s: %s/%d not recorded: %s", self.name, claim.job_id, claim.idx, e)
        except Exception:
            # A bug or a violated database constraint (the ledger's double-charge guard) while
            # recording: nothing was committed, the lease runs out and the item is retried up
            # to the dead letter. The worker itself must keep serving the queue.
            self.stats.dropped += 1
            log.exception("worker %s: %s/%d could not be recorded", self.name, claim.job_id, claim.idx)

    async def _process(self, claim: Claim, stopping: asyncio.Event) -> None:
        lost = asyncio.Event()
        beat = asyncio.create_task(self._heartbeat(claim, lost))
        work = asyncio.create_task(self._pipeline.run(claim))
        try:
            await self._wait(work, lost, stopping)
            if lost.is_set() and not work.done():
                work.cancel()
                self.stats.dropped += 1
                log.info("%s: lease on %s/%d lost, work dropped", self.name, claim.job_id, claim.idx)
                return
            if not work.done():  # shutting down and the drain time ran out
                work.cancel()
                await asyncio.to_thread(self._queue.release, claim)
                log.info("%s: returned %s/%d to the queue on shutdown", self.name, claim.job_id, claim.idx)
                return
            await self._record(claim, work)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await beat
            if not work.done():
                work.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work

    async def _wait(self, work: asyncio.Task[object], lost: asyncio.Event, stopping: asyncio.Event) -> None:
        lost_wait = asyncio.create_task(lost.wait())
        stop_wait = asyncio.create_task(stopping.wait())
        try:
            await asyncio.wait({work, lost_wait, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if stopping.is_set() and not work.done() and not lost.is_set():
                await asyncio.wait({work, lost_wait}, timeout=self._drain_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost_wait.cancel()
            stop_wait.cancel()

    async def _record(self, claim: Claim, work: asyncio.Task[object]) -> None:
        error = work.exception()
        if error is None:
            result = work.result()
            if claim.stage == "execute" and isinstance(result, ItemOutputs):
                recorded = await asyncio.to_thread(self._queue.complete_item, claim, result)
            elif claim.stage == "analyze" and isinstance(result, AnalysisOutputs):
                recorded = await asyncio.to_thread(
                    self._queue.complete_analysis, claim, result.instances, stored_bytes=result.stored_bytes
                )
            elif claim.stage == "package" and isinstance(result, PackageOutputs):
                recorded = await asyncio.to_thread(
                    self._queue.complete_package, claim, result.set_key, stored_bytes=result.stored_bytes
                )
            else:
                raise TypeError(f"unexpected {claim.stage} result {type(result).__name__}")
            if recorded:
                self.stats.done += 1
            else:
                self.stats.dropped += 1
            return
        self.stats.failed += 1
        retryable = not isinstance(error, PermanentFailure)
        if isinstance(error, TRANSIENT):
            log.warning("%s: %s/%d attempt %d: %s", self.name, claim.job_id, claim.idx, claim.attempt, error)
        elif retryable:
            log.error("%s: %s/%d attempt %d failed", self.name, claim.job_id, claim.idx, claim.attempt, exc_info=error)
        message = getattr(error, "message", None) or str(error) or type(error).__name__
        await asyncio.to_thread(self._queue.fail, claim, message, retryable=retryable)

    async def _heartbeat(self, claim: Claim, lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            try:
                alive = await asyncio.to_thread(self._queue.heartbeat, claim)
            except DatabaseUnavailable:
                continue  # the lease may still hold; the next beat tries again
            if not alive:
                lost.set()
                return


async def sweep_forever(
    db: Database, store: ObjectStore, settings: Settings, stopping: asyncio.Event, leadership: Leadership
) -> None:
    """Every ``settings.sweep_interval_s``: if this process leads, cancel and refund abandoned uploads,
    purge the objects of jobs past their retention and delete expired records; otherwise try to take
    the lead (its holder may have died)."""
    while not stopping.is_set():
        try:
            await asyncio.to_thread(sweep_if_leader, db, store, settings, leadership)
        except DatabaseUnavailable as e:
            log.warning("sweeper: %s", e)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), settings.sweep_interval_s)
