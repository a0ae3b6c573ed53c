"""The queue's own cost: no-op items per second through the project's queue and through pgqueuer,
on the same PostgreSQL in the same run, and the project's SQL statements per item.

Project side: ``jobs`` albums of ``items`` photos (one pro user each, so claims rotate between
users), queued through ``JobService.execute``; the photos are marked uploaded in the database (the
upload checks are not what is measured). ``workers`` spawned processes each run one
``server.work.worker.Worker`` with a pipeline that does nothing (every claim goes through the real
queue: lease, heartbeat, group settlement with the ledger, packaging) and batches of
``S3_CLAIM_BATCH``-style size ``batch``. The clock runs from releasing the ready workers until every
item is settled (``done``, credits spent). Statements are counted in the worker processes
(``bench.statement_count``) over the whole run, idle claims and packaging included, divided by the
items.

pgqueuer side: ``bench/pgqueuer_noop.py`` in ``.venv-bench``, a virtual environment this module
creates with ``pip install pgqueuer asyncpg`` on first use (never a project dependency).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import multiprocessing.synchronize as mps
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.queue_bench import Bench, bench_settings, marked_uploaded_job, open_bench, pro_user, spawned
from bench.statement_count import counting
from server.db.engine import Database
from server.db.tables import JobItemRow, JobRow
from server.pipeline import Pipeline
from server.service.settle import AnalysisOutputs, ItemOutputs, PackageOutputs
from server.wire_enums import ItemStatus, JobStatus
from server.work.queue import Claim, WorkQueue
from server.work.worker import Worker

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_VENV = REPO_ROOT / ".venv-bench"
PGQUEUER_SCRIPT = REPO_ROOT / "bench" / "pgqueuer_noop.py"
RULE = {"Wall": {"action": "recolor", "value": "sage"}}
DONE_TIMEOUT_S = 300.0


class NoopPipeline(Pipeline):
    """Answers every claim at once: what is left is the queue's own work."""

    def __init__(self) -> None:  # no database, store or segmenter: nothing is run
        pass

    async def run(self, claim: Claim) -> ItemOutputs | AnalysisOutputs | PackageOutputs:
        if claim.stage == "package":
            return PackageOutputs(set_key=f"sets/{claim.job_id}.zip")
        return ItemOutputs(output_key=f"outputs/{claim.job_id}/{claim.idx}.png")


def _worker_main(
    data_dir: str, url: str, batch: int, ready: mps.Event, start: mps.Event, stop: mps.Event, counts: Any
) -> None:
    settings = bench_settings(Path(data_dir), url)
    db = Database.from_url(url)
    worker = Worker(
        WorkQueue(db, settings.queue), NoopPipeline(), name=f"noop:{os.getpid()}", lease_s=30.0, batch=batch
    )

    async def go() -> None:
        ready.set()
        while not start.is_set():
            await asyncio.sleep(0.002)
        stopping = asyncio.Event()
        with counting(db.engine) as count:
            task = asyncio.create_task(worker.run(stopping))
            while not stop.is_set():
                await asyncio.sleep(0.05)
            stopping.set()
            await task
        counts.put((count.statements, count.round_trips, count.transactions, dict(count.by_kind)))

    try:
        asyncio.run(go())
    finally:
        db.dispose()


@contextmanager
def _workers(count: int, data_dir: Path, url: str, batch: int, start: mps.Event) -> Iterator[Any]:
    counts = mp.get_context("spawn").Queue()
    with spawned(count, _worker_main, lambda ready, stop: (str(data_dir), url, batch, ready, start, stop, counts)):
        yield counts


def _queue_albums(bench: Bench, jobs: int, items: int) -> list[str]:
    return [marked_uploaded_job(bench, pro_user(bench, items), items, RULE) for _ in range(jobs)]


def _settled(bench: Bench) -> int:
    with bench.db.read() as s:
        return s.scalar(select(func.count()).select_from(JobItemRow).where(JobItemRow.status == ItemStatus.DONE)) or 0


def ours(database_url: str, workers: int, jobs: int, items: int, batch: int) -> dict[str, Any]:
    """No-op items per second through ``workers`` worker processes, and statements per item."""
    work = Path(tempfile.mkdtemp(prefix="queue-noop-"))
    try:
        with open_bench(database_url, work) as bench:
            _queue_albums(bench, jobs, items)
            total = jobs * items
            start = mp.get_context("spawn").Event()
            with _workers(workers, work, bench.settings.effective_database_url, batch, start) as counts:
                started = time.perf_counter()
                start.set()
                while _settled(bench) < total:
                    if time.perf_counter() - started > DONE_TIMEOUT_S:
                        raise RuntimeError(f"{total} no-op items not settled in {DONE_TIMEOUT_S} s")
                    time.sleep(0.02)
                seconds = time.perf_counter() - started
            tallies = [counts.get(timeout=60) for _ in range(workers)]
            with bench.db.read() as s:
                keys_done = s.scalar(select(func.count()).select_from(JobRow).where(JobRow.status == JobStatus.DONE))
        statements = sum(t[0] for t in tallies)
        by_kind: dict[str, int] = {}
        for t in tallies:
            for kind, n in t[3].items():
                by_kind[kind] = by_kind.get(kind, 0) + n
        return {
            "workers": workers,
            "items": total,
            "batch": batch,
            "seconds": round(seconds, 3),
            "items_per_s": round(total / seconds, 1),
            "statements_per_item": round(statements / total, 2),
            "round_trips_per_item": round(sum(t[1] for t in tallies) / total, 2),
            "transactions_per_item": round(sum(t[2] for t in tallies) / total, 2),
            "statements_by_kind": by_kind,
            "jobs_done": keys_done,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_python() -> Path:
    """``.venv-bench``'s interpreter, with pgqueuer installed (created on first use)."""
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    probe = subprocess.run([str(python), "-c", "import pgqueuer, asyncpg"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "pgqueuer", "asyncpg"], check=True)
    return python


def pgqueuer(database_url: str, workers: int, items: int) -> dict[str, Any]:
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    out = subprocess.run(
        [str(bench_python()), str(PGQUEUER_SCRIPT), "--dsn", dsn, "--workers", str(workers), "--items", str(items)],
        check=True,
        capture_output=True,
        text=True,
        timeout=DONE_TIMEOUT_S + 120,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


__all__ = ["NoopPipeline", "ours", "pgqueuer"]
