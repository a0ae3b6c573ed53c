"""What a worker does with one claim: analyze an item, execute an item, or package a job's set.

    analyze: fetch the photo -> segment -> store every instance (low-res masks + instances.json)
    execute: fetch -> instances (stored by an analysis, else segment) -> layers, protect -> apply
             the rule -> render every template -> store outputs, previews, masks
    package: fetch the renditions of every done item -> zip with manifest.json -> store the set

Each step only reads the database and writes objects; the queue records the outcome in one
transaction afterwards, so a crash at any point leaves nothing half-recorded (objects written by a
lost attempt are overwritten by the next one: keys are deterministic).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

import applier
from server import images
from server.config.sections import PhotoLimits
from server.db.engine import Database
from server.db.tables import JobRow
from server.errors import PayloadTooLarge, ValidationFailed
from server.inference.port import Instance, Segmenter
from server.item_records import StoredInstance, StoredRendition
from server.pipeline.set_package import package_set
from server.pipeline.stored_instances import read_instances, store_instances
from server.pipeline.stored_proof import prove_stored
from server.presets import COMPUTED_PROTECT_LAYERS, PresetSpec
from server.service.job_views import load_items
from server.service.settle import AnalysisOutputs, ItemOutputs, Outcome, PackageOutputs
from server.storage import keys
from server.storage.port import ObjectIO
from server.work import PermanentFailure, WorkItem, WorkJob, preset_of, templates_of
from server.work.queue import Claim

log = logging.getLogger(__name__)

U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Work:
    """One claim's job and item, and the preset they name."""

    job: WorkJob
    item: WorkItem
    preset: PresetSpec

    @classmethod
    def of(cls, job: WorkJob, item: WorkItem) -> Work:
        return cls(job, item, preset_of(job.preset_id))


def load_work(db: Database, claim: Claim) -> Work:
    """The claimed item's job and item as they are in the database now."""
    with db.read() as s:
        job = s.get(JobRow, claim.job_id)
        item = next((i for i in load_items(s, claim.job_id) if i.idx == claim.idx), None) if job else None
    if job is None or item is None:
        raise PermanentFailure(f"job {claim.job_id} item {claim.idx} no longer exists")
    return Work.of(WorkJob.from_row(job), WorkItem.from_row(item))


