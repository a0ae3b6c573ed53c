"""Queue and orchestration: album items per second end to end, with the instant segmenter.

Worker processes (``multiprocessing`` spawn, one ``server.work.worker.Worker`` each, as ``python -m
stack.worker`` runs them) claim from the database queue, run ``server.pipeline.Pipeline`` (fetch,
segment with :class:`bench.instant_segmenter.InstantSegmenter`, apply the rule, render the output set,
store) and record the outcome; the last item of a job queues its packaging. The clock runs from the
``execute`` calls to the moment every job is ``done`` (set packaged).

Reference, same run: the same albums' pipeline work (every item, then every set's packaging) called
directly in this process, one after the other, timing only the pipeline calls (claims, leases,
heartbeats, polling and settlement left out): ``x direct`` = items/s through the worker processes /
items/s of the direct calls.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing as mp
import multiprocessing.synchronize as mps
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image
from sqlalchemy import select, update

from bench.instant_segmenter import InstantSegmenter
from scripts.scenes import interior_scene
from server.clock import utcnow
from server.config import Settings
from server.db.engine import Database
from server.db.tables import BillingEventRow, JobItemRow, JobRow, UserRow
from server.pipeline import Pipeline
from server.service.bundle import Services
from server.service.concept_action import actions_from_stored
from server.service.settle import ItemOutputs, PackageOutputs
from server.storage import keys
from server.storage.port import ObjectStore
from server.wire_enums import ItemStatus, JobStatus
from server.work.queue import WorkQueue
from server.work.worker import Worker
from stack.wiring import build_services, build_store, open_database

SECRET = "bench-secret-" + "b" * 40
PHOTO_SIZE = (640, 480)
RULE = {"Wall": {"action": "recolor", "value": "sage"}}
PROTECT = ["Text"]
OUTPUT_SET = "listing"
DONE_TIMEOUT_S = 600.0


def bench_settings(data_dir: Path, database_url: str) -> Settings:
    return Settings(data_dir=data_dir).changed(
        database_url=database_url,
        jwt_secret=SECRET,
        callback_secret=SECRET,
        admin_token=SECRET,
        lease_s=30.0,
        retry_backoff_s=0.2,
    )


# -- worker processes ---------------------------------------------------------------------------------


def _worker_main(data_dir: str, database_url: str, ready: mps.Event, stop: mps.Event) -> None:
    """One worker process: the service's Worker and Pipeline with the instant segmenter."""
    settings = bench_settings(Path(data_dir), database_url)
    db = Database.from_url(database_url)
    store = build_store(settings)
    pipeline = Pipeline(db, store, InstantSegmenter(), settings.photos)
    worker = Worker(
        WorkQueue(db, settings.queue), pipeline, name=f"bench:{os.getpid()}", lease_s=settings.queue.lease_s
    )

    async def go() -> None:
        stopping = asyncio.Event()
        task = asyncio.create_task(worker.run(stopping))
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        stopping.set()
        await task

    try:
        asyncio.run(go())
    finally:
        db.dispose()


@contextmanager
def spawned(
    count: int, target: Callable[..., None], args: Callable[[mps.Event, mps.Event], tuple[Any, ...]]
) -> Iterator[None]:
    """``count`` spawned processes, each running ``target(*args(ready, stop))``: entered once every
    one has set its ``ready`` event; on exit ``stop`` is set and stragglers are killed after 60 s."""
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    readies = [ctx.Event() for _ in range(count)]
    procs = [ctx.Process(target=target, args=args(ready, stop), daemon=True) for ready in readies]
    for p in procs:
        p.start()
    try:
        for ready in readies:
            if not ready.wait(120):
                raise RuntimeError("a worker process did not start")
        yield
    finally:
        stop.set()
        for p in procs:
            p.join(60)
            if p.is_alive():
                p.kill()


@contextmanager
def worker_processes(count: int, data_dir: Path, database_url: str) -> Iterator[None]:
    with spawned(count, _worker_main, lambda ready, stop: (str(data_dir), database_url, ready, stop)):
        yield


