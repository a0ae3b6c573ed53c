"""Builds the gRPC server: JobService, AdminService, the standard health service and reflection.

The server is ``grpc.aio`` on an event loop of its own thread, so callers (``make serve``, tests,
tools) start and stop it from any thread without sharing a loop with it. Plain (synchronous)
handlers run in a bounded migration thread pool of ``max_workers`` threads; ``WatchJob`` streams run
on the loop and hold no thread however many are open.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from protos.s3.v1 import admin_pb2, admin_pb2_grpc, jobs_pb2, jobs_pb2_grpc, worker_pb2, worker_pb2_grpc
from server.db.notify import job_changes
from server.grpc_api.admin_servicer import AdminService
from server.grpc_api.guards import MAX_MESSAGE_BYTES, RequestGuard
from server.grpc_api.interceptors import DomainErrorInterceptor
from server.grpc_api.servicer import JobService
from server.grpc_api.watch import JobWatch, job_event
from server.grpc_api.worker_servicer import WorkerServicer
from server.metrics.rpc import RpcMetrics
from server.service.bundle import Services
from server.service.job_feed import JobFeeds
from server.service.job_views import progress_keys
from server.service.streams import StreamSlots

SERVICE_NAME = jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name
ADMIN_SERVICE_NAME = admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name
WORKER_SERVICE_NAME = worker_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name

# Threads that read watched jobs for every stream of the process (one read per change, not per stream).
FEED_READ_THREADS = 4
START_TIMEOUT_S = 30.0
KEEPALIVE_TIME_MS = 5_000
KEEPALIVE_TIMEOUT_MS = 5_000
"""Pings on idle connections: a worker host that vanished without closing its connection (power,
network) ends its Lease stream within about ten seconds, and its claims go back to the queue."""

T = TypeVar("T")


@dataclass
class GrpcServer:
    port: int
    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread
    _server: grpc.aio.Server
    _health: Any  # grpc_health's aio HealthServicer (untyped)
    _feeds: JobFeeds[jobs_pb2.JobEvent]
    _pools: tuple[ThreadPoolExecutor, ...]
    _workers: WorkerServicer | None = None
    _stopped: bool = field(default=False)

    def _call(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def start(self) -> None:
        self._call(self._start(), START_TIMEOUT_S)

    async def _start(self) -> None:
        await self._server.start()
        self._feeds.start()
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace_s: float) -> None:
        """Stop taking calls, let running ones finish within ``grace_s``, then cancel the rest."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._call(self._stop(grace_s))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=grace_s + 10)
            for pool in self._pools:
                pool.shutdown(wait=False, cancel_futures=True)

    async def _stop(self, grace_s: float) -> None:
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace_s)
        await self._feeds.close()
        if self._workers is not None:
            await self._workers.close()
        # Calls cut off by the grace period may still wait on the thread pool: end them here, so no
        # task is left pending when the loop closes.
        current = asyncio.current_task()
        left = [t for t in asyncio.all_tasks() if t is not current]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.close()


def build_grpc_server(
    services: Services,
    *,
    bind: str,
    max_workers: int = 32,
    metrics: RpcMetrics | None = None,
    workers: WorkerServicer | None = None,
) -> GrpcServer:
    """The server bound to ``bind`` (not started yet). ``max_workers``: threads for plain handlers.
    ``workers``: the WorkerService, where this process hands out work to remote workers."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=_run_loop, args=(loop,), name="grpc-loop", daemon=True)
    thread.start()
    try:
        return asyncio.run_coroutine_threadsafe(
            _build(services, bind, max_workers, metrics, workers, loop, thread), loop
        ).result(START_TIMEOUT_S)
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        raise


async def _build(
    services: Services,
    bind: str,
    max_workers: int,
    metrics: RpcMetrics | None,
    workers: WorkerServicer | None,
    loop: asyncio.AbstractEventLoop,
    thread: threading.Thread,
) -> GrpcServer:
    handlers = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc")
    feed_reads = ThreadPoolExecutor(max_workers=FEED_READ_THREADS, thread_name_prefix="watch")
    server = grpc.aio.server(
        migration_thread_pool=handlers,
        interceptors=[DomainErrorInterceptor(metrics, RequestGuard(services))],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
            ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
            ("grpc.keepalive_permit_without_calls", 1),
            # Workers ping as often (server.work.remote_worker): accepted, not answered with GOAWAY.
            ("grpc.http2.min_recv_ping_interval_without_data_ms", KEEPALIVE_TIME_MS - 1_000),
            ("grpc.http2.max_ping_strikes", 0),
        ],
    )
    db = services.db
    feeds: JobFeeds[jobs_pb2.JobEvent] = JobFeeds(
        read_job=services.jobs.get,
        read_keys=functools.partial(progress_keys, db),
        render=functools.partial(job_event, download_url=services.jobs.download_url),
        policy=services.streams,
        executor=feed_reads,
        notifications=functools.partial(job_changes, db.engine.url) if db.is_postgres else None,
    )
    watch = JobWatch(services.tokens, feeds, StreamSlots(services.streams), services.streams)
    jobs_pb2_grpc.add_JobServiceServicer_to_server(JobService(services, watch), server)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminService(services.admin, services.jobs), server)
    names = [SERVICE_NAME, ADMIN_SERVICE_NAME]
    if workers is not None:
        worker_pb2_grpc.add_WorkerServiceServicer_to_server(workers, server)
        names.append(WORKER_SERVICE_NAME)
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*names, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(bind)
    if port == 0:
        raise OSError(f"cannot bind the gRPC server to {bind}")
    return GrpcServer(port, loop, thread, server, health_servicer, feeds, (handlers, feed_reads), workers)
