"""Rate limits: which buckets a request is counted in, and the counters behind them.

Every request is counted in its client address's bucket, a request with a valid token also in its
user's bucket, and a sign-up (``POST /auth/anon``) also in the address's sign-up bucket and the one
global sign-up bucket. The counters are the ``limits`` library's sliding-window counters, in this
process (``memory://``, right for one process: ``make serve`` and ``make demo`` run one REST shim) or
in Redis (``redis://``), where every replica of the shim counts against the same numbers.

A request is refused when any of its buckets is full; the headers describe the bucket closest to
being full (the IETF RateLimit header fields: ``RateLimit-Limit``, ``-Remaining``, ``-Reset``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import redis.asyncio
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError

from gateway_rest.client_address import TrustedProxies
from server.config import RateLimit, Settings
from server.config.sections import RateLimitsConfig

log = logging.getLogger("s3.rest.ratelimit")

SIGNUP_ROUTE = ("POST", "/auth/anon")
# A limiter that cannot reach its store must not hang every request: a Redis round trip takes well
# under a millisecond, so a quarter second means the store is gone.
STORE_TIMEOUT_S = 0.25
# While the store is unreachable, one warning per this many seconds rather than one per request.
STORE_WARNING_INTERVAL_S = 10.0
KEY_PREFIX = "s3-ratelimit"

UserOf = Callable[[str | None], str | None]
"""The user id of a valid ``Authorization`` header, or None (no header, or a token that does not verify)."""


@dataclass(frozen=True)
class RateLimitConfig:
    """The limits of one REST shim (its settings' section), and the proxies whose
    ``X-Forwarded-For`` names the client it counts a request against."""

    limits: RateLimitsConfig = field(default_factory=RateLimitsConfig)
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimitConfig:
        return cls(settings.rate_limits, TrustedProxies.parse(settings.gateway.trusted_proxies))


def no_user(authorization: str | None) -> str | None:
    """For an app that cannot verify tokens: every request is limited by its address only."""
    return None


@dataclass(frozen=True)
class Bucket:
    name: str
    """Which limit (``address``, ``user``, ``signup-address``, ``signup-global``): part of the key."""
    limit: RateLimit
    key: str

    @property
    def item(self) -> RateLimitItem:
        return RateLimitItemPerSecond(self.limit.requests, self.limit.window_s)


def buckets_for(config: RateLimitConfig, method: str, path: str, client: str, user_id: str | None) -> list[Bucket]:
    """The buckets one request is counted in, broadest first."""
    limits = config.limits
    buckets = [Bucket("address", limits.address, client)]
    if user_id is not None:
        buckets.append(Bucket("user", limits.user, user_id))
    if (method, path) == SIGNUP_ROUTE:
        buckets.append(Bucket("signup-address", limits.signup_address, client))
        buckets.append(Bucket("signup-global", limits.signup_global, "*"))
    return buckets


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    """Requests allowed in the window of the bucket closest to full."""
    remaining: int
    reset_s: int
    """Seconds until that bucket has room again (0 when it has room now)."""
    window_s: int
    retry_after_s: int | None
    """Set when refused: seconds until the refusing bucket lets a request through."""

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
            "RateLimit-Policy": f"{self.limit};w={self.window_s}",
        }
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


def _seconds_until(reset_time: float, now: float) -> int:
    return max(0, math.ceil(reset_time - now))


class RateLimiter:
    """Counts requests in their buckets; an unreachable store lets requests through (logged)."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._strategy = SlidingWindowCounterRateLimiter(storage)
        self._warned_at = -math.inf

    async def check(self, buckets: Sequence[Bucket]) -> Verdict | None:
        """Count one request in each bucket, stopping at the first full one. None: the store failed."""
        try:
            return await asyncio.wait_for(self._check(buckets), STORE_TIMEOUT_S)
        except (StorageError, OSError, TimeoutError) as e:
            now = time.monotonic()
            if now - self._warned_at >= STORE_WARNING_INTERVAL_S:
                self._warned_at = now
                log.warning("rate-limit store unavailable, requests pass unlimited: %s", e)
            return None

    async def _check(self, buckets: Sequence[Bucket]) -> Verdict:
        counted: list[Bucket] = []
        refused: Bucket | None = None
        for bucket in buckets:
            if not await self._strategy.hit(bucket.item, bucket.name, bucket.key):
                refused = bucket
                break
            counted.append(bucket)
        shown = [refused] if refused is not None else counted
        stats = await asyncio.gather(*(self._strategy.get_window_stats(b.item, b.name, b.key) for b in shown))
        now = time.time()
        # The bucket closest to full; of equals, the one that takes longest to recover.
        bucket, window = min(zip(shown, stats, strict=True), key=lambda pair: (pair[1].remaining, -pair[1].reset_time))
        reset_s = _seconds_until(window.reset_time, now) if window.remaining == 0 else 0
        return Verdict(
            allowed=refused is None,
            limit=bucket.limit.requests,
            remaining=window.remaining,
            reset_s=reset_s,
            window_s=bucket.limit.window_s,
            retry_after_s=max(1, reset_s) if refused is not None else None,
        )

    async def reset(self) -> None:
        """Forget every count (tests and benchmarks between runs)."""
        await self._storage.reset()


def _storage(url: str) -> Storage:
    """The ``limits`` storage for one of the URLs the settings accept (memory://, redis://, rediss://)."""
    if url.startswith("memory://"):
        return MemoryStorage()
    return RedisStorage(
        "async+" + url,
        wrap_exceptions=True,
        key_prefix=KEY_PREFIX,
        # redis-py rather than the library's default client (coredis): about twice as fast here.
        implementation="redispy",
        socket_connect_timeout=STORE_TIMEOUT_S,
        socket_timeout=STORE_TIMEOUT_S,
    )


@asynccontextmanager
async def open_rate_limiter(storage_url: str) -> AsyncIterator[RateLimiter]:
    """A limiter on ``storage_url`` for an app's lifetime (its Redis connections are opened lazily,
    on this event loop, and closed at the end)."""
    storage = _storage(storage_url)
    try:
        yield RateLimiter(storage)
    finally:
        if isinstance(storage, RedisStorage):
            client = getattr(storage.bridge, "storage", None)  # the redis.asyncio client of the "redispy" bridge
            assert isinstance(client, redis.asyncio.Redis)
            await client.aclose()
