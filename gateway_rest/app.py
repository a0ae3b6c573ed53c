"""The REST shim's application factory.

Middleware, outermost first: Starlette's last-resort error handler, CORS (when origins are set),
request metrics, the request context (request id, access log, 500 envelope), Starlette's exception
handlers, then the routes. The gRPC channel is opened by the lifespan, never at import time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway_rest.envelope import REQUEST_ID_HEADER
from gateway_rest.handlers import EXCEPTION_HANDLERS
from gateway_rest.metrics import HttpMetrics, MetricsMiddleware, metrics_endpoint
from gateway_rest.middleware import RequestContextMiddleware
from gateway_rest.openapi import openapi_document
from gateway_rest.prefer import PREFERENCE_APPLIED
from gateway_rest.routes import api_routes
from gateway_rest.rpc import open_backend
from server.config import Settings

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_RPC_TIMEOUT_S = 60.0
DEFAULT_SSE_KEEPALIVE_S = 15.0
DEFAULT_PREFER_WAIT_MAX_S = Settings.prefer_wait_max_s
DEFAULT_PREFER_POLL_S = 0.25

# Headers a browser may send cross-origin and read back. X-Callback-Secret is left out on purpose:
# it belongs to remote workers, never to a web page.
_CORS_REQUEST_HEADERS = ("Authorization", "Content-Type", "Prefer", REQUEST_ID_HEADER)


def create_app(
    *,
    grpc_target: str,
    cors_origins: Sequence[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    object_routes: Sequence[BaseRoute] = (),
    rpc_timeout_s: float = DEFAULT_RPC_TIMEOUT_S,
    sse_keepalive_s: float = DEFAULT_SSE_KEEPALIVE_S,
    metrics: HttpMetrics | None = None,
    prefer_wait_max_s: int = DEFAULT_PREFER_WAIT_MAX_S,
    prefer_poll_s: float = DEFAULT_PREFER_POLL_S,
) -> Starlette:
    """The REST shim in front of the JobService at ``grpc_target``.

    ``object_routes``: the local object store's presigned endpoints (``gateway_rest.objects``), when
    that store is in use. ``rpc_timeout_s``: deadline of each unary JobService call.
    ``sse_keepalive_s``: quiet time after which an event stream sends a keep-alive comment.
    ``metrics``: where request metrics go and ``GET /metrics`` reads (default: a new registry).
    ``prefer_wait_max_s``: the longest ``Prefer: wait=N`` honoured; ``prefer_poll_s``: how often a
    waiting request re-reads the job (``gateway_rest.prefer``).
    """
    if prefer_wait_max_s < 0 or prefer_poll_s <= 0:
        raise ValueError("prefer_wait_max_s must be >= 0 and prefer_poll_s positive")
    if max_body_bytes < 1:
        raise ValueError("max_body_bytes must be positive")
    document = openapi_document(with_objects=bool(object_routes))

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with open_backend(grpc_target, timeout_s=rpc_timeout_s) as backend:
            yield {"backend": backend}

    http_metrics = metrics if metrics is not None else HttpMetrics()
    middleware = [Middleware(MetricsMiddleware, metrics=http_metrics), Middleware(RequestContextMiddleware)]
    if cors_origins:
        middleware.insert(
            0,
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                allow_methods=["GET", "POST", "PUT", "DELETE"],
                allow_headers=list(_CORS_REQUEST_HEADERS),
                expose_headers=[REQUEST_ID_HEADER, PREFERENCE_APPLIED],
            ),
        )
    app = Starlette(
        routes=[
            *api_routes(),
            Route("/openapi.json", openapi, methods=["GET"], name="openapi"),
            Route("/metrics", metrics_endpoint(http_metrics), methods=["GET"], name="metrics"),
            *object_routes,
        ],
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    # A trailing-slash redirect would be the one answer without an envelope: /me/ is a 404 instead.
    app.router.redirect_slashes = False
    app.state.max_body_bytes = max_body_bytes
    app.state.sse_keepalive_s = sse_keepalive_s
    app.state.prefer_wait_max_s = prefer_wait_max_s
    app.state.prefer_poll_s = prefer_poll_s
    app.state.metrics = http_metrics
    return app


def create_app_from_settings(settings: Settings, *, object_routes: Sequence[BaseRoute] = ()) -> Starlette:
    return create_app(
        grpc_target=settings.effective_grpc_target,
        cors_origins=settings.cors_origins,
        max_body_bytes=settings.max_body_bytes,
        object_routes=object_routes,
        prefer_wait_max_s=settings.prefer_wait_max_s,
    )