class Pipeline:
    """``source``: the database (a direct worker: each claim's job and item are read from it), or
    the one claim's ``Work`` (a worker behind the WorkerService, which got it with its lease; it
    cannot package). ``store``: the object store, or presigned URLs standing in for it."""

    def __init__(self, source: Database | Work, store: ObjectIO, segmenter: Segmenter, limits: PhotoLimits) -> None:
        self._source = source
        self._store = store
        self._segmenter = segmenter
        self._limits = limits

    async def run(self, claim: Claim) -> Outcome:
        if claim.stage == "analyze":
            return await self.analyze(claim)
        if claim.stage == "execute":
            return await self.execute(claim)
        return await asyncio.to_thread(self.package, claim)

    # -- shared ---------------------------------------------------------------------------------
    def _load(self, claim: Claim) -> Work:
        if isinstance(self._source, Work):
            if (self._source.job.id, self._source.item.idx) != (claim.job_id, claim.idx):
                raise ValueError(f"this pipeline works on {self._source.job.id}/{self._source.item.idx} only")
            return self._source
        return load_work(self._source, claim)

    def _put(self, key: str, data: bytes, *, content_type: str) -> int:
        """Store one object; returns its size for the job's storage quota."""
        self._store.put(key, data, content_type=content_type)
        return len(data)

    def _photo(self, item: WorkItem) -> tuple[U8, str]:
        data = self._store.get(item.input_key, max_bytes=self._limits.max_upload_bytes)
        sha = hashlib.sha256(data).hexdigest()
        if item.input_sha256 is not None and sha != item.input_sha256:
            # Written through a presigned URL after confirm-upload (an S3 URL cannot be revoked):
            # only the photo that was checked and confirmed is ever processed.
            raise PermanentFailure("VALIDATION_ERROR: the photo was replaced after confirm-upload")
        try:
            pixels = images.decode_rgb(data, max_pixels=self._limits.max_image_pixels)
        except (ValidationFailed, PayloadTooLarge) as e:
            # Unusable for good (swapped after confirm-upload): no retry. "CODE: message" as
            # confirm-upload writes it, so the item's error always names its contract code.
            raise PermanentFailure(f"{e.code}: {e.message}") from e
        return pixels, sha

    async def _segment(self, image: U8, preset: PresetSpec, concepts: Sequence[str]) -> dict[str, list[Instance]]:
        if not concepts:
            return {}
        prompts = {c: list(spec.prompts) for c in concepts if (spec := preset.concept(c)) is not None}
        return await self._segmenter.segment(image, prompts)

    # -- analyze --------------------------------------------------------------------------------
    async def analyze(self, claim: Claim) -> AnalysisOutputs:
        """Segment the requested concepts this item has no instances of yet (the ones it has were
        paid for and are kept), and store every record together."""
        work = await asyncio.to_thread(self._load, claim)
        image, _ = await asyncio.to_thread(self._photo, work.item)
        known = set(work.item.analyzed_concepts or [])
        fresh = [c for c in work.job.analyzed_concepts or [] if c not in known]
        kept = [r for r in work.item.instances or [] if r.concept in known]
        found = await self._segment(image, work.preset, fresh)
        return await asyncio.to_thread(
            store_instances, self._store, self._segmenter.info, work.job, work.item.idx, found, kept
        )

    # -- execute --------------------------------------------------------------------------------
    async def execute(self, claim: Claim) -> ItemOutputs:
        work = await asyncio.to_thread(self._load, claim)
        job, item = work.job, work.item
        image, source_sha = await asyncio.to_thread(self._photo, item)
        rule: dict[str, dict[str, Any]] = dict(job.concepts or {})
        protect = list(job.protect or [])
        wanted = list(dict.fromkeys([*rule, *(p for p in protect if p not in COMPUTED_PROTECT_LAYERS)]))
        analyzed = set(item.analyzed_concepts or []) if item.instances is not None else set()
        reuse = [c for c in wanted if c in analyzed]
        fresh = [c for c in wanted if c not in analyzed]
        if fresh and analyzed:
            # Says why SAM3 runs again after an analysis: default protect layers are concepts too.
            log.info("job %s item %d: segmenting %s, not covered by its analysis", job.id, item.idx, ", ".join(fresh))
        found = await asyncio.to_thread(read_instances, self._store, item.instances or [], reuse)
        segmented = await self._segment(image, work.preset, fresh)
        found.update(segmented)
        records = [r for r in (item.instances or []) if r.concept in reuse]
        written = 0
        if segmented:
            stored = await asyncio.to_thread(
                store_instances, self._store, self._segmenter.info, job, item.idx, segmented, records
            )
            records, written = list(stored.instances), stored.stored_bytes
        choices = (job.instance_choices or {}).get(str(item.idx), {})
        outputs = await asyncio.to_thread(self._render, work, image, source_sha, rule, protect, found, choices, records)
        return replace(outputs, stored_bytes=outputs.stored_bytes + written)

    def _render(
        self,
        work: Work,
        image: U8,
        source_sha: str,
        rule: Mapping[str, Mapping[str, Any]],
        protect: Sequence[str],
        found: Mapping[str, Sequence[Instance]],
        choices: Mapping[str, Any],
        records: Sequence[StoredInstance],
    ) -> ItemOutputs:
        job, idx = work.job, work.item.idx
        try:
            layers: dict[str, applier.ConceptLayer] = {}
            for concept, instances in found.items():
                selection = applier.Selection.from_json(choices.get(concept))
                layers[concept] = applier.concept_layer(concept, instances, image, selection)
            alphas = {c: layer.alpha for c, layer in layers.items()}
            locked = {name: a for layer in layers.values() for name, a in layer.locked.items()}
            protect_mask = applier.build_protect(image, protect, alphas, locked)
            result = applier.apply_rule(image, {c: alphas[c] for c in rule if c in alphas}, rule, protect_mask)
            templates = templates_of(work.preset, job.output_set)
            renditions = applier.render_item(idx, result.image, templates)
        except applier.ApplierError as e:
            raise PermanentFailure(f"the rule cannot be applied to this photo: {e}") from e
        user, jid = job.user_id, job.id
        output_key = keys.output_key(user, jid, idx)
        written = self._put(output_key, images.encode_png(result.image, compress_level=3), content_type="image/png")
        preview_key = keys.preview_key(user, jid, idx)
        written += self._put(preview_key, applier.thumbnail(result.image), content_type="image/jpeg")
        for concept, layer in layers.items():
            alpha8 = np.clip(layer.alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)
            mask = images.encode_png(alpha8, compress_level=3)
            written += self._put(keys.mask_key(user, jid, idx, concept), mask, content_type="image/png")
        stored = []
        for r in renditions:
            ext = r.path.rsplit(".", 1)[-1]
            key = keys.rendition_key(user, jid, idx, r.template, ext)
            written += self._put(key, r.data, content_type=r.media_type)
            stored.append(
                StoredRendition(
                    template_id=r.template,
                    key=key,
                    format=ext,
                    path=r.path,
                    width=r.width,
                    height=r.height,
                    media_type=r.media_type,
                    bytes=len(r.data),
                    sha256=r.sha256,
                )
            )
        deliverables = (output_key, preview_key, *(r.key for r in stored))
        try:
            proof = prove_stored(
                self._store,
                self._limits,
                source_key=work.item.input_key,
                source_sha=source_sha,
                output_key=output_key,
                renditions=stored,
                templates=templates,
                protect=protect_mask,
                has_alpha=result.has_alpha,
            )
            if not proof.passed:
                raise PermanentFailure(f"protect check failed on the stored output: {proof.failure}")
        except PermanentFailure:
            # Nothing of this attempt may be downloaded: the item fails (refunded) with the reason.
            for key in deliverables:
                self._store.delete(key)
            raise
        proven = [replace(r, protect=p) for r, p in zip(stored, proof.renditions, strict=True)]
        check = {
            **result.protect.to_dict(),
            "changed_pixels": proof.master["changed_pixels"],
            "passed": proof.passed,
            "stored": proof.master,
            "steps": applier.sets.steps_record(result),
            "source_sha256": source_sha,
            "alpha": result.has_alpha,
        }
        return ItemOutputs(
            output_key=output_key,
            preview_key=preview_key,
            renditions=proven,
            instances=records,
            protect_check=check,
            width=int(image.shape[1]),
            height=int(image.shape[0]),
            stored_bytes=written,
        )

    # -- package --------------------------------------------------------------------------------
    def package(self, claim: Claim) -> PackageOutputs:
        """The job's set (``set_package``): it reads every item of the job, so it needs the database."""
        if isinstance(self._source, Work):
            raise TypeError("packaging reads every item of the job: it needs the database")
        return package_set(self._source, self._store, self._segmenter.info, claim.job_id)
