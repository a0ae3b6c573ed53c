"""The WorkerService edge: remote workers lease work over a stream, heartbeat, sign object URLs and
report results; ``server.service.work_leases`` does the work, this decodes, calls and encodes.

Each Lease stream is a session: its claims carry one lease owner, and the stream hands out at most
``capacity`` unreported claims at a time. When the stream ends, however it ends (the worker's
process died and its connection closed, a network cut found by keepalive, the worker shut down),
every claim it still holds goes back to the queue at once: a dead worker's items are retried in
about a second rather than after a lease. A report arriving after that finds its lease gone and is
refused (``recorded: false``), so an item is never charged twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from protos.s3.v1 import worker_pb2, worker_pb2_grpc
from server.errors import ValidationFailed
from server.grpc_api.interceptors import metadata_value
from server.grpc_api.metadata_keys import WORKER_TOKEN_KEY
from server.grpc_api.worker_convert import claim_from_proto, claim_to_proto, outputs_from_json
from server.service.work_leases import SignedObject, WorkLeases
from server.service.worker_auth import WorkerAuth
from server.work import to_json
from server.work.queue import Claim

log = logging.getLogger(__name__)

MAX_CAPACITY = 64
MAX_NAME_CHARS = 40

Context = grpc.aio.ServicerContext[Any, Any]


@dataclass(eq=False)
class LeaseSession:
    """One Lease stream: its owner name and the claims it handed out and not yet had reported."""

    owner: str
    capacity: int
    held: dict[tuple[str, str, int], Claim] = field(default_factory=dict)
    room: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False

    def hold(self, claim: Claim) -> None:
        self.held[_ident(claim)] = claim
        if len(self.held) >= self.capacity:
            self.room.clear()

    def reported(self, claim: Claim) -> None:
        if self.held.pop(_ident(claim), None) is not None:
            self.room.set()


def _ident(claim: Claim) -> tuple[str, str, int]:
    return (claim.stage, claim.job_id, claim.idx)


def _urls(signed: SignedObject) -> worker_pb2.ObjectUrls:
    msg = worker_pb2.ObjectUrls(key=signed.key, get_url=signed.get_url)
    if signed.put is not None:
        msg.put_url = signed.put.url
        msg.put_headers.update(signed.put.headers)
    return msg


class WorkerServicer(worker_pb2_grpc.WorkerServiceServicer):
    def __init__(self, auth: WorkerAuth, leases: WorkLeases, package: Callable[[Claim], Awaitable[None]]) -> None:
        self._auth = auth
        self._leases = leases
        self._package = package
        self._sessions: dict[str, LeaseSession] = {}
        self._background: set[asyncio.Task[None]] = set()

    def _authenticate(self, context: Context) -> None:
        self._auth.authenticate(metadata_value(context, WORKER_TOKEN_KEY))

    # -- the stream -----------------------------------------------------------------------------
    async def Lease(self, request: worker_pb2.LeaseRequest, context: Context) -> AsyncIterator[worker_pb2.WorkLease]:
        self._authenticate(context)
        name = request.worker_name
        if not 0 < len(name) <= MAX_NAME_CHARS or not name.isprintable():
            raise ValidationFailed(f"worker_name: 1..{MAX_NAME_CHARS} printable characters", field="worker_name")
        if not 1 <= request.capacity <= MAX_CAPACITY:
            raise ValidationFailed(f"capacity: must be within 1..{MAX_CAPACITY}", field="capacity")
        session = LeaseSession(owner=f"api:{name}:{uuid.uuid4().hex[:12]}", capacity=request.capacity)
        session.room.set()
        self._sessions[session.owner] = session
        # However the call ends, even if this generator is never resumed again.
        context.add_done_callback(lambda _ctx: self._spawn(self._close(session)))  # type: ignore[arg-type]
        log.info("worker stream %s opened (capacity %d)", session.owner, session.capacity)
        try:
            while True:
                await session.room.wait()
                seen = self._leases.generation
                got = await asyncio.to_thread(self._leases.claim, session.owner)
                if got is None:
                    # Woken by committed work (NOTIFY on PostgreSQL), not by polling: idle streams
                    # cost the database nothing but the queue's fallback claim.
                    await self._leases.wait_for_work(seen)
                    continue
                if isinstance(got, Claim):  # packaging: this replica runs it
                    self._spawn(self._package(got))
                    continue
                if session.closed:  # the call ended while the claim was taken
                    await asyncio.to_thread(self._leases.release, got.claim)
                    return
                session.hold(got.claim)
                yield worker_pb2.WorkLease(
                    claim=claim_to_proto(got.claim),
                    job_json=to_json(got.job),
                    item_json=to_json(got.item),
                    objects=[_urls(o) for o in got.reads],
                )
        finally:
            await self._close(session)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _close(self, session: LeaseSession) -> None:
        if session.closed:
            return
        session.closed = True
        self._sessions.pop(session.owner, None)
        held = list(session.held.values())
        session.held.clear()
        for claim in held:
            try:
                await asyncio.to_thread(self._leases.release, claim)
            except Exception:  # the lease then runs out on its own
                log.exception("could not release %s/%d of %s", claim.job_id, claim.idx, session.owner)
        log.info("worker stream %s ended: %d unreported claims released", session.owner, len(held))

    def _reported(self, claim: Claim) -> None:
        session = self._sessions.get(claim.owner)
        if session is not None:
            session.reported(claim)

    # -- calls about one claim ------------------------------------------------------------------
    async def Heartbeat(self, request: worker_pb2.WorkClaim, context: Context) -> worker_pb2.HeartbeatResponse:
        self._authenticate(context)
        claim = claim_from_proto(request)
        return worker_pb2.HeartbeatResponse(alive=await asyncio.to_thread(self._leases.heartbeat, claim))

    async def SignObjects(
        self, request: worker_pb2.SignObjectsRequest, context: Context
    ) -> worker_pb2.SignObjectsResponse:
        self._authenticate(context)
        claim = claim_from_proto(request.claim)
        wanted = [(o.key, o.content_type or None) for o in request.objects]
        signed = await asyncio.to_thread(self._leases.sign, claim, wanted)
        return worker_pb2.SignObjectsResponse(objects=[_urls(o) for o in signed])

    async def DiscardObjects(
        self, request: worker_pb2.DiscardObjectsRequest, context: Context
    ) -> worker_pb2.DiscardObjectsResponse:
        self._authenticate(context)
        await asyncio.to_thread(self._leases.discard, claim_from_proto(request.claim), list(request.keys))
        return worker_pb2.DiscardObjectsResponse()

    async def ReportResult(
        self, request: worker_pb2.ReportResultRequest, context: Context
    ) -> worker_pb2.ReportResultResponse:
        self._authenticate(context)
        claim = claim_from_proto(request.claim)
        try:
            if request.WhichOneof("outcome") == "outputs_json":
                outputs = outputs_from_json(claim.stage, request.outputs_json)
                recorded = await asyncio.to_thread(self._leases.report, claim, outputs)
            elif request.WhichOneof("outcome") == "failure":
                failure = request.failure
                recorded = await asyncio.to_thread(
                    self._leases.fail, claim, failure.message or "failed", retryable=failure.retryable
                )
            else:
                raise ValidationFailed("outcome: outputs_json or failure is required", field="outcome")
        finally:
            self._reported(claim)
        return worker_pb2.ReportResultResponse(recorded=recorded)

    async def close(self) -> None:
        """Server shutdown: end the package runs still going (their leases run out on their own)."""
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
