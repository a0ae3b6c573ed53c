"""Analyze once, execute reuses: SAM3 runs again on execute only for concepts the analysis did not cover.

Real database, object store, queue, pipeline and workers; the segmenter is a counting fake at the
port boundary (``tests/integration/triton/test_analysis_reuse_triton.py`` shows the same through the
real Triton).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from server.inference.port import Instance
from server.presets import PRESETS
from server.service.concept_action import actions_from_stored
from tests.support.fake_segmenter import FakeSegmenter
from tests.support.pipeline import analysis_finished, job_finished, job_items, photo_jpeg, run_workers_until
from tests.support.stack import Stack

WALL_WHITE = {"Wall": {"action": "recolor", "value": "white"}}


class CountingSegmenter(FakeSegmenter):
    """Remembers every request; finds one instance (the photo's left half) per concept."""

    def __init__(self) -> None:
        self.requests: list[dict[str, list[str]]] = []

    async def segment(
        self, image: npt.NDArray[np.uint8], concepts: Mapping[str, Sequence[str]]
    ) -> dict[str, list[Instance]]:
        self.requests.append({c: list(p) for c, p in concepts.items()})
        h, w = image.shape[:2]
        mask = np.zeros((32, 32), np.uint8)
        mask[:, :16] = 255
        box = (0.0, 0.0, w / 2, float(h))
        return {c: [Instance(c, 1, 0.9, box, h * (w // 2), mask)] for c in concepts}


def _analyzed_job(stack: Stack, segmenter: CountingSegmenter, concepts: list[str], items: int = 2) -> tuple[str, str]:
    user = stack.services.accounts.create_anonymous().user.user_id
    created = stack.services.jobs.create(user, preset_id="interior", item_count=items)
    for target in created.uploads:
        stack.store.put(target.key, photo_jpeg(96, 72, seed=target.idx), content_type="image/jpeg")
    job_id = created.job.job_id
    stack.services.jobs.confirm_upload(user, job_id)
    stack.services.jobs.analyze(user, job_id, concepts)
    run_workers_until(stack, segmenter, lambda: analysis_finished(stack.db, job_id))
    return user, job_id


def _execute(
    stack: Stack, segmenter: CountingSegmenter, user: str, job_id: str, protect: list[str] | None
) -> list[dict[str, list[str]]]:
    seen = len(segmenter.requests)
    stack.services.jobs.execute(
        user,
        job_id,
        concepts=actions_from_stored(WALL_WHITE),
        protect=protect,
    )
    run_workers_until(stack, segmenter, lambda: job_finished(stack.db, job_id))
    assert stack.services.jobs.get(user, job_id).status == "done"
    return segmenter.requests[seen:]


def _prompts(*concepts: str) -> dict[str, list[str]]:
    preset = PRESETS["interior"]
    return {c: list(spec.prompts) for c in concepts if (spec := preset.concept(c)) is not None}


def test_an_execute_whose_concepts_were_all_analyzed_never_segments(stack: Stack) -> None:
    segmenter = CountingSegmenter()
    user, job_id = _analyzed_job(stack, segmenter, ["Wall", "Text", "Logo"])
    assert segmenter.requests == [_prompts("Wall", "Text", "Logo")] * 2  # one per photo
    analyzed = {i.idx: i.instances for i in job_items(stack.db, job_id)}
    # The preset's default protect layers (Text, Logo, edges, highlights) are covered by the analysis.
    assert _execute(stack, segmenter, user, job_id, protect=None) == []
    for item in job_items(stack.db, job_id):
        assert item.status == "done" and item.output_key
        assert item.instances == analyzed[item.idx], "the stored analysis is what execute used"


def test_concepts_the_analysis_missed_are_segmented_alone(stack: Stack) -> None:
    segmenter = CountingSegmenter()
    user, job_id = _analyzed_job(stack, segmenter, ["Wall"])
    # Wall was analyzed; the default protect layers Text and Logo were not: only their phrases go.
    assert _execute(stack, segmenter, user, job_id, protect=None) == [_prompts("Text", "Logo")] * 2
    for item in job_items(stack.db, job_id):
        assert sorted({r.concept for r in item.instances or []}) == ["Logo", "Text", "Wall"]


def test_computed_protect_layers_need_no_segmentation(stack: Stack) -> None:
    segmenter = CountingSegmenter()
    user, job_id = _analyzed_job(stack, segmenter, ["Wall"], items=1)
    assert _execute(stack, segmenter, user, job_id, protect=["edges", "highlights"]) == []
