"""Running the stack: the core (database, object store, SAM3 backend, services), the gRPC server,
the REST shim, in-process workers and the sweeper, with an orderly shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import uvicorn

from server.config import Settings, resolve_secrets
from server.db.advisory import Leadership
from server.db.engine import Database
from server.grpc_api.server import GrpcServer, build_grpc_server
from server.grpc_api.worker_servicer import WorkerServicer
from server.inference.factory import build_segmenter
from server.inference.port import Segmenter
from server.metrics import ServiceMetrics
from server.metrics.http import start_metrics_endpoint
from server.metrics.inference import TimedSegmenter
from server.pipeline import Pipeline
from server.service.bundle import Services
from server.service.health import Probe
from server.service.work_leases import WorkLeases
from server.storage.local import LocalObjectStore
from server.storage.port import ObjectStore
from server.work.queue import WorkQueue
from server.work.webhook_sender import WebhookSender
from server.work.worker import Worker, sweep_forever, worker_name
from stack.wiring import build_services, build_store, open_database

if TYPE_CHECKING:
    from gateway_rest.http_server import HttpLimits

log = logging.getLogger(__name__)

GRPC_GRACE_S = 5.0
OPERATOR_RPC_TIMEOUT_S = 10.0


class _HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: it re-raises a captured SIGTERM when ``serve()``
    returns, which would kill the process before the workers drain. ``serve`` owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Core:
    settings: Settings
    db: Database
    store: ObjectStore
    segmenter: Segmenter
    services: Services
    metrics: ServiceMetrics
    leadership: Leadership
    """Whether this process is the sweeper leader (on PostgreSQL, one process per database)."""


def _inference_probe(segmenter: Segmenter, loop: asyncio.AbstractEventLoop) -> Probe:
    def probe() -> str:
        # Health probes run on threads; the segmenter lives on the event loop.
        ready = asyncio.run_coroutine_threadsafe(segmenter.ready(), loop).result(timeout=3)
        if not ready:
            raise RuntimeError(f"{segmenter.info.name} is not ready")
        return segmenter.info.name + ("" if segmenter.info.meaningful else " (tiny random-weight model)")

    return probe


@contextlib.asynccontextmanager
async def open_core(settings: Settings) -> AsyncIterator[Core]:
    async with contextlib.AsyncExitStack() as stack:
        db = await asyncio.to_thread(open_database, settings)
        stack.callback(db.dispose)
        leadership = Leadership(db)
        stack.callback(leadership.close)
        store = await asyncio.to_thread(build_store, settings)
        metrics = ServiceMetrics.create(db, exports_state=_state_exporter(settings, leadership))
        segmenter: Segmenter = TimedSegmenter(await build_segmenter(settings, stack), metrics.inference)
        services = build_services(
            settings,
            db,
            store,
            extra_probes=[("inference", _inference_probe(segmenter, asyncio.get_running_loop()))],
            model=segmenter.info.name,
            model_meaningful=segmenter.info.meaningful,
        )
        yield Core(settings, db, store, segmenter, services, metrics, leadership)


def _state_exporter(settings: Settings, leadership: Leadership) -> Callable[[], bool]:
    if settings.observability.state_metrics == "leader":
        return lambda: leadership.is_leader
    always = settings.observability.state_metrics == "on"
    return lambda: always


def _workers(core: Core, count: int) -> list[Worker]:
    queue = WorkQueue(core.db, core.settings.queue)
    pipeline = Pipeline(core.db, core.store, core.segmenter, core.settings.photos)
    return [
        Worker(
            queue,
            pipeline,
            name=worker_name(n),
            lease_s=core.settings.queue.lease_s,
            heartbeat_s=core.settings.queue.effective_heartbeat_s,
            batch=core.settings.queue.claim_batch,
        )
        for n in range(count)
    ]


def _worker_service(core: Core) -> WorkerServicer:
    """The WorkerService of this replica. The package claims its streams turn up run here, through
    a worker of this process: packaging reads every item of a job (database and store)."""
    queue = WorkQueue(core.db, core.settings.queue)
    packager = Worker(
        queue,
        Pipeline(core.db, core.store, core.segmenter, core.settings.photos),
        name=f"{socket.gethostname()[:30]}:{os.getpid()}:package",
        lease_s=core.settings.queue.lease_s,
        heartbeat_s=core.settings.queue.effective_heartbeat_s,
    )
    never = asyncio.Event()  # package runs end with the gRPC server (WorkerServicer.close)
    return WorkerServicer(
        core.services.worker_auth,
        WorkLeases(core.db, core.store, queue, core.settings.inference),
        lambda claim: packager.handle(claim, never),
    )


async def _run_background(core: Core, count: int, stopping: asyncio.Event) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(w.run(stopping), name=w.name) for w in _workers(core, count)]
    tasks.append(asyncio.create_task(sweep_forever(core.db, core.store, core.settings, stopping, core.leadership)))
    # Webhooks go out from their own task and HTTP client: a slow receiver never holds a worker.
    sender = WebhookSender(core.db, core.settings.webhooks, name=f"{worker_name(0)}:webhooks")
    tasks.append(asyncio.create_task(sender.run(stopping), name=sender.name))
    return tasks


async def run_workers(stopping: asyncio.Event, *, count: int | None = None, settings: Settings | None = None) -> None:
    """Workers (and the sweeper) as their own process, until ``stopping`` is set."""
    settings = resolve_secrets(settings or Settings.from_env())
    n = settings.queue.workers if count is None else count
    async with open_core(settings) as core:
        tasks = await _run_background(core, max(n, 1), stopping)
        await stopping.wait()
        await asyncio.gather(*tasks, return_exceptions=True)


def _bind_operator(settings: Settings) -> socket.socket | None:
    """The operator surface's listening socket; None (logged) when the port is taken: users'
    requests matter more than metrics, as for the JobService's own metrics endpoint."""
    try:
        return socket.create_server((settings.operator.host, settings.operator.port), reuse_port=False)
    except OSError as e:
        log.error(
            "operator surface not started: cannot bind %s:%d: %s", settings.operator.host, settings.operator.port, e
        )
        return None


