"""Analyze once, execute reuses, through the real stack: Triton's own statistics show no SAM3 call on execute."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient

from server.inference.local_triton import LocalTriton
from server.inference.triton import TritonSegmenter
from server.inference.triton_repository import SAM3_MODEL
from server.service.concept_action import actions_from_stored
from tests.support.pipeline import (
    WALL_WHITE,
    analysis_finished,
    job_finished,
    job_items,
    photo_jpeg,
    work_until,
)
from tests.support.stack import Stack, make_stack

pytestmark = pytest.mark.integration


@pytest.fixture
def sqlite_stack(tmp_path: Path) -> Iterator[Stack]:
    built = make_stack(f"sqlite:///{tmp_path / 's3.db'}", tmp_path / "data")
    try:
        yield built
    finally:
        built.db.dispose()


def _sam3_requests(url: str) -> int:
    client = grpcclient.InferenceServerClient(url)
    try:
        [stats] = client.get_inference_statistics(SAM3_MODEL).model_stats
        return int(stats.inference_count)
    finally:
        client.close()


def _analyze_then_execute(stack: Stack, url: str, analyze: list[str], photos: int = 2) -> tuple[int, int]:
    """SAM3 requests Triton served during the analysis and during the execute that follows it."""
    user = stack.services.accounts.create_anonymous().user.user_id
    created = stack.services.jobs.create(user, preset_id="interior", item_count=photos)
    for target in created.uploads:
        stack.store.put(target.key, photo_jpeg(160, 120, seed=target.idx), content_type="image/jpeg")
    job_id = created.job.job_id
    stack.services.jobs.confirm_upload(user, job_id)

    async def scenario() -> tuple[int, int, int]:
        segmenter = await TritonSegmenter.connect(url, timeout_s=60)
        try:
            start = _sam3_requests(url)
            stack.services.jobs.analyze(user, job_id, analyze)
            await work_until(stack, segmenter, lambda: analysis_finished(stack.db, job_id))
            analyzed = _sam3_requests(url)
            # The preset's default protect layers: Text, Logo (SAM3) and edges, highlights (computed).
            stack.services.jobs.execute(
                user,
                job_id,
                concepts=actions_from_stored(WALL_WHITE),
            )
            await work_until(stack, segmenter, lambda: job_finished(stack.db, job_id))
            return start, analyzed, _sam3_requests(url)
        finally:
            await segmenter.close()

    start, analyzed, executed = asyncio.run(scenario())
    items = job_items(stack.db, job_id)
    assert all(i.status == "done" and i.output_key for i in items), [(i.status, i.error) for i in items]
    assert all(i.instances for i in items), "the tiny model finds instances (threshold 0)"
    return analyzed - start, executed - analyzed


def test_an_execute_after_a_full_analysis_sends_nothing_to_sam3(
    sqlite_stack: Stack, triton_server: LocalTriton
) -> None:
    during_analysis, during_execute = _analyze_then_execute(sqlite_stack, triton_server.url, ["Wall", "Text", "Logo"])
    assert during_analysis == 2  # one request per photo
    assert during_execute == 0


def test_an_execute_segments_what_the_analysis_did_not_cover(sqlite_stack: Stack, triton_server: LocalTriton) -> None:
    """The counter sees execute's SAM3 requests: one per photo for the protect layers not analyzed."""
    during_analysis, during_execute = _analyze_then_execute(sqlite_stack, triton_server.url, ["Wall"])
    assert (during_analysis, during_execute) == (2, 2)
