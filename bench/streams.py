"""A client that holds many ``GET /jobs/{id}/events`` streams open, and the latency probe that runs
beside them: shared by the stream tests and the stream benchmark."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from bench.load import percentile

Event = tuple[str, dict[str, Any]]


class StreamRefused(Exception):
    """The API answered the stream request with an error envelope instead of an event stream."""

    def __init__(self, status_code: int, headers: httpx.Headers, body: dict[str, Any]) -> None:
        super().__init__(f"{status_code}: {body.get('error')}")
        self.status_code = status_code
        self.headers = headers
        self.body = body


@dataclass
class OpenStream:
    response: httpx.Response
    lines: AsyncIterator[str]
    first: Event

    async def next_event(self) -> Event | None:
        """The next event (keep-alive comments skipped), or None when the server closed the stream."""
        return await read_event(self.lines)

    async def close(self) -> None:
        await self.response.aclose()


async def read_event(lines: AsyncIterator[str]) -> Event | None:
    name, data = "", None
    async for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = json.loads(line.removeprefix("data: "))
        elif line == "" and name and data is not None:
            return name, data
    return None


async def open_stream(client: httpx.AsyncClient, path: str, headers: Mapping[str, str]) -> OpenStream:
    """Open one stream and read its first event (the job as it is now)."""
    response = await client.send(client.build_request("GET", path, headers=dict(headers)), stream=True)
    if response.status_code != 200:
        body = json.loads(await response.aread())
        await response.aclose()
        raise StreamRefused(response.status_code, response.headers, body)
    lines = response.aiter_lines()
    first = await read_event(lines)
    if first is None:
        await response.aclose()
        raise RuntimeError("the stream closed before its first event")
    return OpenStream(response, lines, first)


async def open_streams(
    client: httpx.AsyncClient, path: str, headers: Mapping[str, str], count: int, *, concurrency: int = 50
) -> list[OpenStream]:
    """``count`` streams of the same job, ``concurrency`` being opened at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> OpenStream:
        async with gate:
            return await open_stream(client, path, headers)

    results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    opened = [r for r in results if isinstance(r, OpenStream)]
    failed = [r for r in results if not isinstance(r, OpenStream)]
    if failed:
        await close_all(opened)
        raise RuntimeError(f"{len(failed)} of {count} streams did not open: {failed[0]!r}") from failed[0]
    return opened


async def close_all(streams: list[OpenStream]) -> None:
    await asyncio.gather(*(s.close() for s in streams), return_exceptions=True)


def stream_client(base_url: str, streams: int) -> httpx.AsyncClient:
    """A client with a connection for each stream (each one holds its connection open)."""
    limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=streams + 10)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=httpx.Timeout(30.0))


@dataclass(frozen=True)
class Latency:
    requests: int
    p50_ms: float
    p99_ms: float


async def probe(client: httpx.AsyncClient, path: str, headers: Mapping[str, str], count: int) -> Latency:
    """``count`` requests one after another (each must succeed); their latency percentiles."""
    seconds: list[float] = []
    for _ in range(count):
        started = time.perf_counter()
        response = await client.get(path, headers=dict(headers))
        seconds.append(time.perf_counter() - started)
        response.raise_for_status()
    return Latency(count, round(percentile(seconds, 50) * 1000, 2), round(percentile(seconds, 99) * 1000, 2))
