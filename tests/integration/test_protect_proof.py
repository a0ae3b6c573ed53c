"""The protect proof runs on what is stored: the real pipeline with a segmenter that returns the
synthetic scene's true masks, a real object store, and faults planted in the stored bytes, the
renderer and ``enforce``. A planted fault must fail the item (refunded), never ship."""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

import applier.apply
import applier.sets
import applier.templates
from scripts.scenes import Scene, interior_scene, low_res_probability, seller_scene
from server.db.tables import JobRow
from server.errors import NotFound
from server.inference.port import Instance, SegmenterInfo
from server.pipeline import Pipeline
from server.service.concept_action import actions_from_stored
from server.service.job_state import TERMINAL
from server.storage.port import ObjectStore
from server.work.queue import WorkQueue
from server.work.worker import Worker
from tests.support.fake_segmenter import FakeSegmenter
from tests.support.invariants import check_invariants
from tests.support.pipeline import job_items
from tests.support.stack import Stack

U8 = npt.NDArray[np.uint8]


class SceneSegmenter(FakeSegmenter):
    """Answers with the scene's ground-truth masks, one instance per concept (as SAM3 would at 288px)."""

    def __init__(self, scene: Scene) -> None:
        self._scene = scene

    @property
    def info(self) -> SegmenterInfo:
        return SegmenterInfo("scene:truth", meaningful=True)

    async def segment(self, image: U8, concepts: Mapping[str, Sequence[str]]) -> dict[str, list[Instance]]:
        out: dict[str, list[Instance]] = {}
        for concept in concepts:
            mask = self._scene.masks.get(concept)
            if mask is None or not mask.any():
                out[concept] = []
                continue
            ys, xs = np.nonzero(mask)
            box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
            out[concept] = [Instance(concept, 1, 0.99, box, int(mask.sum()), low_res_probability(mask))]
        return out


class TamperingStore:
    """The stack's store, with ``tamper(key, data)`` applied to every object the pipeline writes."""

    def __init__(self, inner: ObjectStore, tamper: Callable[[str, bytes], bytes]) -> None:
        self._inner = inner
        self._tamper = tamper

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        self._inner.put(key, self._tamper(key, data), content_type=content_type)


