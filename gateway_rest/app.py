"""The REST shim's application factory.

Middleware, outermost first: Starlette's last-resort error handler, CORS (when origins are set),
request metrics, the rate limiter (RateLimit headers on every answer, 429 for a full bucket), the
request context (request id, access log, 500 envelope), Starlette's exception handlers, then the
routes. The gRPC channel and the rate limiter's store are opened by the lifespan, never at import time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway_rest.credentials import EdgeCredentials
from gateway_rest.envelope import REQUEST_ID_HEADER
from gateway_rest.handlers import EXCEPTION_HANDLERS
from gateway_rest.metrics import HttpMetrics, MetricsMiddleware
from gateway_rest.middleware import RequestContextMiddleware
from gateway_rest.openapi import openapi_document
from gateway_rest.playground import playground_routes
from gateway_rest.prefer import PREFERENCE_APPLIED
from gateway_rest.rate_limit_middleware import LIMITER_STATE_KEY, RATE_LIMIT_HEADERS, RateLimitMiddleware
from gateway_rest.rate_limits import RateLimitConfig, UserOf, no_user, open_rate_limiter
from gateway_rest.routes import api_routes
from gateway_rest.rpc import IDEMPOTENCY_KEY_HEADER, REPLAYED_HEADER, open_backend
from server.config import Settings
from server.config.sections import GatewayConfig
from server.errors import S3Error
from server.service.tokens import TokenService

DEFAULT_MAX_BODY_BYTES = GatewayConfig.max_body_bytes
DEFAULT_RPC_TIMEOUT_S = 60.0
DEFAULT_SSE_KEEPALIVE_S = 15.0
DEFAULT_RATE_LIMITS = RateLimitConfig()
DEFAULT_PREFER_WAIT_MAX_S = GatewayConfig.prefer_wait_max_s
DEFAULT_PREFER_POLL_S = 0.25

# Headers a browser may send cross-origin and read back. X-Callback-Secret is left out on purpose:
# it belongs to remote workers, never to a web page.
_CORS_REQUEST_HEADERS = ("Authorization", "Content-Type", "Prefer", REQUEST_ID_HEADER, IDEMPOTENCY_KEY_HEADER)


def create_app(
    *,
    grpc_target: str,
    cors_origins: Sequence[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    object_routes: Sequence[BaseRoute] = (),
    rpc_timeout_s: float = DEFAULT_RPC_TIMEOUT_S,
    sse_keepalive_s: float = DEFAULT_SSE_KEEPALIVE_S,
    metrics: HttpMetrics | None = None,
    credentials: EdgeCredentials | None = None,
    rate_limits: RateLimitConfig | None = DEFAULT_RATE_LIMITS,
    user_of: UserOf = no_user,
    playground_path: str | None = None,
    prefer_wait_max_s: int = DEFAULT_PREFER_WAIT_MAX_S,
    prefer_poll_s: float = DEFAULT_PREFER_POLL_S,
) -> Starlette:
    """The REST shim in front of the JobService at ``grpc_target``.

    ``object_routes``: the local object store's presigned endpoints (``gateway_rest.objects``), when
    that store is in use. ``rpc_timeout_s``: deadline of each unary JobService call.
    ``sse_keepalive_s``: quiet time after which an event stream sends a keep-alive comment.
    ``metrics``: where request metrics go (default: a new registry); the operator app
    (``gateway_rest.operator``) serves them, this app does not.
    ``credentials``: checked by the shim before a body is read (``gateway_rest.credentials``);
    ``None`` leaves every check to the JobService, for tests whose fake JobService takes any token.
    ``rate_limits``: the limits every request is counted against (None: no limits, no headers);
    ``user_of``: the user id of a request's verified token, for the per-user bucket.
    ``playground_path``: serve the web playground there (``gateway_rest.playground``); None = off.
    ``prefer_wait_max_s``: the longest ``Prefer: wait=N`` honoured; ``prefer_poll_s``: how often a
    waiting request re-reads the job (``gateway_rest.prefer``).
    """
    if prefer_wait_max_s < 0 or prefer_poll_s <= 0:
        raise ValueError("prefer_wait_max_s must be >= 0 and prefer_poll_s positive")
    if max_body_bytes < 1:
        raise ValueError("max_body_bytes must be positive")
    document = openapi_document(with_objects=bool(object_routes), max_body_bytes=max_body_bytes)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            state: dict[str, Any] = {
                "backend": await stack.enter_async_context(open_backend(grpc_target, timeout_s=rpc_timeout_s))
            }
            if rate_limits is not None:
                state[LIMITER_STATE_KEY] = await stack.enter_async_context(
                    open_rate_limiter(rate_limits.limits.storage_url)
                )
            yield state

    http_metrics = metrics if metrics is not None else HttpMetrics()
    middleware = [Middleware(MetricsMiddleware, metrics=http_metrics), Middleware(RequestContextMiddleware)]
    if rate_limits is not None:
        middleware.insert(1, Middleware(RateLimitMiddleware, config=rate_limits, user_of=user_of))
    if cors_origins:
        middleware.insert(
            0,
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                allow_methods=["GET", "POST", "PUT", "DELETE"],
                allow_headers=list(_CORS_REQUEST_HEADERS),
                expose_headers=[REQUEST_ID_HEADER, REPLAYED_HEADER, PREFERENCE_APPLIED, *RATE_LIMIT_HEADERS],
            ),
        )
    app = Starlette(
        routes=[
            *api_routes(),
            Route("/openapi.json", openapi, methods=["GET"], name="openapi"),
            *object_routes,
            *(playground_routes(playground_path) if playground_path else []),
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
    app.state.credentials = credentials
    return app


def verified_user(tokens: TokenService) -> UserOf:
    """The per-user bucket's key: the subject of a token that verifies, never of an unchecked one
    (anyone could name another user in an unsigned token and spend their budget)."""

    def user_of(authorization: str | None) -> str | None:
        if not authorization:
            return None
        try:
            return tokens.user_from_authorization(authorization)
        except S3Error:
            return None

    return user_of


def create_app_from_settings(
    settings: Settings, *, object_routes: Sequence[BaseRoute] = (), metrics: HttpMetrics | None = None
) -> Starlette:
    """The shim as ``make serve`` runs it; ``settings`` has its secrets resolved."""
    credentials = EdgeCredentials.from_config(settings.auth)
    return create_app(
        grpc_target=settings.grpc.effective_target,
        cors_origins=settings.gateway.cors_origins,
        max_body_bytes=settings.gateway.max_body_bytes,
        object_routes=object_routes,
        metrics=metrics,
        credentials=credentials,
        rate_limits=RateLimitConfig.from_settings(settings) if settings.rate_limits.enabled else None,
        user_of=verified_user(credentials.tokens),
        playground_path=settings.gateway.playground_path,
        prefer_wait_max_s=settings.gateway.prefer_wait_max_s,
    )
