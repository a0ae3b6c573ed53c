"""Running the real pipeline in tests: the tiny SAM3 export, photos that behave like photos, and
in-process workers driven until jobs finish."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Collection
from pathlib import Path

from sqlalchemy import select

from bench.loadgen import photo
from bench.queue_bench import marked_uploaded_job, pro_user
from server.db.engine import Database
from server.db.tables import BillingEventRow, JobItemRow, JobRow
from server.inference.artifacts import REPO_ROOT, ModelArtifact, ensure_artifact
from server.inference.factory import build_segmenter
from server.inference.port import Segmenter
from server.pipeline import Pipeline
from server.service.concept_action import actions_from_stored
from server.service.job_state import TERMINAL
from server.work.queue import WorkQueue
from server.work.worker import Worker, WorkerStats
from tests.support.stack import Stack

ARTIFACTS = REPO_ROOT / ".artifacts"
"""Where ``make test`` exports the tiny model once (mk/model.mk); the tests reuse it."""

WALL_WHITE = {"Wall": {"action": "recolor", "value": "white"}}


@functools.cache
def tiny_artifact() -> ModelArtifact:
    """The tiny random-weight SAM3 export, made by ``make test`` beforehand (a cached no-op then)."""
    return asyncio.run(ensure_artifact(ARTIFACTS, None))


def link_tiny_model(data_dir: Path) -> Path:
    """Give ``data_dir`` the tiny export in its model cache, so the service finds it instead of
    exporting again (the export is keyed by directory name). Returns ``data_dir``."""
    artifact = tiny_artifact()
    models = data_dir / "models"
    models.mkdir(parents=True, exist_ok=True)
    link = models / artifact.root.name
    if not link.exists():
        link.symlink_to(artifact.root)
    return data_dir


def photo_jpeg(width: int, height: int, seed: int = 0) -> bytes:
    """A seeded photo-like JPEG (the load generator's): it compresses like a real photo, unlike noise."""
    return photo(width, height, seed)


def queued_job(stack: Stack, n: int, *, width: int = 96, height: int = 72, preset: str = "interior") -> tuple[str, str]:
    """A new user's job of ``n`` uploaded, confirmed and executed photos: ``(user_id, job_id)``."""
    user = stack.services.accounts.create_anonymous().user.user_id
    created = stack.services.jobs.create(user, preset_id=preset, item_count=n)
    for target in created.uploads:
        stack.store.put(target.key, photo_jpeg(width, height, seed=target.idx), content_type="image/jpeg")
    job_id = created.job.job_id
    stack.services.jobs.confirm_upload(user, job_id)
    concepts = WALL_WHITE if preset == "interior" else {"Background": {"action": "remove"}}
    stack.services.jobs.execute(
        user,
        job_id,
        concepts=actions_from_stored(concepts),
    )
    return user, job_id


def queued_albums(stack: Stack, jobs: int, items: int, *, pro: bool = False) -> list[str]:
    """``jobs`` executed albums of ``items`` photos, one new user each (``pro``: on the pro plan,
    with the credits granted), the photos marked uploaded in the database (``bench.queue_bench``).
    Returns the users."""
    users = []
    for _ in range(jobs):
        user = pro_user(stack, items) if pro else stack.services.accounts.create_anonymous().user.user_id
        marked_uploaded_job(stack, user, items, WALL_WHITE)
        users.append(user)
    return users


def job_items(db: Database, job_id: str) -> list[JobItemRow]:
    with db.read() as s:
        stmt = select(JobItemRow).where(JobItemRow.job_id == job_id).order_by(JobItemRow.idx)
        return list(s.scalars(stmt))


def spend_refs(db: Database, job_id: str) -> list[str]:
    """The ``ref`` of every spend event of the job (``item:<idx>``), sorted: one per item charged."""
    with db.read() as s:
        stmt = select(BillingEventRow.ref).where(BillingEventRow.job_id == job_id, BillingEventRow.type == "spend")
        return sorted(s.scalars(stmt))


def job_statuses(db: Database, job_ids: Collection[str]) -> dict[str, str]:
    with db.read() as s:
        return {j: row.status for j in job_ids if (row := s.get(JobRow, j)) is not None}


async def _drive(stack: Stack, job_ids: Collection[str], workers: int, timeout_s: float) -> list[WorkerStats]:
    def all_terminal() -> bool:
        statuses = job_statuses(stack.db, job_ids)
        return all(statuses.get(j) in TERMINAL for j in job_ids)

    async with contextlib.AsyncExitStack() as resources:
        segmenter = await build_segmenter(stack.settings, resources)
        try:
            return await work_until(stack, segmenter, all_terminal, workers=workers, timeout_s=timeout_s, poll_s=0.05)
        except TimeoutError as e:
            statuses = job_statuses(stack.db, job_ids)
            raise TimeoutError(f"jobs not finished within {timeout_s}s: {statuses}") from e


def process_jobs(
    stack: Stack, job_ids: Collection[str], *, workers: int = 2, timeout_s: float = 60.0
) -> list[WorkerStats]:
    """Run in-process workers (the configured segmenter, the real pipeline) until every job in
    ``job_ids`` is terminal; returns each worker's counters."""
    return asyncio.run(_drive(stack, job_ids, workers, timeout_s))


async def work_until(
    stack: Stack,
    segmenter: Segmenter,
    done: Callable[[], bool],
    *,
    workers: int = 1,
    timeout_s: float = 60.0,
    poll_s: float = 0.02,
) -> list[WorkerStats]:
    """Run in-process workers over ``segmenter`` (the real pipeline and queue) until ``done()``, which
    is asked every ``poll_s`` (the workers' idle poll too)."""
    queue = WorkQueue(stack.db, stack.settings.queue)
    pipeline = Pipeline(stack.db, stack.store, segmenter, stack.settings.photos)
    crew = [
        Worker(queue, pipeline, name=f"test-worker-{n}", lease_s=stack.settings.queue.lease_s, poll_s=poll_s)
        for n in range(workers)
    ]
    stopping = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stopping)) for w in crew]
    deadline = time.monotonic() + timeout_s
    try:
        while not await asyncio.to_thread(done):
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers not done within {timeout_s}s")
            await asyncio.sleep(poll_s)
    finally:
        stopping.set()
        await asyncio.gather(*tasks)
    return [w.stats for w in crew]


def run_workers_until(
    stack: Stack, segmenter: Segmenter, done: Callable[[], bool], *, workers: int = 1, timeout_s: float = 60.0
) -> list[WorkerStats]:
    """:func:`work_until` in an event loop of its own (for a segmenter not bound to a loop)."""
    return asyncio.run(work_until(stack, segmenter, done, workers=workers, timeout_s=timeout_s))


def job_finished(db: Database, job_id: str) -> bool:
    return job_statuses(db, [job_id]).get(job_id) in TERMINAL


def analysis_finished(db: Database, job_id: str) -> bool:
    """Every item of the job has finished its analysis (instances stored, possibly none)."""
    return all(i.stage == "none" and i.instances is not None for i in job_items(db, job_id))
