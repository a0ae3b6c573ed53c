"""What the rate limiter costs: the same REST shim without limits, with in-process counters and with
counters in Redis, side by side in one run.

Three ``python -m server.serve`` processes (embedded SQLite, no workers, in-process tiny model) run at
once, identical but for ``S3_RATE_LIMITS`` / ``S3_RATE_LIMIT_STORAGE_URL``; the limits are set so
high that every request is counted and none refused. Each endpoint is measured on the three in turn
by the same load loop (:mod:`bench.load`), so all three see the same machine load. Figures per
request: the server process's CPU time, for Redis also the Redis server's (a cost of the limiter
too), and from their sum requests per second per core.

Endpoints: ``GET /me`` with a token (address and user buckets, then a JobService call and a database
read: a typical call), and an unknown path with a token (the same two buckets, answered 404 by the
shim alone: where the limiter is the largest share).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.api_bench import CONCURRENCY, RATE_LIMIT_VARIABLES, WARMUP, cpu_seconds
from bench.load import Request, run_load
from scripts.demo.stack import EmbeddedStack, StackConfig

COUNT = 2000
MAX_S = 15.0
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


def _measure(base_url: str, pids: list[int], request: Request) -> dict[str, Any]:
    before = [cpu_seconds(p) for p in pids]
    load = run_load(base_url, request, count=COUNT, concurrency=CONCURRENCY, warmup=WARMUP, max_s=MAX_S)
    used = [cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]
    requests = load.requests + WARMUP
    server_ms = used[0] * 1000 / requests
    store_ms = sum(used[1:]) * 1000 / requests
    return load.to_dict() | {
        "server_cpu_ms": round(server_ms, 3),
        "store_cpu_ms": round(store_ms, 3),
        "rps_per_core": round(1000 / (server_ms + store_ms), 1),
    }


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
            rows: dict[str, Any] = {}
            for mode in MODES:

                async def request(
                    client: httpx.AsyncClient, i: int, path: str = path, headers: dict[str, str] = auth[mode]
                ) -> httpx.Response:
                    return await client.get(path, headers=headers)

                rows[mode] = _measure(stacks[mode].base_url, pids[mode], request)
            off = rows["off"]["server_cpu_ms"]
            for mode in ("memory", "redis"):
                cost = rows[mode]["server_cpu_ms"] + rows[mode]["store_cpu_ms"] - off
                rows[mode]["limiter_cpu_ms"] = round(cost, 3)
                rows[mode]["rps_per_core_ratio"] = round(rows[mode]["rps_per_core"] / rows["off"]["rps_per_core"], 3)
            endpoints[name] = rows
    return {"concurrency": CONCURRENCY, "requests": COUNT, "endpoints": endpoints}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