# -- albums ---------------------------------------------------------------------------------------------


@dataclass
class Bench:
    settings: Settings
    db: Database
    store: ObjectStore
    services: Services
    photo: bytes


def _photo() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(interior_scene(*PHOTO_SIZE, seed=3).image).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@contextmanager
def open_bench(database_url: str | None, work: Path) -> Iterator[Bench]:
    """A migrated database (``None``: a SQLite file in ``work``) and a local object store in ``work``."""
    url = database_url or f"sqlite:///{work / 's3.db'}"
    settings = bench_settings(work, url)
    db = open_database(settings)
    store = build_store(settings)
    try:
        yield Bench(settings, db, store, build_services(settings, db, store), _photo())
    finally:
        db.dispose()


class HasServices(Protocol):
    """What the album set-ups below need: a benchmark's :class:`Bench` or a test's stack."""

    @property
    def db(self) -> Database: ...

    @property
    def services(self) -> Services: ...


def pro_user(bench: HasServices, credits: int) -> str:
    """A new user on the pro plan (100 items per job) with ``credits``: set in the database directly,
    with the grant recorded like any other credit movement."""
    user_id = bench.services.accounts.create_anonymous().user.user_id
    with bench.db.write() as s:
        s.execute(
            update(UserRow)
            .where(UserRow.id == user_id)
            .values(
                plan="pro",
                credits_granted=UserRow.credits_granted + credits,
                credits_available=UserRow.credits_available + credits,
            )
        )
        s.add(BillingEventRow(user_id=user_id, type="grant", amount=credits, ref="bench", created_at=utcnow()))
    return user_id


def marked_uploaded_job(bench: HasServices, user_id: str, items: int, concepts: Mapping[str, Mapping[str, Any]]) -> str:
    """A job of ``items`` photos executed with ``concepts``, its photos marked uploaded in the
    database: for measuring the queue, not what the upload checks do."""
    job_id = bench.services.jobs.create(user_id, preset_id="interior", item_count=items).job.job_id
    with bench.db.write() as s:
        s.execute(update(JobItemRow).where(JobItemRow.job_id == job_id).values(status=ItemStatus.UPLOADED))
        s.execute(update(JobRow).where(JobRow.id == job_id).values(status=JobStatus.UPLOADED))
    bench.services.jobs.execute(
        user_id,
        job_id,
        concepts=actions_from_stored(concepts),
    )
    return job_id


def uploaded_job(bench: Bench, user_id: str, items: int) -> str:
    """A job with every photo uploaded and confirmed, ready to execute."""
    created = bench.services.jobs.create(user_id, preset_id="interior", item_count=items)
    job_id = created.job.job_id
    for idx in range(items):
        bench.store.put(keys.input_key(user_id, job_id, idx), bench.photo, content_type="image/jpeg")
    bench.services.jobs.confirm_upload(user_id, job_id)
    return job_id


def execute(bench: Bench, user_id: str, job_id: str) -> None:
    bench.services.jobs.execute(
        user_id,
        job_id,
        concepts=actions_from_stored(RULE),
        protect=PROTECT,
        output_set=OUTPUT_SET,
    )


def wait_done(bench: Bench, job_ids: Sequence[str]) -> None:
    deadline = time.monotonic() + DONE_TIMEOUT_S
    while time.monotonic() < deadline:
        with bench.db.read() as s:
            states = list(
                s.execute(select(JobRow.status, JobRow.done_items, JobRow.total_items).where(JobRow.id.in_(job_ids)))
            )
        if all(status in ("done", "failed", "canceled") for status, _, _ in states):
            bad = [(status, done, total) for status, done, total in states if status != "done" or done != total]
            if bad:
                raise RuntimeError(f"jobs did not finish cleanly: {bad}")
            return
        time.sleep(0.02)
    raise RuntimeError(f"jobs not done after {DONE_TIMEOUT_S} s")


