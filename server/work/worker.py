"""Pipeline workers: claim work from the queue, run it under a heartbeat, record the outcome.

In-process workers run inside ``make serve`` (``S3_WORKERS``); at scale, ``python -m stack.worker``
runs them as separate processes against the same database and object store. On SIGTERM a worker
stops claiming, gives its current item ``drain_s`` to finish, and otherwise returns it to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from server.config import Settings, heartbeat_for
from server.db.advisory import Leadership
from server.db.engine import Database, DatabaseUnavailable
from server.errors import InferenceUnavailable, StorageUnavailable
from server.item_records import StoredInstance
from server.service.settle import AnalysisOutputs, ItemOutputs, Outcome, PackageOutputs
from server.service.sweeper import sweep_if_leader
from server.storage.port import ObjectStore
from server.work import PermanentFailure
from server.work.queue import Claim

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
    WorkerService of a JobService replica (``server.work.remote_worker.ApiWorkSource``)."""

    fallback_s: float
    """How long an idle worker waits for a wake-up before it claims anyway."""

    @property
    def generation(self) -> int: ...

    async def wait_for_work(self, since: int, timeout_s: float) -> bool: ...

    def claim_batch(self, owner: str, n: int) -> list[Claim]: ...

    def heartbeat_batch(self, claims: Sequence[Claim]) -> set[Claim]: ...

    def complete_items(self, results: Sequence[tuple[Claim, ItemOutputs]]) -> list[bool]: ...

    def complete_analysis(
        self, claim: Claim, instances: Sequence[StoredInstance], *, stored_bytes: int = 0
    ) -> bool: ...

    def complete_package(self, claim: Claim, set_key: str, *, stored_bytes: int = 0) -> bool: ...

    def fail(self, claim: Claim, error: str, *, retryable: bool) -> None: ...

    def release(self, claim: Claim) -> None: ...


class ClaimRunner(Protocol):
    """What works on a claim: ``Pipeline``, or one built per claim from its lease."""

    async def run(self, claim: Claim) -> Outcome: ...


