"""What confirm-upload and analyze cost the service and the user, on SQLite and PostgreSQL.

- confirm-upload refused for one missing photo reads and decodes none of the others;
- full decodes are bounded process-wide, however many confirms run at once;
- analyze is priced (a fraction of execute), reserved and spent like execute, charged once per
  concept on each photo, bounded per job; cancel refunds only what was not spent.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from bench.instant_segmenter import InstantSegmenter
from server import images
from server.errors import InsufficientCredits, QuotaExceeded, ValidationFailed
from server.inference.port import Instance
from server.pipeline import Pipeline
from server.service.settle import AnalysisOutputs
from server.storage import keys
from server.work.queue import WorkQueue
from tests.support.invariants import check_invariants
from tests.support.stack import Stack, jpeg_bytes, make_stack

pytestmark = pytest.mark.integration


class RecordingSegmenter(InstantSegmenter):
    """The instant segmenter, remembering which concepts each call asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[frozenset[str]] = []

    async def segment(
        self, image: npt.NDArray[np.uint8], concepts: Mapping[str, Sequence[str]]
    ) -> dict[str, list[Instance]]:
        self.calls.append(frozenset(concepts))
        return await super().segment(image, concepts)


def _uploaded_job(stack: Stack, n: int, *, upload: int | None = None) -> tuple[str, str]:
    user = stack.services.accounts.create_anonymous().user.user_id
    created = stack.services.jobs.create(user, preset_id="interior", item_count=n)
    for target in created.uploads[: n if upload is None else upload]:
        stack.store.put(target.key, jpeg_bytes(seed=target.idx), content_type="image/jpeg")
    return user, created.job.job_id


