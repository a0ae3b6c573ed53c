"""What the rate limiter costs: the same REST shim without limits, with in-process counters and with
counters in Redis, side by side in one run.

Three ``python -m stack.serve`` processes (embedded SQLite, no workers, in-process tiny model) run at
once, identical but for ``S3_RATE_LIMITS`` / ``S3_RATE_LIMIT_STORAGE_URL``; the limits are set so
high that every request is counted and none refused. Each endpoint is measured on the three in turn
by the same load loop (:mod:`bench.load`), so all three see the same machine load. Figures per
request: the server process's CPU time, for Redis also the Redis server's (a cost of the limiter
too), and from their sum requests per second per core. Modes take turns in interleaved rounds. And
the limiter's own work for one request measured alone, in this process, without HTTP.

Endpoints: ``GET /me`` with a token (address and user buckets, then a JobService call and a database
read: a typical call), and an unknown path with a token (the same two buckets, answered 404 by the
shim alone: where the limiter is the largest share).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.api_bench import CONCURRENCY, RATE_LIMIT_VARIABLES, WARMUP, cpu_seconds
from bench.load import Request, run_load
from gateway_rest.app import verified_user
from gateway_rest.rate_limits import RateLimitConfig, buckets_for, open_rate_limiter
from scripts.demo.stack import EmbeddedStack, StackConfig
from server.config import RateLimit, Settings
from server.service.tokens import TokenService

COUNT = 2400
ROUNDS = 3
MAX_S = 8.0
ALONE_COUNT = 3000
BENCH_SECRET = "bench-secret-" + "b" * 40
HUGE = RateLimit(1_000_000_000, 60)
UNLIMITED = "1000000000/60"
MODES = ("off", "memory", "redis")


@contextmanager
def _redis() -> Iterator[Any]:
    from tests.servers.redis import run_redis  # the test fixture's server: real Redis, thrown away

    with run_redis() as server:
        yield server


def _env(mode: str, redis_url: str) -> dict[str, str]:
    env = {"S3_INFERENCE": "onnx", "S3_LOG_LEVEL": "WARNING", "S3_METRICS_PORT": "0"}
    if mode == "off":
        return env | {"S3_RATE_LIMITS": "off"}
    limits = dict.fromkeys(RATE_LIMIT_VARIABLES, UNLIMITED)
    storage = redis_url if mode == "redis" else "memory://"
    return env | limits | {"S3_RATE_LIMITS": "on", "S3_RATE_LIMIT_STORAGE_URL": storage}


@dataclass
class _Tally:
    """One mode's figures summed over the rounds."""

    requests: int = 0
    seconds: float = 0.0
    server_cpu_s: float = 0.0
    store_cpu_s: float = 0.0
    p99_ms: list[float] = field(default_factory=list)

    def add(self, base_url: str, pids: list[int], request: Request) -> None:
        before = [cpu_seconds(p) for p in pids]
        load = run_load(base_url, request, count=COUNT // ROUNDS, concurrency=CONCURRENCY, warmup=WARMUP, max_s=MAX_S)
        used = [cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]
        if load.errors and load.errors != load.requests:  # the 404 endpoint answers nothing but errors
            raise RuntimeError(f"{load.errors} of {load.requests} requests failed")
        self.requests += load.requests + WARMUP
        self.seconds += load.seconds
        self.server_cpu_s += used[0]
        self.store_cpu_s += sum(used[1:])
        self.p99_ms.append(load.p99_ms)

    def figures(self) -> dict[str, Any]:
        server_ms = self.server_cpu_s * 1000 / self.requests
        store_ms = self.store_cpu_s * 1000 / self.requests
        return {
            "requests": self.requests,
            "rps": round(self.requests / self.seconds, 1),
            "p99_ms": statistics.median(self.p99_ms),
            "server_cpu_ms": round(server_ms, 3),
            "store_cpu_ms": round(store_ms, 3),
            "rps_per_core": round(1000 / (server_ms + store_ms), 1),
        }


async def _limiter_alone(storage_url: str) -> float:
    """CPU microseconds of the middleware's own work for one request: verify the token, count it in
    its address and user buckets, read the windows. One process, no HTTP: the steadiest figure."""
    user_of = verified_user(TokenService(BENCH_SECRET, 3600))
    authorization = "Bearer " + TokenService(BENCH_SECRET, 3600).issue("bench-user").token
    config = RateLimitConfig.from_settings(Settings().changed(rate_limit_address=HUGE, rate_limit_user=HUGE))
    async with open_rate_limiter(storage_url) as limiter:

        async def one() -> None:
            user = user_of(authorization)
            await limiter.check(buckets_for(config, "GET", "/me", "127.0.0.1", user))

        for _ in range(WARMUP):
            await one()
        started = time.process_time()
        for _ in range(ALONE_COUNT):
            await one()
        return (time.process_time() - started) * 1e6 / ALONE_COUNT


def _token(base_url: str) -> str:
    created = httpx.post(base_url + "/auth/anon", timeout=30)
    created.raise_for_status()
    token: str = created.json()["data"]["token"]
    return token


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ratelimit-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        redis = stack.enter_context(_redis())
        stacks: dict[str, EmbeddedStack] = {}
        for mode in MODES:
            config = StackConfig(
                data_dir=work / mode / "data", log_path=work / mode / "server.log", workers=0, env=_env(mode, redis.url)
            )
            stacks[mode] = stack.enter_context(EmbeddedStack(config))
        for started in stacks.values():
            started.wait_healthy(300)
        auth = {mode: {"Authorization": f"Bearer {_token(s.base_url)}"} for mode, s in stacks.items()}
        pids = {mode: [s.pid] for mode, s in stacks.items() if s.pid is not None}
        pids["redis"].append(redis.process.pid)

        endpoints: dict[str, dict[str, Any]] = {}
        for name, path in (("GET /me", "/me"), ("GET unknown path (404)", "/no-such-route")):
            tallies = {mode: _Tally() for mode in MODES}
            # Interleaved rounds: a change in the machine's load reaches every mode alike.
            for _round in range(ROUNDS):
                for mode in MODES:

                    async def request(
                        client: httpx.AsyncClient, i: int, path: str = path, headers: dict[str, str] = auth[mode]
                    ) -> httpx.Response:
                        return await client.get(path, headers=headers)

                    tallies[mode].add(stacks[mode].base_url, pids[mode], request)
            rows = {mode: tally.figures() for mode, tally in tallies.items()}
            off = rows["off"]["server_cpu_ms"]
            for mode in ("memory", "redis"):
                cost = rows[mode]["server_cpu_ms"] + rows[mode]["store_cpu_ms"] - off
                rows[mode]["limiter_cpu_ms"] = round(cost, 3)
                rows[mode]["rps_per_core_ratio"] = round(rows[mode]["rps_per_core"] / rows["off"]["rps_per_core"], 3)
            endpoints[name] = rows
        alone = {
            mode: round(asyncio.run(_limiter_alone(url)), 1)
            for mode, url in (("memory", "memory://"), ("redis", redis.url))
        }
    return {"concurrency": CONCURRENCY, "rounds": ROUNDS, "endpoints": endpoints, "limiter_alone_cpu_us": alone}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
