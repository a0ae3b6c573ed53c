"""The rate limiter at the edge: every HTTP request is counted before anything else reads it.

It sits outside the request-context middleware so that every answer passes back through it and
carries the RateLimit headers, the last-resort 500 included. A refused request is answered here, as a
429 RATE_LIMITED envelope with ``Retry-After``: it is counted in the metrics (outside) but not
access-logged (inside), so that a flood does not become a flood of log lines too.

The limiter itself is opened by the app's lifespan (its Redis connections belong to the serving event
loop) and found in the scope's state, like the JobService channel.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway_rest import envelope
from gateway_rest.client_address import FORWARDED_FOR_HEADER
from gateway_rest.errors import HTTP_STATUS
from gateway_rest.rate_limits import RateLimitConfig, RateLimiter, UserOf, buckets_for

LIMITER_STATE_KEY = "rate_limiter"

RATE_LIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy", "Retry-After")
"""Every header this middleware may set (CORS exposes them to the web app)."""


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, *, config: RateLimitConfig, user_of: UserOf) -> None:
        self.app = app
        self.config = config
        self.user_of = user_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limiter = scope.get("state", {}).get(LIMITER_STATE_KEY)
        assert isinstance(limiter, RateLimiter), "the app's lifespan did not open the rate limiter"
        conn = HTTPConnection(scope)
        peer = scope["client"][0] if scope.get("client") else ""
        client = self.config.trusted_proxies.client_of(peer, conn.headers.get(FORWARDED_FOR_HEADER))
        user_id = self.user_of(conn.headers.get("authorization"))
        verdict = await limiter.check(buckets_for(self.config, scope["method"], scope["path"], client, user_id))
        if verdict is None:  # the store is down: let the request through, unlabelled (logged by the limiter)
            await self.app(scope, receive, send)
            return
        headers = verdict.headers()
        if not verdict.allowed:
            response = envelope.failure(
                conn,
                code="RATE_LIMITED",
                message=f"too many requests: at most {verdict.limit} per {verdict.window_s} s; "
                f"retry after {verdict.retry_after_s} s",
                status_code=HTTP_STATUS["RATE_LIMITED"],
                headers=headers,
            )
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                for name, value in headers.items():
                    out.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
