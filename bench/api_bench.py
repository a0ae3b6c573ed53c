"""REST shim -> gRPC -> database, against a bare Starlette endpoint on the same machine.

The shim is ``python -m server.serve`` as shipped (REST shim and JobService in one process, JSON logs
at INFO), with no pipeline workers and the in-process tiny model so that nothing else competes for
the CPU. The reference is :mod:`bench.bare_app` under the same uvicorn, answering with the bytes the
shim answered. Both are driven by the same load loop (:mod:`bench.load`) from this process, so both
figures include the client's own cost; the ratio is the shim's overhead over a do-nothing endpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.load import LoadResult, Request, run_load
from scripts.demo.stack import REPO_ROOT, EmbeddedStack, StackConfig
from server.ports import free_port

CONCURRENCY = 16
WARMUP = 50
GET_COUNT = 3000
POST_COUNT = 800
MAX_S = 12.0
RATE_LIMIT_VARIABLES = (
    "S3_RATE_LIMIT_ADDRESS",
    "S3_RATE_LIMIT_USER",
    "S3_RATE_LIMIT_SIGNUP_ADDRESS",
    "S3_RATE_LIMIT_SIGNUP_GLOBAL",
)


@contextmanager
def bare_server(bodies: dict[str, tuple[int, str]], work: Path) -> Iterator[tuple[str, int]]:
    """The reference app under uvicorn in its own process; yields its base URL and process id."""
    path = work / "bare_bodies.json"
    path.write_text(json.dumps(bodies))
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "bench.bare_app:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, "BENCH_BARE_BODIES": str(path)})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "/", timeout=1.0)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the bare reference server did not start") from None
                time.sleep(0.1)
        yield base, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads included (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Measured:
    load: LoadResult
    server_cpu_ms: float
    """Server process CPU time per request: unlike wall-clock figures, it hardly moves when other
    processes (or the client) compete for the cores."""


def _measure(base_url: str, pid: int, request: Request, count: int, *, max_s: float = MAX_S) -> Measured:
    before = cpu_seconds(pid)
    load = run_load(base_url, request, count=count, concurrency=CONCURRENCY, warmup=WARMUP, max_s=max_s)
    used = cpu_seconds(pid) - before
    return Measured(load, round(used * 1000 / (load.requests + WARMUP), 3))


def _ratios(shim: Measured, bare: Measured) -> dict[str, Any]:
    return {
        "shim": shim.load.to_dict() | {"server_cpu_ms": shim.server_cpu_ms},
        "bare": bare.load.to_dict() | {"server_cpu_ms": bare.server_cpu_ms},
        "rps_ratio": round(shim.load.rps / bare.load.rps, 3),
        "p99_ratio": round(shim.load.p99_ms / bare.load.p99_ms, 2),
        "cpu_ratio": round(shim.server_cpu_ms / bare.server_cpu_ms, 1),
    }


def run(database_url: str | None = None, *, label: str = "sqlite") -> dict[str, Any]:
    """Three endpoints (POST /auth/anon, GET /jobs/{id}, POST /jobs), each on the shim and then at once
    on the bare app, so that both figures of a ratio see the same machine load."""
    with tempfile.TemporaryDirectory(prefix="api-bench-") as tmp:
        work = Path(tmp)
        env = {"S3_INFERENCE": "onnx", **({"S3_DATABASE_URL": database_url} if database_url else {})}
        # Hundreds of sign-ups and thousands of requests a minute from one address: counted by the
        # shipped in-process limiter, never refused (bench/ratelimit_bench.py measures its cost).
        env |= {name: "1000000000/60" for name in RATE_LIMIT_VARIABLES}
        config = StackConfig(data_dir=work / "data", log_path=work / "server.log", workers=0, env=env)
        tokens: list[str] = []
        captured: dict[str, tuple[int, str]] = {}

        def keep(method: str, path: str, response: httpx.Response) -> httpx.Response:
            if response.status_code < 300:
                captured.setdefault(f"{method} {path}", (response.status_code, response.text))
            return response

        async def sign_up(client: httpx.AsyncClient, i: int) -> httpx.Response:
            response = await client.post("/auth/anon")
            if response.status_code == 201 and str(client.base_url).rstrip("/") == shim_url:
                tokens.append(response.json()["data"]["token"])
            return keep("POST", "/auth/anon", response)

        with EmbeddedStack(config) as stack:
            shim_url = stack.base_url
            assert stack.pid is not None
            shim_pid = stack.pid
            stack.wait_healthy(300)
            # One user per POST /jobs (a free user may hold one active job): sign up enough first.
            shim_auth = _measure(shim_url, shim_pid, sign_up, POST_COUNT + 2, max_s=120.0)
            if len(tokens) < POST_COUNT + WARMUP + 2:
                raise RuntimeError(f"only {len(tokens)} users signed up; POST /jobs needs one per request")
            owner = {"Authorization": f"Bearer {tokens.pop()}"}
            body = {"preset": "interior", "item_count": 1}
            job = httpx.post(shim_url + "/jobs", json=body, headers=owner)
            job_path = f"/jobs/{job.json()['data']['job_id']}"
            keep("GET", job_path, httpx.get(shim_url + job_path, headers=owner))
            spare = {"Authorization": f"Bearer {tokens.pop()}"}
            keep("POST", "/jobs", httpx.post(shim_url + "/jobs", json=body, headers=spare))
            unused = iter(list(tokens))

            async def get_job(client: httpx.AsyncClient, i: int) -> httpx.Response:
                return await client.get(job_path, headers=owner)

            async def create_job(client: httpx.AsyncClient, i: int) -> httpx.Response:
                headers = {"Authorization": f"Bearer {next(unused, tokens[0])}"}
                return await client.post("/jobs", json=body, headers=headers)

            with bare_server(captured, work) as (bare_url, bare_pid):
                bare_auth = _measure(bare_url, bare_pid, sign_up, POST_COUNT + 2)
                shim_get = _measure(shim_url, shim_pid, get_job, GET_COUNT)
                bare_get = _measure(bare_url, bare_pid, get_job, GET_COUNT)
                shim_post = _measure(shim_url, shim_pid, create_job, POST_COUNT)
                bare_post = _measure(bare_url, bare_pid, create_job, POST_COUNT)

    for name, result in (("POST /auth/anon", shim_auth), ("GET /jobs/{id}", shim_get), ("POST /jobs", shim_post)):
        if result.load.errors:
            raise RuntimeError(f"{name} on the shim: {result.load.errors} of {result.load.requests} requests failed")
    return {
        "database": label,
        "concurrency": CONCURRENCY,
        "endpoints": {
            "GET /jobs/{id}": _ratios(shim_get, bare_get),
            "POST /jobs": _ratios(shim_post, bare_post),
            "POST /auth/anon": _ratios(shim_auth, bare_auth),
        },
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
