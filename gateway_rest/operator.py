"""The operator surface of the REST shim: ``GET /metrics`` and the detailed ``GET /health``.

Served on its own address (``S3_OPERATOR_HOST``/``S3_OPERATOR_PORT``, loopback by default), never on
the public port: request counts, latencies, component details and the model in use say more about
the service than its users need to know, and a scrape must not compete with users' requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway_rest import envelope
from gateway_rest.codec import encode
from gateway_rest.handlers import EXCEPTION_HANDLERS
from gateway_rest.metrics import HttpMetrics, metrics_endpoint
from gateway_rest.middleware import RequestContextMiddleware
from gateway_rest.routes import health_failure_code
from gateway_rest.rpc import backend, open_backend, unary
from protos.s3.v1 import jobs_pb2 as jpb


async def detailed_health(request: Request) -> Response:
    """``{ok, components: {name: {ok, detail}}, model, model_meaningful}``; 503 when not ready."""
    report = await unary(request, backend(request).stub.GetHealth, jpb.GetHealthRequest())
    data = encode(report)
    if report.ok:
        return envelope.success(request, data)
    down = [c.name for c in report.components if not c.ok]
    message = f"not ready: {', '.join(down)} down" if down else "not ready"
    # The one error envelope that carries data: monitors need to see which component is down.
    return envelope.failure(request, code=health_failure_code(report), message=message, status_code=503, data=data)


def create_operator_app(*, grpc_target: str, metrics: HttpMetrics, rpc_timeout_s: float) -> Starlette:
    """``metrics``: the public app's registry (``create_app(metrics=...)``), exposed here."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with open_backend(grpc_target, timeout_s=rpc_timeout_s) as opened:
            yield {"backend": opened}

    app = Starlette(
        routes=[
            Route("/health", detailed_health, methods=["GET"], name="operator_health"),
            Route("/metrics", metrics_endpoint(metrics), methods=["GET"], name="operator_metrics"),
        ],
        middleware=[Middleware(RequestContextMiddleware)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False
    return app
