"""pgqueuer's no-op throughput, the reference for ``bench.queue_noop`` (same PostgreSQL, same run).

Runs in the bench-only environment ``.venv-bench`` (pgqueuer is not a project dependency), so it
imports nothing of the project. Enqueues ``--items`` jobs of a no-op entrypoint, starts
``--workers`` processes (each one ``PgQueuer`` on its own asyncpg connection, pgqueuer's default
batch size), and once all are ready times until the queue table is empty. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import multiprocessing.synchronize as mps
import time
from typing import Any

import asyncpg  # type: ignore[import-not-found,unused-ignore]
from pgqueuer import AsyncpgDriver, PgQueuer, Queries  # type: ignore[import-not-found,unused-ignore]

ENTRYPOINT = "noop"
BATCH = 10
"""pgqueuer's default ``batch_size``."""


def _worker(dsn: str, ready: mps.Event, start: mps.Event, stop: mps.Event) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(dsn)
        pgq = PgQueuer(AsyncpgDriver(conn))

        @pgq.entrypoint(ENTRYPOINT)  # type: ignore[untyped-decorator,unused-ignore]
        async def noop(job: Any) -> None:
            return None

        ready.set()
        while not start.is_set():
            await asyncio.sleep(0.002)
        task = asyncio.create_task(pgq.run(batch_size=BATCH))
        while not stop.is_set():
            await asyncio.sleep(0.05)
        pgq.shutdown.set()
        await task
        await conn.close()

    asyncio.run(go())


async def _drained(dsn: str, start: mps.Event, timeout_s: float) -> float:
    """Seconds from ``start`` until the queue table is empty (one connection, polled every 20 ms)."""
    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        start.set()
        while int(await conn.fetchval("SELECT count(*) FROM pgqueuer")) > 0:
            if time.perf_counter() - started > timeout_s:
                raise RuntimeError(f"pgqueuer did not drain in {timeout_s} s")
            await asyncio.sleep(0.02)
        return time.perf_counter() - started
    finally:
        await conn.close()


async def _prepare(dsn: str, items: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        await conn.execute(
            "DROP TABLE IF EXISTS pgqueuer, pgqueuer_log, pgqueuer_statistics, pgqueuer_schedules CASCADE"
        )
        await conn.execute("DROP TYPE IF EXISTS pgqueuer_status CASCADE")
        await queries.install()
        for first in range(0, items, 1000):
            n = min(1000, items - first)
            await queries.enqueue([ENTRYPOINT] * n, [None] * n, [0] * n)
    finally:
        await conn.close()


def run(dsn: str, workers: int, items: int, timeout_s: float) -> dict[str, Any]:
    asyncio.run(_prepare(dsn, items))
    ctx = mp.get_context("spawn")
    start, stop = ctx.Event(), ctx.Event()
    readies = [ctx.Event() for _ in range(workers)]
    procs = [ctx.Process(target=_worker, args=(dsn, r, start, stop), daemon=True) for r in readies]
    for p in procs:
        p.start()
    try:
        for r in readies:
            if not r.wait(120):
                raise RuntimeError("a pgqueuer worker did not start")
        seconds = asyncio.run(_drained(dsn, start, timeout_s))
    finally:
        stop.set()
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    return {"workers": workers, "items": items, "seconds": round(seconds, 3), "items_per_s": round(items / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--timeout-s", type=float, default=300.0)
    args = parser.parse_args()
    print(json.dumps(run(args.dsn, args.workers, args.items, args.timeout_s)))


if __name__ == "__main__":
    main()