def timed_albums(bench: Bench, albums: Sequence[tuple[str, str]]) -> float:
    """Execute every (user, job) and return the seconds until all are done."""
    started = time.perf_counter()
    for user_id, job_id in albums:
        execute(bench, user_id, job_id)
    wait_done(bench, [job_id for _, job_id in albums])
    return time.perf_counter() - started


# -- measurements ---------------------------------------------------------------------------------------


def direct_seconds(bench: Bench, albums: Sequence[tuple[str, str]]) -> float:
    """The reference: the pipeline's own work for the albums (every item's execute, then each set's
    packaging), called directly in this process one after the other. Claims and results still go
    through the queue so that packaging finds its items, but only the pipeline calls are timed."""
    for user_id, job_id in albums:
        execute(bench, user_id, job_id)
    queue = WorkQueue(bench.db, bench.settings.queue)
    pipeline = Pipeline(bench.db, bench.store, InstantSegmenter(), bench.settings.photos)

    async def go() -> float:
        work_s = 0.0
        while (claim := queue.claim("direct")) is not None:
            started = time.perf_counter()
            result = await pipeline.run(claim)
            work_s += time.perf_counter() - started
            if claim.stage == "package" and isinstance(result, PackageOutputs):
                queue.complete_package(claim, result.set_key, stored_bytes=result.stored_bytes)
            elif isinstance(result, ItemOutputs):
                queue.complete_item(claim, result)
            else:
                raise RuntimeError(f"unexpected {claim.stage} result {type(result).__name__}")
        return work_s

    seconds = asyncio.run(go())
    wait_done(bench, [job_id for _, job_id in albums])
    return seconds


def _albums(bench: Bench, jobs: int, items: int) -> list[tuple[str, str]]:
    """``jobs`` uploaded albums of ``items`` photos, one pro user each."""
    albums = []
    for _ in range(jobs):
        user_id = pro_user(bench, items)
        albums.append((user_id, uploaded_job(bench, user_id, items)))
    return albums


def scaling(database_url: str | None, workers: int, jobs: int, items: int) -> dict[str, Any]:
    """``jobs`` albums of ``items`` photos (one user each) through ``workers`` worker processes."""
    work = Path(tempfile.mkdtemp(prefix="queue-bench-"))
    try:
        with open_bench(database_url, work) as bench:
            albums = _albums(bench, jobs, items)
            with worker_processes(workers, work, bench.settings.effective_database_url):
                seconds = timed_albums(bench, albums)
        total = jobs * items
        return {
            "workers": workers,
            "items": total,
            "seconds": round(seconds, 2),
            "items_per_s": round(total / seconds, 2),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def growth(database_url: str | None, workers: int, sizes: Sequence[int]) -> list[dict[str, Any]]:
    """One album per size, one after the other, on one database and one set of worker processes."""
    work = Path(tempfile.mkdtemp(prefix="queue-growth-"))
    try:
        with open_bench(database_url, work) as bench:
            user_id = pro_user(bench, sum(sizes))
            jobs = {n: uploaded_job(bench, user_id, n) for n in sizes}
            rows = []
            with worker_processes(workers, work, bench.settings.effective_database_url):
                for n in sizes:
                    seconds = timed_albums(bench, [(user_id, jobs[n])])
                    rows.append({"items": n, "seconds": round(seconds, 2), "ms_per_item": round(seconds * 1000 / n, 1)})
        largest = rows[-1]["ms_per_item"]
        for row in rows:
            row["x_largest"] = round(row["ms_per_item"] / largest, 2)
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def direct_rate(database_url: str | None, jobs: int, items: int) -> float:
    """Items per second of :func:`direct_seconds` for ``jobs`` albums of ``items`` on a fresh database."""
    work = Path(tempfile.mkdtemp(prefix="queue-direct-"))
    try:
        with open_bench(database_url, work) as bench:
            warm = _albums(bench, 1, 1)  # first calls pay for lazy imports and caches
            direct_seconds(bench, warm)
            return jobs * items / direct_seconds(bench, _albums(bench, jobs, items))
    finally:
        shutil.rmtree(work, ignore_errors=True)
