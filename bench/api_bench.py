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
from pathlib import Path
from typing import Any

import httpx

from bench.load import LoadResult, run_load
from scripts.demo.stack import REPO_ROOT, EmbeddedStack, StackConfig, free_port

CONCURRENCY = 16
WARMUP = 50
GET_COUNT = 3000
POST_COUNT = 1000
MAX_S = 30.0


@contextmanager
def bare_server(bodies: dict[str, tuple[int, str]], work: Path) -> Iterator[str]:
    """The reference app under uvicorn in its own process; yields its base URL."""
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
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def _ratios(shim: LoadResult, bare: LoadResult) -> dict[str, Any]:
    return {
        "shim": shim.to_dict(),
        "bare": bare.to_dict(),
        "rps_ratio": round(shim.rps / bare.rps, 3),
        "p99_ratio": round(shim.p99_ms / bare.p99_ms, 2),
    }


def run(database_url: str | None = None, *, label: str = "sqlite") -> dict[str, Any]:
    """Three endpoints (POST /auth/anon, GET /jobs/{id}, POST /jobs) on the shim, then on the bare app."""
    with tempfile.TemporaryDirectory(prefix="api-bench-") as tmp:
        work = Path(tmp)
        env = {"S3_INFERENCE": "onnx", **({"S3_DATABASE_URL": database_url} if database_url else {})}
        config = StackConfig(data_dir=work / "data", log_path=work / "server.log", workers=0, env=env)
        tokens: list[str] = []
        captured: dict[str, tuple[int, str]] = {}

        def keep(key: str, path: str, response: httpx.Response) -> httpx.Response:
            if key not in captured and response.status_code < 300:
                captured[key] = (response.status_code, response.text)
                captured[key.split(" ")[0] + " " + path] = captured.pop(key)
            return response

        async def sign_up(client: httpx.AsyncClient, i: int) -> httpx.Response:
            response = await client.post("/auth/anon")
            if response.status_code == 201:
                tokens.append(response.json()["data"]["token"])
            return keep("POST auth", "/auth/anon", response)

        with EmbeddedStack(config) as stack:
            stack.wait_healthy(300)
            # One user per POST /jobs (a free user may hold one active job): sign up enough first.
            shim_auth = run_load(stack.base_url, sign_up, count=POST_COUNT + 1, concurrency=CONCURRENCY, warmup=WARMUP)
            owner = {"Authorization": f"Bearer {tokens.pop()}"}
            job = httpx.post(stack.base_url + "/jobs", json={"preset": "interior", "item_count": 1}, headers=owner)
            job_id = job.json()["data"]["job_id"]
            job_path = f"/jobs/{job_id}"

            async def get_job(client: httpx.AsyncClient, i: int) -> httpx.Response:
                return keep("GET job", job_path, await client.get(job_path, headers=owner))

            unused = iter(list(tokens))

            async def create_job(client: httpx.AsyncClient, i: int) -> httpx.Response:
                headers = {"Authorization": f"Bearer {next(unused, tokens[0])}"}
                body = {"preset": "interior", "item_count": 1}
                return keep("POST jobs", "/jobs", await client.post("/jobs", json=body, headers=headers))

            shim_get = run_load(stack.base_url, get_job, count=GET_COUNT, concurrency=CONCURRENCY, warmup=WARMUP)
            if len(tokens) < POST_COUNT + WARMUP:
                raise RuntimeError(f"only {len(tokens)} users signed up; POST /jobs needs one per request")
            shim_post = run_load(stack.base_url, create_job, count=POST_COUNT, concurrency=CONCURRENCY, warmup=WARMUP)

        with bare_server(captured, work) as bare_url:
            bare_auth = run_load(bare_url, sign_up, count=POST_COUNT + 1, concurrency=CONCURRENCY, warmup=WARMUP)
            unused = iter(list(tokens))
            bare_get = run_load(bare_url, get_job, count=GET_COUNT, concurrency=CONCURRENCY, warmup=WARMUP)
            bare_post = run_load(bare_url, create_job, count=POST_COUNT, concurrency=CONCURRENCY, warmup=WARMUP)

    for name, result in (("POST /auth/anon", shim_auth), ("GET /jobs/{id}", shim_get), ("POST /jobs", shim_post)):
        if result.errors:
            raise RuntimeError(f"{name} on the shim: {result.errors} of {result.requests} requests failed")
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
