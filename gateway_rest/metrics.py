"""The shim's Prometheus metrics: request counts and latencies per method, route template and
status, and ``GET /metrics`` in the text format (no envelope: Prometheus scrapes text, not JSON),
served by the operator app (``gateway_rest.operator``).

Every label value comes from a closed set (the known methods, the app's route templates, HTTP
statuses), never from the request's own text: otherwise each made-up method or path a client sends
would become a new series kept for the life of the process.

Each app gets its own registry (``create_app``), never the process-wide default one, so two apps in
one process (tests, the benchmark's side-by-side servers) count separately.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED_ROUTE = "<unmatched>"
"""The route label of paths no route knows: one series, however many random paths are probed."""
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
OTHER_METHOD = "OTHER"
"""The method label of any method outside ``KNOWN_METHODS``."""
# A REST call is a gRPC round trip plus JSON; event streams last until the job ends.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "s3_http_requests",
            "HTTP requests answered by the REST shim, by method, route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "s3_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by method, route template and status.",
            ("method", "route", "status"),
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route, str(status)).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else OTHER_METHOD


def route_template(scope: Scope) -> str:
    """``/jobs/{job_id}`` for ``/jobs/3f…``: the path of the app's route that matches, method aside."""
    app = scope.get("app")
    router = getattr(app, "router", None)
    for route in getattr(router, "routes", ()):
        match, _ = route.matches(scope)
        if match != Match.NONE:
            path: str = getattr(route, "path", UNMATCHED_ROUTE)
            return path
    return UNMATCHED_ROUTE


class MetricsMiddleware:
    """Counts and times every HTTP request once its status is known (errors and 404s included)."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            # 499: the client went away before an answer started (nginx's convention).
            elapsed = time.perf_counter() - started
            self.metrics.observe(method_label(scope["method"]), route_template(scope), status or 499, elapsed)


def metrics_endpoint(metrics: HttpMetrics) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return endpoint