def _http_server(app: object, host: str, port: int, limits: HttpLimits) -> _HttpServer:
    from gateway_rest.http_server import uvicorn_config

    config = uvicorn_config(app, host=host, port=port, limits=limits, lifespan="on", log_config=None, access_log=False)
    return _HttpServer(config)


async def serve(settings: Settings) -> None:
    """``make serve``: everything in one process until SIGINT/SIGTERM."""
    from gateway_rest.app import create_app_from_settings
    from gateway_rest.http_server import HttpLimits
    from gateway_rest.metrics import HttpMetrics
    from gateway_rest.objects import object_routes
    from gateway_rest.operator import create_operator_app

    settings = resolve_secrets(settings)
    stopping = asyncio.Event()
    async with open_core(settings) as core:
        grpc_server: GrpcServer = build_grpc_server(
            core.services,
            bind=f"{settings.grpc.host}:{settings.grpc.port}",
            metrics=core.metrics.rpc,
            workers=_worker_service(core),
        )
        grpc_server.start()
        log.info("gRPC JobService on %s:%d", settings.grpc.host, grpc_server.port)
        metrics_endpoint = (
            start_metrics_endpoint(
                core.metrics.registry, host=settings.grpc.host, port=settings.observability.metrics_port
            )
            if settings.observability.metrics_port
            else None
        )
        tasks = await _run_background(core, settings.queue.workers, stopping)
        routes = object_routes(core.store) if isinstance(core.store, LocalObjectStore) else []
        http_metrics = HttpMetrics()
        app = create_app_from_settings(settings, object_routes=routes, metrics=http_metrics)
        limits = HttpLimits.from_config(settings.http)
        servers: list[tuple[_HttpServer, list[socket.socket] | None]] = [
            (_http_server(app, settings.http.host, settings.http.port, limits), None)
        ]
        operator_socket = _bind_operator(settings) if settings.operator.port else None
        if operator_socket is not None:
            operator = create_operator_app(
                grpc_target=settings.grpc.effective_target, metrics=http_metrics, rpc_timeout_s=OPERATOR_RPC_TIMEOUT_S
            )
            servers.append(
                (_http_server(operator, settings.operator.host, settings.operator.port, limits), [operator_socket])
            )
        loop = asyncio.get_running_loop()

        def stop_serving() -> None:
            for server, _ in servers:
                server.should_exit = True

        async def serve_until_stopped(server: _HttpServer, bound: list[socket.socket] | None) -> None:
            # Returns once a signal sets should_exit; when one server ends, the other ends too.
            try:
                await server.serve(sockets=bound)
            finally:
                stop_serving()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop_serving)
        log.info(
            "REST API on http://%s:%d (model %s%s)",
            settings.http.host,
            settings.http.port,
            core.segmenter.info.name,
            "" if core.segmenter.info.meaningful else ": tiny random-weight model, masks are not meaningful",
        )
        if operator_socket is not None:
            log.info(
                "operator surface on http://%s:%d (/metrics, /health)", settings.operator.host, settings.operator.port
            )
        try:
            await asyncio.gather(*(serve_until_stopped(server, bound) for server, bound in servers))
        finally:
            log.info("shutting down: draining workers")
            if operator_socket is not None:
                operator_socket.close()
            stopping.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(grpc_server.stop, GRPC_GRACE_S)
            if metrics_endpoint is not None:
                await asyncio.to_thread(metrics_endpoint.close)
    log.info("stopped")
