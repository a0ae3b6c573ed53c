"""Open job-event streams: what each one costs the server, and what they cost everyone else.

``python -m stack.serve`` as shipped (REST shim and JobService in one process, no pipeline
workers, the in-process tiny model), with the per-user stream cap raised so that one user can hold
every stream. One client holds 0, then 100, then 1,000 ``GET /jobs/{id}/events`` streams of one job
open; at each level, after a short settle, the server process's resident memory is read from
``/proc`` and another user's ``GET /me`` is timed from a client of its own (one request at a time).
Memory per stream is the growth from 0 streams divided by the number of streams.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import httpx

from bench.streams import OpenStream, close_all, open_streams, probe, stream_client
from scripts.demo.stack import EmbeddedStack, StackConfig

LEVELS = (0, 100, 1000)
PROBES = 400
SETTLE_S = 2.0


def rss_kib(pid: int) -> int:
    """Resident memory of a process (all threads), from ``/proc/<pid>/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


async def _levels(base_url: str, pid: int) -> list[dict[str, Any]]:
    async with stream_client(base_url, max(LEVELS)) as client, stream_client(base_url, 1) as others:
        signed = (await client.post("/auth/anon")).json()["data"]
        owner = {"Authorization": f"Bearer {signed['token']}"}
        other_token = (await others.post("/auth/anon")).json()["data"]["token"]
        other = {"Authorization": f"Bearer {other_token}"}
        job = await client.post("/jobs", json={"preset": "interior", "item_count": 1}, headers=owner)
        path = f"/jobs/{job.json()['data']['job_id']}/events"
        await probe(others, "/me", other, 50)  # warm-up
        held: list[OpenStream] = []
        rows: list[dict[str, Any]] = []
        try:
            for level in LEVELS:
                held += await open_streams(client, path, owner, level - len(held))
                await asyncio.sleep(SETTLE_S)
                memory = rss_kib(pid)
                latency = await probe(others, "/me", other, PROBES)
                rows.append({"streams": level, "rss_kib": memory, "p50_ms": latency.p50_ms, "p99_ms": latency.p99_ms})
        finally:
            await close_all(held)
    base = rows[0]["rss_kib"]
    for row in rows:
        row["kib_per_stream"] = round((row["rss_kib"] - base) / row["streams"], 1) if row["streams"] else None
        row["p99_x_quiet"] = round(row["p99_ms"] / rows[0]["p99_ms"], 2)
    return rows


def run(database_url: str | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="streams-bench-") as tmp:
        work = Path(tmp)
        # Each stream is a connection too: the connection cap rises with the stream cap.
        env = {
            "S3_INFERENCE": "onnx",
            "S3_MAX_STREAMS_PER_USER": str(max(LEVELS)),
            "S3_HTTP_MAX_CONNECTIONS": str(max(LEVELS) + 100),
        }
        if database_url:
            env["S3_DATABASE_URL"] = database_url
        config = StackConfig(data_dir=work / "data", log_path=work / "server.log", workers=0, env=env)
        with EmbeddedStack(config) as stack:
            stack.wait_healthy(300)
            assert stack.pid is not None
            httpx.get(stack.base_url + "/health", timeout=10).raise_for_status()
            return {"probes": PROBES, "levels": asyncio.run(_levels(stack.base_url, stack.pid))}