# -- confirm-upload ---------------------------------------------------------------------------------
def test_confirm_with_one_missing_item_reads_and_decodes_nothing(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    user, job_id = _uploaded_job(stack, 4, upload=3)  # item 3 never uploaded
    reads: list[str] = []
    decodes: list[int] = []
    real_get, real_verify, real_probe = stack.store.get, images.verify_decodes, images.probe

    def get(key: str, *, max_bytes: int | None = None) -> bytes:
        reads.append(key)
        return real_get(key, max_bytes=max_bytes)

    def verify(data: bytes, *, max_pixels: int) -> None:
        decodes.append(len(data))
        real_verify(data, max_pixels=max_pixels)

    def probe(data: bytes, *, max_pixels: int) -> images.ImageInfo:
        decodes.append(-1)  # a header probe: -1, a full decode: the byte count
        return real_probe(data, max_pixels=max_pixels)

    monkeypatch.setattr(stack.store, "get", get)
    monkeypatch.setattr(images, "verify_decodes", verify)
    monkeypatch.setattr(images, "probe", probe)
    for _ in range(3):  # repeatably
        with pytest.raises(ValidationFailed, match="not uploaded yet: 3"):
            stack.services.jobs.confirm_upload(user, job_id)
    assert reads == [] and decodes == []
    assert stack.services.jobs.get(user, job_id).status == "created"

    # Once the last photo is there, each is read and decoded exactly once.
    stack.store.put(keys.input_key(user, job_id, 3), jpeg_bytes(), content_type="image/jpeg")
    assert stack.services.jobs.confirm_upload(user, job_id).status == "uploaded"
    assert len(reads) == 4 and sorted(decodes)[:4] == [-1] * 4 and len(decodes) == 8  # 4 probes, 4 decodes


@pytest.mark.parametrize("bound", [1, 2])
def test_full_decodes_are_bounded_across_concurrent_confirms(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bound: int
) -> None:
    stack = make_stack(database_url, tmp_path / "data", decode_concurrency=bound)
    jobs = [_uploaded_job(stack, 3) for _ in range(4)]
    active = 0
    peak = 0
    lock = threading.Lock()
    real_verify = images.verify_decodes

    def verify(data: bytes, *, max_pixels: int) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            time.sleep(0.05)  # long enough for the other confirms to pile up behind the bound
            real_verify(data, max_pixels=max_pixels)
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(images, "verify_decodes", verify)
    errors: list[BaseException] = []

    def confirm(user: str, job_id: str) -> None:
        try:
            stack.services.jobs.confirm_upload(user, job_id)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=confirm, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert peak == bound, peak
    for user, job_id in jobs:
        assert stack.services.jobs.get(user, job_id).status == "uploaded"


def test_draft_decode_still_refuses_a_truncated_jpeg() -> None:
    whole = jpeg_bytes(640, 480)
    images.verify_decodes(whole, max_pixels=10**7)
    with pytest.raises(ValidationFailed, match="truncated or corrupt"):
        images.verify_decodes(whole[: len(whole) // 2], max_pixels=10**7)


# -- analyze ----------------------------------------------------------------------------------------
def _run_analyses(stack: Stack, pipeline: Pipeline, *, limit: int | None = None) -> int:
    """Claim, run and record analysis work like a worker; stops after ``limit`` claims."""
    queue = WorkQueue(stack.db, stack.settings.queue)
    done = 0
    while (limit is None or done < limit) and (claim := queue.claim("w")) is not None:
        assert claim.stage == "analyze"
        result = asyncio.run(pipeline.run(claim))
        assert isinstance(result, AnalysisOutputs)
        assert queue.complete_analysis(claim, result.instances, stored_bytes=result.stored_bytes)
        done += 1
    return done


def _credits(stack: Stack, user: str) -> tuple[int, int, int]:
    me = stack.services.accounts.me(user)
    return me.credits_available, me.credits_reserved, me.credits_spent


def test_analyze_is_charged_once_per_concept_set(stack: Stack) -> None:
    segmenter = RecordingSegmenter()
    pipeline = Pipeline(stack.db, stack.store, segmenter, stack.settings.photos)
    jobs = stack.services.jobs
    user, job_id = _uploaded_job(stack, 8)
    jobs.confirm_upload(user, job_id)
    per_credit = stack.settings.credits.analyze_items_per_credit
    assert stack.services.accounts.me(user).analyze_items_per_credit == per_credit == 4
    price = 8 // per_credit  # 2 credits for 8 photos: a quarter of execute's 8
    assert _credits(stack, user) == (92, 8, 0)

    jobs.analyze(user, job_id, ["Wall"])
    assert _credits(stack, user) == (92 - price, 8 + price, 0)  # reserved like execute
    assert _run_analyses(stack, pipeline) == 8
    assert _credits(stack, user) == (92 - price, 8, price)  # spent once analysed
    assert segmenter.calls == [frozenset({"Wall"})] * 8

    # The same concepts again: nothing to analyse, nothing charged, nothing queued.
    view = jobs.analyze(user, job_id, ["Wall"])
    assert all(i.analysis == "done" for i in view.items or ())
    assert _run_analyses(stack, pipeline) == 0
    assert _credits(stack, user) == (92 - price, 8, price)

    # A set with one new concept: only the new one is segmented and paid; Wall's instances are kept.
    jobs.analyze(user, job_id, ["Wall", "Floor"])
    assert _run_analyses(stack, pipeline) == 8
    assert segmenter.calls[8:] == [frozenset({"Floor"})] * 8
    assert _credits(stack, user) == (92 - 2 * price, 8, 2 * price)
    items = jobs.get(user, job_id).items or ()
    assert all({i.concept for i in item.instances} == {"Wall", "Floor"} for item in items)
    check_invariants(stack.db)

    # Canceled mid-analysis: the share for the photos analysed is spent, the rest refunded.
    jobs.analyze(user, job_id, ["Ceiling"])
    assert _run_analyses(stack, pipeline, limit=3) == 3
    jobs.cancel(user, job_id)
    spent = -(-price * 3 // 8)  # 2 credits reserved for 8 photos, 3 analysed: 1 credit
    assert _credits(stack, user) == (100 - 2 * price - spent, 0, 2 * price + spent)
    check_invariants(stack.db)


def test_analyses_per_job_are_bounded(database_url: str, tmp_path: Path) -> None:
    stack = make_stack(database_url, tmp_path / "data", max_analyses_per_job=2)
    pipeline = Pipeline(stack.db, stack.store, InstantSegmenter(), stack.settings.photos)
    user, job_id = _uploaded_job(stack, 2)
    stack.services.jobs.confirm_upload(user, job_id)
    for concepts in (["Wall"], ["Floor"]):
        stack.services.jobs.analyze(user, job_id, concepts)
        _run_analyses(stack, pipeline)
    stack.services.jobs.analyze(user, job_id, ["Wall", "Floor"])  # free, and not counted: no work
    with pytest.raises(QuotaExceeded, match="analysed 2 times"):
        stack.services.jobs.analyze(user, job_id, ["Ceiling"])
    check_invariants(stack.db)


def test_analyze_needs_the_credits(database_url: str, tmp_path: Path) -> None:
    stack = make_stack(database_url, tmp_path / "data", starting_credits=2)
    user, job_id = _uploaded_job(stack, 2)  # both credits reserved by the job itself
    stack.services.jobs.confirm_upload(user, job_id)
    with pytest.raises(InsufficientCredits):
        stack.services.jobs.analyze(user, job_id, ["Wall"])
    view = stack.services.jobs.get(user, job_id)
    assert all(i.analysis == "none" for i in view.items or ())
    check_invariants(stack.db)
