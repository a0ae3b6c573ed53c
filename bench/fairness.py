"""How long one user's single photo waits behind another user's album, through the real queue,
pipeline and tiny SAM3 (onnxruntime in-process), one worker, SQLite.

User A queues ten photos (a full free-plan album), then user B one photo. Reported: seconds from B's
execute until B's job is done, and until A's is; run alone, B's photo is the reference.

    python -m bench.fairness          # prints one JSON line
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from pathlib import Path

from server.db.tables import JobRow
from server.inference.factory import build_segmenter
from server.pipeline import Pipeline
from server.service.job_state import TERMINAL
from server.work.queue import WorkQueue
from server.work.worker import Worker
from tests.support.pipeline import link_tiny_model, queued_job
from tests.support.stack import Stack, make_stack

ALBUM = 10
SIZE = (640, 480)


async def _until_done(stack: Stack, jobs: dict[str, str]) -> dict[str, float]:
    """Run one worker until every job is terminal; seconds from the worker's start (the model
    loaded) to each job's end."""
    finished: dict[str, float] = {}
    async with contextlib.AsyncExitStack() as resources:
        segmenter = await build_segmenter(stack.settings, resources)
        started = time.perf_counter()
        worker = Worker(
            WorkQueue(stack.db, stack.settings.queue),
            Pipeline(stack.db, stack.store, segmenter, stack.settings.photos),
            name="bench",
            lease_s=stack.settings.queue.lease_s,
            poll_s=0.05,
        )
        stopping = asyncio.Event()
        task = asyncio.create_task(worker.run(stopping))
        while len(finished) < len(jobs):
            await asyncio.sleep(0.05)
            with stack.db.read() as s:
                for name, job_id in jobs.items():
                    row = s.get(JobRow, job_id)
                    if name not in finished and row is not None and row.status in TERMINAL:
                        finished[name] = round(time.perf_counter() - started, 2)
        stopping.set()
        await task
    return finished


def run() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        data = link_tiny_model(Path(tmp) / "data")
        stack = make_stack(f"sqlite:///{tmp}/f.db", data, inference="onnx")
        _, alone = queued_job(stack, 1, width=SIZE[0], height=SIZE[1])
        reference = asyncio.run(_until_done(stack, {"alone": alone}))["alone"]
        _, big = queued_job(stack, ALBUM, width=SIZE[0], height=SIZE[1])
        _, small = queued_job(stack, 1, width=SIZE[0], height=SIZE[1])
        behind = asyncio.run(_until_done(stack, {"big": big, "small": small}))
        stack.db.dispose()
    return {
        "album_photos": ALBUM,
        "photo": list(SIZE),
        "single_photo_alone_s": reference,
        "single_photo_behind_album_s": behind["small"],
        "album_s": behind["big"],
    }


if __name__ == "__main__":
    print(json.dumps(run()))