def _png(pixels: U8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _decode(data: bytes) -> U8:
    with Image.open(io.BytesIO(data)) as im:
        return np.array(im)


def _brighten(data: bytes, fmt: str) -> bytes:
    """The same image, every pixel 60 levels lighter: what a broken encoder path would deliver."""
    pixels = _decode(data).astype(np.int16)
    pixels[..., :3] += 60
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, format=fmt, quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def interior() -> Scene:
    # Larger than the listing templates, so renditions are downscaled and cropped.
    return interior_scene(1760, 1320, seed=2)


@pytest.fixture(scope="module")
def seller() -> Scene:
    return seller_scene(1700, 1700, seed=4)


def _run_job(
    stack: Stack,
    scene: Scene,
    *,
    preset: str,
    concepts: Mapping[str, Any],
    protect: list[str],
    output_set: str,
    store: ObjectStore | None = None,
    timeout_s: float = 120.0,
) -> tuple[str, str]:
    user = stack.services.accounts.create_anonymous().user.user_id
    created = stack.services.jobs.create(user, preset_id=preset, item_count=1, content_types=["image/png"])
    stack.store.put(created.uploads[0].key, _png(scene.image), content_type="image/png")
    job_id = created.job.job_id
    stack.services.jobs.confirm_upload(user, job_id)
    stack.services.jobs.execute(
        user,
        job_id,
        concepts=actions_from_stored(concepts),
        protect=protect,
        output_set=output_set,
    )

    async def drive() -> None:
        pipeline = Pipeline(stack.db, store or stack.store, SceneSegmenter(scene), stack.settings.photos)
        worker = Worker(
            WorkQueue(stack.db, stack.settings.queue), pipeline, name="proof-worker", lease_s=60.0, poll_s=0.05
        )
        stopping = asyncio.Event()
        task = asyncio.create_task(worker.run(stopping))
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                with stack.db.read() as s:
                    row = s.get(JobRow, job_id)
                    assert row is not None
                    if row.status in TERMINAL:
                        return
                assert time.monotonic() < deadline, f"job {job_id} not finished within {timeout_s}s"
                await asyncio.sleep(0.05)
        finally:
            stopping.set()
            await task

    asyncio.run(drive())
    return user, job_id


def _manifest(stack: Stack, user: str, job_id: str) -> dict[str, Any]:
    view = stack.services.jobs.get(user, job_id)
    assert view.set_key
    with zipfile.ZipFile(io.BytesIO(stack.store.get(view.set_key))) as zf:
        doc: dict[str, Any] = json.loads(zf.read("manifest.json"))
    return doc


WALL_SAGE = {"Wall": {"action": "recolor", "value": "sage"}}


def _assert_failed_and_refunded(stack: Stack, user: str, job_id: str, fragment: str) -> None:
    view = stack.services.jobs.get(user, job_id)
    assert view.status == "failed"
    [item] = job_items(stack.db, job_id)
    assert item.status == "failed" and item.error is not None and fragment in item.error, item.error
    assert item.output_key is None and not item.renditions
    # Nothing of the failed attempt can be downloaded.
    for key in [f"outputs/{user}/{job_id}/0_result.png"]:
        with pytest.raises(NotFound):
            stack.store.get(key)
    me = stack.services.accounts.me(user)
    assert me.credits_available == stack.settings.credits.starting_credits and me.credits_reserved == 0
    check_invariants(stack.db)


def test_every_stored_rendition_carries_its_measured_proof(stack: Stack, interior: Scene) -> None:
    user, job_id = _run_job(
        stack, interior, preset="interior", concepts=WALL_SAGE, protect=["Text", "Logo"], output_set="listing"
    )
    [item] = job_items(stack.db, job_id)
    assert item.status == "done", item.error
    check = item.protect_check or {}
    assert check["passed"] is True and check["changed_pixels"] == 0
    stored = check["stored"]
    assert stored["protected_pixels"] > 1000 and stored["changed_pixels"] == 0 and stored["max_diff"] == 0
    assert "bit-exact" in stored["method"]
    doc = _manifest(stack, user, job_id)
    [entry] = doc["items"]
    by_template = {r["template"]: r["protect"] for r in entry["renditions"]}
    assert set(by_template) == {"listing_4x3", "square_1080", "original_fit_2048"}
    for proof in by_template.values():
        # JPEG renditions of the protected logo and text report the encoder's measured tolerance.
        assert proof["method"].startswith("lossy:") and proof["passed"] is True
        assert proof["compared_pixels"] > 100
        assert 0 < proof["tolerance"] < 80 and proof["max_diff"] >= 0
        assert proof["share_within_tolerance"] >= proof["min_share_within_tolerance"]


def test_a_lossless_transparent_rendition_is_exact(stack: Stack, seller: Scene) -> None:
    rule = {"Background": {"action": "remove", "mode": "transparent"}}
    _, job_id = _run_job(
        stack, seller, preset="seller", concepts=rule, protect=["Logo", "Text"], output_set="marketplace"
    )
    [item] = job_items(stack.db, job_id)
    assert item.status == "done", item.error
    assert (item.protect_check or {})["alpha"] is True
    by_template: dict[str, dict[str, Any]] = {r.template_id: dict(r.protect or {}) for r in item.renditions or []}
    cutout = by_template["cutout_png"]
    assert cutout["method"].startswith("lossless:") and cutout["max_diff"] == 0 and cutout["compared_pixels"] > 100
    assert by_template["detail_webp"]["method"].startswith("lossy:")
    assert all(p["passed"] for p in by_template.values())


def _truncate(data: bytes) -> bytes:
    """The first half of the object: what an interrupted write would leave."""
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("suffix", "damage", "fragment"),
    [
        ("_result.png", lambda data: _brighten(data, "PNG"), "full-size output"),
        ("square_1080.jpg", lambda data: _brighten(data, "JPEG"), "rendition square_1080"),
        ("listing_4x3.jpg", _truncate, "does not decode"),
    ],
    ids=["tampered-master", "tampered-rendition", "rendition-that-does-not-decode"],
)
def test_a_damaged_stored_object_fails_the_item(
    stack: Stack, interior: Scene, suffix: str, damage: Callable[[bytes], bytes], fragment: str
) -> None:
    def tamper(key: str, data: bytes) -> bytes:
        return damage(data) if key.endswith(suffix) else data

    store = TamperingStore(stack.store, tamper)
    user, job_id = _run_job(
        stack,
        interior,
        preset="interior",
        concepts=WALL_SAGE,
        protect=["Text", "Logo"],
        output_set="listing",
        store=store,
    )
    _assert_failed_and_refunded(stack, user, job_id, fragment)


def test_a_renderer_that_alters_protected_pixels_fails_the_item(
    stack: Stack, interior: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The in-memory check passes here (``enforce`` works); only the stored renditions show the fault."""
    honest = applier.templates.render

    def shifted(image: U8, template: applier.Template) -> U8:
        out = honest(image, template).astype(np.int16)
        out[..., 2] -= 40  # a colour cast the encoder path introduced
        return np.clip(out, 0, 255).astype(np.uint8)

    monkeypatch.setattr(applier.sets, "render", shifted)
    user, job_id = _run_job(
        stack, interior, preset="interior", concepts=WALL_SAGE, protect=["Text", "Logo"], output_set="portfolio"
    )
    _assert_failed_and_refunded(stack, user, job_id, "protect check failed")


def test_a_broken_enforce_fails_the_item(stack: Stack, interior: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(applier.apply, "enforce", lambda original, rendered, protect: rendered.copy())
    # The edge band straddles the wall's boundary: the recolour reaches its inner half.
    user, job_id = _run_job(
        stack, interior, preset="interior", concepts=WALL_SAGE, protect=["Text", "edges"], output_set="listing"
    )
    _assert_failed_and_refunded(stack, user, job_id, "full-size output")
