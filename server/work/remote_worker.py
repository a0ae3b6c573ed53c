"""``python -m stack.worker --api HOST:PORT``: pipeline workers that reach only a JobService
replica's WorkerService and a Triton server; no database, no storage credentials.

One Lease stream per process hands out claims (``--workers`` at a time); each claim's pipeline reads
and writes objects through presigned URLs (``server.storage.presigned``) and reports its outcome to
the replica, which records it in the database. If the stream breaks (the replica died), the claims
of that stream are the replica's to give back; this process drops them and opens a new stream, to
the next address of ``--api`` when several are given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue as queues
import threading
from collections.abc import Sequence
from typing import Any

import grpc
import httpx

from protos.s3.v1 import worker_pb2, worker_pb2_grpc
from server.config import Settings
from server.errors import StorageUnavailable
from server.grpc_api.metadata_keys import WORKER_TOKEN_KEY
from server.grpc_api.worker_convert import claim_from_proto, claim_to_proto, outputs_to_json
from server.inference.factory import build_segmenter
from server.inference.port import Segmenter
from server.item_records import StoredInstance
from server.pipeline import Pipeline, Work
from server.service.settle import AnalysisOutputs, ItemOutputs, PackageOutputs
from server.storage.presigned import ObjectUrls, PresignedObjectStore
from server.work import item_from_json, job_from_json
from server.work.queue import Claim

log = logging.getLogger(__name__)

RECONNECT_S = 0.5
RPC_TIMEOUT_S = 30.0
CHANNEL_OPTIONS = (
    ("grpc.keepalive_time_ms", 5_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),  # keep pinging while a claim is worked on in silence
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    ("grpc.max_send_message_length", 8 * 1024 * 1024),
)
_LOST = (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND)


def _urls(msg: worker_pb2.ObjectUrls) -> ObjectUrls:
    return ObjectUrls(msg.key, msg.get_url, msg.put_url or None, dict(msg.put_headers))


class ApiWorkSource:
    """The ``WorkSource`` of ``server.work.worker.Worker`` over the WorkerService (synchronous: the
    worker calls it from threads)."""

    def __init__(self, targets: Sequence[str], token: str, *, name: str, capacity: int, poll_s: float = 0.25) -> None:
        if not targets:
            raise ValueError("at least one WorkerService address is needed")
        self._targets = list(targets)
        self._metadata = ((WORKER_TOKEN_KEY, token),)
        self._name = name
        self._capacity = capacity
        self._poll_s = poll_s
        self._ready: queues.Queue[worker_pb2.WorkLease] = queues.Queue()
        self._leases: dict[tuple[str, int, str], worker_pb2.WorkLease] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._channel: grpc.Channel | None = None
        self._stub: worker_pb2_grpc.WorkerServiceStub | None = None
        self._call: Any = None
        self._connected = threading.Event()
        self._reader = threading.Thread(target=self._read_leases, name="lease-stream", daemon=True)

    def start(self) -> None:
        self._reader.start()

    def close(self) -> None:
        """End the stream: the replica gives back whatever this process still holds."""
        self._closed.set()
        with self._lock:
            call, channel = self._call, self._channel
        if call is not None:
            call.cancel()
        self._reader.join(timeout=10)
        if channel is not None:
            channel.close()

    def _read_leases(self) -> None:
        turn = 0
        while not self._closed.is_set():
            target = self._targets[turn % len(self._targets)]
            turn += 1
            channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
            stub = worker_pb2_grpc.WorkerServiceStub(channel)
            call = stub.Lease(
                worker_pb2.LeaseRequest(worker_name=self._name, capacity=self._capacity), metadata=self._metadata
            )
            with self._lock:
                old = self._channel
                self._channel, self._stub, self._call = channel, stub, call
            if old is not None:
                old.close()
            try:
                for lease in call:
                    self._connected.set()
                    self._ready.put(lease)
            except grpc.RpcError as e:
                if not self._closed.is_set():
                    log.warning("lease stream to %s ended: %s %s", target, e.code(), e.details())
            self._forget_all()
            self._closed.wait(RECONNECT_S)

    def _forget_all(self) -> None:
        """The stream is gone, and with it every claim it handed out (the replica releases them)."""
        with self._lock:
            self._leases.clear()
        while True:
            try:
                self._ready.get_nowait()
            except queues.Empty:
                return

    def _stub_now(self) -> worker_pb2_grpc.WorkerServiceStub:
        with self._lock:
            stub = self._stub
        if stub is None:
            raise StorageUnavailable("not connected to a WorkerService")
        return stub

    def _lease(self, claim: Claim) -> worker_pb2.WorkLease | None:
        with self._lock:
            return self._leases.get((claim.job_id, claim.idx, claim.owner))

    # -- WorkSource -----------------------------------------------------------------------------
    fallback_s = 0.0
    """No wake-up to wait for: ``claim_batch`` itself waits up to ``poll_s`` on the lease stream."""

    @property
    def generation(self) -> int:
        return 0

    async def wait_for_work(self, since: int, timeout_s: float) -> bool:
        return True

    def claim_batch(self, owner: str, n: int) -> list[Claim]:
        """One claim (waiting up to ``poll_s`` for the stream), then whatever else is ready, up to ``n``."""
        first = self.claim(owner)
        if first is None:
            return []
        claims = [first]
        while len(claims) < n and not self._ready.empty():
            more = self.claim(owner)
            if more is None:
                break
            claims.append(more)
        return claims

    def heartbeat_batch(self, claims: Sequence[Claim]) -> set[Claim]:
        return {claim for claim in claims if self.heartbeat(claim)}

    def complete_items(self, results: Sequence[tuple[Claim, ItemOutputs]]) -> list[bool]:
        return [self.complete_item(claim, outputs) for claim, outputs in results]

    def claim(self, owner: str) -> Claim | None:
        try:
            lease = self._ready.get(timeout=self._poll_s)
        except queues.Empty:
            return None
        claim = claim_from_proto(lease.claim)
        with self._lock:
            self._leases[(claim.job_id, claim.idx, claim.owner)] = lease
        return claim

    def heartbeat(self, claim: Claim) -> bool:
        if self._lease(claim) is None:
            return False  # its stream ended: the replica gave it back
        try:
            return (
                self._stub_now().Heartbeat(claim_to_proto(claim), metadata=self._metadata, timeout=RPC_TIMEOUT_S).alive
            )
        except grpc.RpcError as e:
            return e.code() not in _LOST  # anything else is transient: the next beat tries again
        except StorageUnavailable:
            return True

    def _report(self, request: worker_pb2.ReportResultRequest, claim: Claim) -> bool:
        try:
            if self._lease(claim) is None:
                return False
            return self._stub_now().ReportResult(request, metadata=self._metadata, timeout=RPC_TIMEOUT_S).recorded
        finally:
            with self._lock:
                self._leases.pop((claim.job_id, claim.idx, claim.owner), None)

    def complete_item(self, claim: Claim, outputs: ItemOutputs) -> bool:
        msg = worker_pb2.ReportResultRequest(claim=claim_to_proto(claim), outputs_json=outputs_to_json(outputs))
        return self._report(msg, claim)

    def complete_analysis(self, claim: Claim, instances: Sequence[StoredInstance], *, stored_bytes: int = 0) -> bool:
        outputs = AnalysisOutputs(list(instances), stored_bytes)
        msg = worker_pb2.ReportResultRequest(claim=claim_to_proto(claim), outputs_json=outputs_to_json(outputs))
        return self._report(msg, claim)

    def complete_package(self, claim: Claim, set_key: str, *, stored_bytes: int = 0) -> bool:
        raise TypeError("packaging is not handed to workers behind the WorkerService")

    def fail(self, claim: Claim, error: str, *, retryable: bool) -> None:
        failure = worker_pb2.Failure(message=error, retryable=retryable)
        self._report(worker_pb2.ReportResultRequest(claim=claim_to_proto(claim), failure=failure), claim)

    def release(self, claim: Claim) -> None:
        """Shutdown: nothing to call; closing the stream (``close``) gives it back."""
        with self._lock:
            self._leases.pop((claim.job_id, claim.idx, claim.owner), None)

    # -- what a claim's pipeline needs ----------------------------------------------------------
    def work(self, claim: Claim) -> tuple[Work, list[ObjectUrls]]:
        lease = self._lease(claim)
        if lease is None:
            raise StorageUnavailable(f"the lease on {claim.job_id}/{claim.idx} is gone")
        work = Work.of(job_from_json(lease.job_json), item_from_json(lease.item_json))
        return work, [_urls(o) for o in lease.objects]

    def sign(self, claim: Claim, objects: Sequence[tuple[str, str | None]]) -> list[ObjectUrls]:
        request = worker_pb2.SignObjectsRequest(
            claim=claim_to_proto(claim),
            objects=[worker_pb2.ObjectToSign(key=k, content_type=t or "") for k, t in objects],
        )
        try:
            answer = self._stub_now().SignObjects(request, metadata=self._metadata, timeout=RPC_TIMEOUT_S)
        except grpc.RpcError as e:
            raise StorageUnavailable(f"signing {len(objects)} object URLs: {e.code()} {e.details()}") from e
        return [_urls(o) for o in answer.objects]

    def discard(self, claim: Claim, keys: Sequence[str]) -> None:
        request = worker_pb2.DiscardObjectsRequest(claim=claim_to_proto(claim), keys=list(keys))
        try:
            self._stub_now().DiscardObjects(request, metadata=self._metadata, timeout=RPC_TIMEOUT_S)
        except grpc.RpcError as e:
            raise StorageUnavailable(f"discarding {len(keys)} objects: {e.code()} {e.details()}") from e


class ApiPipeline:
    """The ``ClaimRunner`` of a worker behind the WorkerService: one ``Pipeline`` per claim, on
    the claim's snapshot and presigned URLs."""

    def __init__(self, source: ApiWorkSource, segmenter: Segmenter, settings: Settings, client: httpx.Client) -> None:
        self._source = source
        self._segmenter = segmenter
        self._settings = settings
        self._client = client

    async def run(self, claim: Claim) -> ItemOutputs | AnalysisOutputs | PackageOutputs:
        work, urls = self._source.work(claim)
        store = PresignedObjectStore(
            urls,
            sign=lambda objects: self._source.sign(claim, objects),
            discard=lambda keys: self._source.discard(claim, keys),
            client=self._client,
        )
        return await Pipeline(work, store, self._segmenter, self._settings.photos).run(claim)


async def run_api_workers(
    stopping: asyncio.Event, *, targets: Sequence[str], token: str, count: int, settings: Settings
) -> None:
    """``count`` workers on one Lease stream until ``stopping`` is set."""
    from server.work.worker import Worker, worker_name

    name = worker_name(0)[:40]
    source = ApiWorkSource(targets, token, name=name, capacity=count)
    async with contextlib.AsyncExitStack() as stack:
        segmenter = await build_segmenter(settings, stack)
        client = stack.enter_context(
            httpx.Client(timeout=settings.inference.inference_timeout_s, follow_redirects=False)
        )
        pipeline = ApiPipeline(source, segmenter, settings, client)
        workers = [
            Worker(
                source,
                pipeline,
                name=worker_name(n),
                lease_s=settings.queue.lease_s,
                heartbeat_s=settings.queue.effective_heartbeat_s,
            )
            for n in range(count)
        ]
        source.start()
        stack.callback(source.close)
        log.info("API workers %s x%d on %s", name, count, ",".join(targets))
        await asyncio.gather(*(w.run(stopping) for w in workers))