class Recorder:
    """Group commit of finished items: a claim batch's results are settled together, in one
    transaction (``WorkQueue.complete_items``), when the batch is through (``flush``) or a full
    batch is waiting; results that finish while a group is being recorded join the next one. With
    batches of one, every item is recorded at once. If a group fails (a violated constraint, such
    as the ledger's double-charge guard), its items are recorded one by one, so only the offending
    one is dropped."""

    def __init__(self, queue: WorkSource, stats: WorkerStats, name: str, group: int = 1) -> None:
        self._queue = queue
        self._stats = stats
        self._name = name
        self._group = group
        self._pending: list[tuple[Claim, ItemOutputs, asyncio.Future[bool]]] = []
        self._wake = asyncio.Event()
        self._closing = False

    def submit(self, claim: Claim, outputs: ItemOutputs) -> asyncio.Future[bool]:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((claim, outputs, done))
        if len(self._pending) >= self._group:
            self._wake.set()
        return done

    def flush(self) -> None:
        """Record what is waiting now (the claim batch is through)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            group, self._pending = self._pending, []
            if group:
                await self._record(group)
            elif self._closing:
                return

    async def close(self) -> None:
        self._closing = True
        self._wake.set()

    async def _record(self, group: list[tuple[Claim, ItemOutputs, asyncio.Future[bool]]]) -> None:
        results = [(claim, outputs) for claim, outputs, _ in group]
        try:
            recorded = await asyncio.to_thread(self._queue.complete_items, results)
        except Exception:
            if len(group) == 1:
                self._dropped(group[0][0])
                group[0][2].set_result(False)
                return
            for one in group:
                await self._record([one])
            return
        for (_, _, done), ok in zip(group, recorded, strict=True):
            if ok:
                self._stats.done += 1
            else:
                self._stats.dropped += 1
            done.set_result(ok)

    def _dropped(self, claim: Claim) -> None:
        # A bug, the database gone, or a violated constraint while recording: nothing was
        # committed, the lease runs out and the item is retried up to the dead letter.
        self._stats.dropped += 1
        log.exception("worker %s: %s/%d could not be recorded", self._name, claim.job_id, claim.idx)


class Worker:
    def __init__(
        self,
        queue: WorkSource,
        pipeline: ClaimRunner,
        *,
        name: str,
        lease_s: float,
        heartbeat_s: float | None = None,
        poll_s: float | None = None,
        drain_s: float = 20.0,
        batch: int = 1,
    ) -> None:
        self._queue = queue
        self._pipeline = pipeline
        self.name = name
        self._heartbeat_s = heartbeat_s if heartbeat_s is not None else heartbeat_for(lease_s)
        self._poll_s = poll_s if poll_s is not None else queue.fallback_s
        """The fallback: an idle worker is woken by committed work, and claims anyway this often."""
        self._drain_s = drain_s
        self._batch = batch
        self.stats = WorkerStats()

    async def run(self, stopping: asyncio.Event) -> None:
        log.info("worker %s started", self.name)
        recorder = Recorder(self._queue, self.stats, self.name, group=self._batch)
        recording = asyncio.create_task(recorder.run())
        try:
            while not stopping.is_set():
                seen = self._queue.generation
                try:
                    claims = await asyncio.to_thread(self._queue.claim_batch, self.name, self._batch)
                except DatabaseUnavailable:
                    log.warning("worker %s: database unavailable, retrying", self.name)
                    claims = []
                if not claims:
                    await self._idle(seen, stopping)
                    continue
                await self._process_batch(claims, stopping, recorder)
        finally:
            await recorder.close()
            await recording
        log.info("worker %s stopped: %s", self.name, self.stats)

    async def handle(self, claim: Claim, stopping: asyncio.Event) -> None:
        """Work on one claim under a heartbeat and record its outcome; never raises (a replica
        runs the package claims its remote workers' leases turn up through this)."""
        recorder = Recorder(self._queue, self.stats, self.name)
        recording = asyncio.create_task(recorder.run())
        try:
            await self._process_batch([claim], stopping, recorder)
        finally:
            await recorder.close()
            await recording

    async def _idle(self, seen: int, stopping: asyncio.Event) -> None:
        """Until work is committed somewhere (or the fallback timeout), or shutdown."""
        woken = asyncio.create_task(self._queue.wait_for_work(seen, self._poll_s))
        stop = asyncio.create_task(stopping.wait())
        try:
            await asyncio.wait({woken, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            stop.cancel()

    async def _process_batch(self, claims: list[Claim], stopping: asyncio.Event, recorder: Recorder) -> None:
        """Each claim in turn, under one heartbeat for every claim not yet recorded; on shutdown
        the claims not started go back to the queue."""
        held = {claim: asyncio.Event() for claim in claims}
        beat = asyncio.create_task(self._heartbeat(held))
        recording: list[asyncio.Future[bool]] = []
        try:
            for n, claim in enumerate(claims):
                if stopping.is_set():
                    for rest in claims[n:]:
                        await asyncio.to_thread(self._queue.release, rest)
                    log.info("%s: returned %d claims to the queue on shutdown", self.name, len(claims) - n)
                    break
                try:
                    await self._process(claim, held[claim], stopping, _Recording(self, claim, recorder, recording))
                except DatabaseUnavailable as e:
                    # The outcome could not be recorded (its transaction rolled back, nothing
                    # charged). The lease runs out and the work is claimed again.
                    self.stats.dropped += 1
                    log.warning("worker %s: %s/%d not recorded: %s", self.name, claim.job_id, claim.idx, e)
                except Exception:
                    self.stats.dropped += 1
                    log.exception("worker %s: %s/%d could not be recorded", self.name, claim.job_id, claim.idx)
            recorder.flush()
            if recording:  # the leases are kept alive until the group commit has them
                await asyncio.wait(recording)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await beat

    async def _process(self, claim: Claim, lost: asyncio.Event, stopping: asyncio.Event, sink: _Recording) -> None:
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
            await self._record(claim, work, sink)
        finally:
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

    async def _record(self, claim: Claim, work: asyncio.Task[Outcome], sink: _Recording) -> None:
        """Record the outcome (the outcome knows where: ``Outcome.record``), or the failure."""
        error = work.exception()
        if error is None:
            outcome = work.result()
            if outcome.stage != claim.stage:
                raise TypeError(f"a {claim.stage} claim produced {type(outcome).__name__}")
            await outcome.record(sink)
            return
        self.stats.failed += 1
        retryable = not isinstance(error, PermanentFailure)
        if isinstance(error, TRANSIENT):
            log.warning("%s: %s/%d attempt %d: %s", self.name, claim.job_id, claim.idx, claim.attempt, error)
        elif retryable:
            log.error("%s: %s/%d attempt %d failed", self.name, claim.job_id, claim.idx, claim.attempt, exc_info=error)
        message = getattr(error, "message", None) or str(error) or type(error).__name__
        await asyncio.to_thread(self._queue.fail, claim, message, retryable=retryable)

    def _count(self, recorded: bool) -> None:
        if recorded:
            self.stats.done += 1
        else:
            self.stats.dropped += 1

    async def _heartbeat(self, held: dict[Claim, asyncio.Event]) -> None:
        """Every ``heartbeat_s``, one heartbeat for every claim of the batch still held; a claim
        whose lease is gone gets its ``lost`` event set (its work is dropped)."""
        while True:
            await asyncio.sleep(self._heartbeat_s)
            live = [claim for claim, lost in held.items() if not lost.is_set()]
            if not live:
                return
            try:
                alive = await asyncio.to_thread(self._queue.heartbeat_batch, live)
            except DatabaseUnavailable:
                continue  # the leases may still hold; the next beat tries again
            for claim in live:
                if claim not in alive:
                    held[claim].set()


class _Recording:
    """Where one claim's outcome goes: an executed item into the batch's group commit (the batch
    waits for it before its leases are let go), an analysis or a set at once."""

    def __init__(self, worker: Worker, claim: Claim, recorder: Recorder, grouped: list[asyncio.Future[bool]]) -> None:
        self._worker = worker
        self._claim = claim
        self._recorder = recorder
        self._grouped = grouped

    async def items(self, outputs: ItemOutputs) -> None:
        self._grouped.append(self._recorder.submit(self._claim, outputs))

    async def analysis(self, outputs: AnalysisOutputs) -> None:
        complete = self._worker._queue.complete_analysis
        self._worker._count(
            await asyncio.to_thread(complete, self._claim, outputs.instances, stored_bytes=outputs.stored_bytes)
        )

    async def package(self, outputs: PackageOutputs) -> None:
        complete = self._worker._queue.complete_package
        self._worker._count(
            await asyncio.to_thread(complete, self._claim, outputs.set_key, stored_bytes=outputs.stored_bytes)
        )


async def sweep_forever(
    db: Database, store: ObjectStore, settings: Settings, stopping: asyncio.Event, leadership: Leadership
) -> None:
    """Every ``settings.sweeper.sweep_interval_s``: if this process leads, cancel and refund abandoned uploads,
    purge the objects of jobs past their retention and delete expired records; otherwise try to take
    the lead (its holder may have died)."""
    while not stopping.is_set():
        try:
            await asyncio.to_thread(sweep_if_leader, db, store, settings, leadership)
        except DatabaseUnavailable as e:
            log.warning("sweeper: %s", e)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), settings.sweeper.sweep_interval_s)
