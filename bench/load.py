"""A bounded HTTP load loop: ``concurrency`` requests in flight on one keep-alive connection pool, at
most ``count`` requests and ``max_s`` seconds, loopback only. Latency is per request, client side."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx

Request = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


async def _drive(base_url: str, request: Request, count: int, concurrency: int, max_s: float) -> LoadResult:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    errors = 0
    next_index = 0
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30.0) as client:
        started = time.perf_counter()
        deadline = started + max_s

        async def worker() -> None:
            nonlocal next_index, errors
            while next_index < count and time.perf_counter() < deadline:
                i = next_index
                next_index += 1
                t0 = time.perf_counter()
                response = await request(client, i)
                latencies.append(time.perf_counter() - t0)
                if response.status_code >= 300:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    done = len(latencies)
    return LoadResult(
        requests=done,
        errors=errors,
        seconds=round(seconds, 3),
        rps=round(done / seconds, 1),
        p50_ms=round(percentile(latencies, 50) * 1000, 2),
        p99_ms=round(percentile(latencies, 99) * 1000, 2),
    )


def run_load(
    base_url: str, request: Request, *, count: int, concurrency: int = 16, max_s: float = 20.0, warmup: int = 50
) -> LoadResult:
    """Warm the connections and the server with ``warmup`` requests (not counted), then measure."""
    if warmup:
        asyncio.run(_drive(base_url, request, warmup, min(concurrency, warmup), max_s))
    return asyncio.run(_drive(base_url, request, count, concurrency, max_s))
