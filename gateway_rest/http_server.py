"""The REST shim's HTTP server: uvicorn's h11 protocol with the limits uvicorn lacks.

uvicorn closes an idle keep-alive connection, but it has no deadline for a request head (a
connection that never completes one stays open forever: slow-loris), none for a body (an upload
trickling one byte every few seconds holds its temp file open), and ``limit_concurrency`` answers 503
only once a request head has arrived, so idle connections are never refused. ``GuardedH11Protocol``
adds, per connection:

- a head deadline: a connection without a complete request head ``header_timeout_s`` after it
  opened (or after its previous response) is closed;
- a body deadline with a minimum rate, as Apache's mod_reqtimeout does it: the body must be complete
  ``body_timeout_s`` after the head, plus one second per ``body_min_rate_bytes_per_s`` bytes
  received, so a fast large upload is never cut and a trickle is;
- a connection cap: past ``max_connections`` open connections a new one is closed at once.

Closing mid-body reaches the app as a client disconnect, so a half-written upload is discarded
(``server.storage.local``). It builds on uvicorn's ``H11Protocol`` (``connection_made``,
``data_received``, ``connection_lost`` and the ``h11.Connection`` it keeps): the real-socket tests in
``tests/integration/test_http_limits.py`` fail if a uvicorn release changes that.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from server.config.sections import HttpConfig


@dataclass(frozen=True)
class HttpLimits:
    """A connection's deadlines and the connection cap; defaults are the settings' (``HttpConfig``)."""

    header_timeout_s: float = HttpConfig.header_timeout_s
    """A connection must deliver a complete request head within this time."""
    body_timeout_s: float = HttpConfig.body_timeout_s
    """Grace for a request body, extended by the bytes received at the minimum rate."""
    body_min_rate_bytes_per_s: int = HttpConfig.body_min_rate_bytes_per_s
    """Each this many bytes received extend the body deadline by one second."""
    max_connections: int = HttpConfig.max_connections
    """Open connections past which a new one is closed before a byte is read."""
    keep_alive_s: int = 5
    """Idle time after a response before uvicorn closes the connection."""

    def __post_init__(self) -> None:
        if min(self.header_timeout_s, self.body_timeout_s) <= 0:
            raise ValueError("HTTP timeouts must be positive")
        if min(self.body_min_rate_bytes_per_s, self.max_connections, self.keep_alive_s) < 1:
            raise ValueError("the HTTP body rate, connection cap and keep-alive must be at least 1")

    @classmethod
    def from_config(cls, http: HttpConfig) -> HttpLimits:
        return cls(http.header_timeout_s, http.body_timeout_s, http.body_min_rate_bytes_per_s, http.max_connections)


class GuardedH11Protocol(H11Protocol):
    """One per connection; ``limits`` is bound by ``guarded_protocol``."""

    limits: ClassVar[HttpLimits] = HttpLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_started = 0.0
        self._body_received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        if len(self.connections) > self.limits.max_connections:
            self.transport.close()
            return
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._track(len(data))

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next request's head is timed from here (uvicorn's keep-alive covers a silent client).
        if not self.transport.is_closing():
            self._arm_head_timer()

    # ------------------------------------------------------------------------------------ internals

    def _track(self, received: int) -> None:
        state = self.conn.their_state
        if state is h11.IDLE:
            if self._head_timer is None:
                self._arm_head_timer()
            return
        self._cancel_head_timer()
        if state is h11.SEND_BODY:
            if self._body_timer is None:
                self._body_started = time.monotonic()
                self._body_received = 0
                self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_check)
            self._body_received += received
        elif self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_expired)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_head_timer()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def _body_check(self) -> None:
        self._body_timer = None
        if self.conn.their_state is not h11.SEND_BODY or self.transport.is_closing():
            return
        deadline = self._body_started + self.limits.body_timeout_s
        deadline += self._body_received / self.limits.body_min_rate_bytes_per_s
        remaining = deadline - time.monotonic()
        # While uvicorn itself paused reading (the app is slow to take the body), the client is not to blame.
        if remaining > 0 or self.flow.read_paused:
            self._body_timer = self.loop.call_later(max(remaining, 1.0), self._body_check)
            return
        self.transport.close()


def guarded_protocol(limits: HttpLimits) -> type[GuardedH11Protocol]:
    """A protocol class bound to ``limits`` (uvicorn builds one instance per connection)."""
    return type("BoundGuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})


def uvicorn_config(app: Any, *, host: str, port: int, limits: HttpLimits, **options: Any) -> uvicorn.Config:
    """A uvicorn ``Config`` serving ``app`` with ``limits`` (``options``: any other uvicorn setting).

    ``proxy_headers`` is off unless asked for: uvicorn would otherwise believe X-Forwarded-For from
    127.0.0.1 on its own, and which proxies to believe is the app's decision.
    """
    options.setdefault("proxy_headers", False)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(limits),
        timeout_keep_alive=limits.keep_alive_s,
        **options,
    )
