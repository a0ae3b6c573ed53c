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
import io
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

import applier
from server import images
from server.config import Settings
from server.db.engine import Database
from server.db.tables import JobRow
from server.errors import NotFound, PayloadTooLarge, S3Error, ValidationFailed
from server.inference.port import Instance, Segmenter
from server.presets import COMPUTED_PROTECT_LAYERS, PRESETS, PresetSpec
from server.queue import Claim
from server.service.job_views import load_items
from server.service.settle import AnalysisOutputs, ItemOutputs, PackageOutputs
from server.storage import keys
from server.storage.port import ObjectIO
from server.work import WorkItem, WorkJob

log = logging.getLogger(__name__)

U8 = npt.NDArray[np.uint8]


class PermanentFailure(S3Error):
    """The item can never succeed (bad rule parameters for this photo, unusable input)."""

    code = "VALIDATION_ERROR"


@dataclass(frozen=True)
class StoredProof:
    """The protect proof of one item's stored files (``applier.proof`` records, JSON-ready)."""

    master: Mapping[str, object]
    renditions: tuple[Mapping[str, object], ...] = ()
    failure: str | None = None

    @property
    def passed(self) -> bool:
        return self.failure is None

    @classmethod
    def failed(cls, reason: str, *, master: Mapping[str, object] | None = None) -> StoredProof:
        return cls(master=master or {}, failure=reason)


@dataclass(frozen=True)
class Work:
    """One claim's job and item, and the preset they name."""

    job: WorkJob
    item: WorkItem
    preset: PresetSpec

    @classmethod
    def of(cls, job: WorkJob, item: WorkItem) -> Work:
        return cls(job, item, preset_of(job.preset_id))


def _png(pixels: U8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def _read_png(data: bytes) -> U8:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L"), dtype=np.uint8).copy()


def preset_of(preset_id: str) -> PresetSpec:
    """The job's preset; a preset removed since the job was made fails the work for good (a retry
    would find it missing again)."""
    preset = PRESETS.get(preset_id)
    if preset is None:
        raise PermanentFailure(f"unknown preset {preset_id!r}: it is no longer offered")
    return preset


def templates_of(preset: PresetSpec, set_id: str | None) -> tuple[applier.Template, ...]:
    spec = preset.output_set(set_id)
    if spec is None:
        raise PermanentFailure(f"output set {set_id!r} is not in preset {preset.id!r}")
    return spec.templates


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

    def __init__(self, source: Database | Work, store: ObjectIO, segmenter: Segmenter, settings: Settings) -> None:
        self._source = source
        self._store = store
        self._segmenter = segmenter
        self._settings = settings

    async def run(self, claim: Claim) -> ItemOutputs | AnalysisOutputs | PackageOutputs:
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
        data = self._store.get(item.input_key, max_bytes=self._settings.max_upload_bytes)
        sha = hashlib.sha256(data).hexdigest()
        if item.input_sha256 is not None and sha != item.input_sha256:
            # Written through a presigned URL after confirm-upload (an S3 URL cannot be revoked):
            # only the photo that was checked and confirmed is ever processed.
            raise PermanentFailure("VALIDATION_ERROR: the photo was replaced after confirm-upload")
        try:
            pixels = images.decode_rgb(data, max_pixels=self._settings.max_image_pixels)
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

    def _store_instances(
        self,
        job: WorkJob,
        idx: int,
        found: Mapping[str, Sequence[Instance]],
        kept: Sequence[Mapping[str, Any]] = (),
    ) -> AnalysisOutputs:
        """Low-resolution masks of every instance plus ``{idx}_instances.json`` listing them and the
        ``kept`` records (concepts analysed before); returns every record and the bytes written."""
        records: list[dict[str, Any]] = [dict(r) for r in kept]
        written = 0
        for concept, instances in found.items():
            for inst in instances:
                mask_key = keys.instance_mask_key(job.user_id, job.id, idx, concept, inst.number)
                written += self._put(mask_key, _png(inst.mask), content_type="image/png")
                records.append(
                    {
                        "concept": concept,
                        "number": inst.number,
                        "score": round(float(inst.score), 4),
                        "box": [round(float(v), 1) for v in inst.box_xyxy],
                        "area": int(inst.area),
                        "mask_key": mask_key,
                    }
                )
        doc = {"model": self._segmenter.info.name, "meaningful": self._segmenter.info.meaningful, "instances": records}
        written += self._put(
            keys.instances_key(job.user_id, job.id, idx), json.dumps(doc).encode(), content_type="application/json"
        )
        return AnalysisOutputs(records, written)

    def _stored_instances(
        self, records: Sequence[Mapping[str, Any]], concepts: Sequence[str]
    ) -> dict[str, list[Instance]]:
        out: dict[str, list[Instance]] = {c: [] for c in concepts}
        for r in records:
            concept = str(r["concept"])
            if concept not in out:
                continue
            out[concept].append(
                Instance(
                    concept=concept,
                    number=int(r["number"]),
                    score=float(r["score"]),
                    box_xyxy=(float(r["box"][0]), float(r["box"][1]), float(r["box"][2]), float(r["box"][3])),
                    area=int(r["area"]),
                    mask=_read_png(self._store.get(str(r["mask_key"]))),
                )
            )
        for found in out.values():
            found.sort(key=lambda i: i.number)
        return out

    # -- analyze --------------------------------------------------------------------------------
    async def analyze(self, claim: Claim) -> AnalysisOutputs:
        """Segment the requested concepts this item has no instances of yet (the ones it has were
        paid for and are kept), and store every record together."""
        work = await asyncio.to_thread(self._load, claim)
        image, _ = await asyncio.to_thread(self._photo, work.item)
        known = set(work.item.analyzed_concepts or [])
        fresh = [c for c in work.job.analyzed_concepts or [] if c not in known]
        kept = [r for r in work.item.instances or [] if r.get("concept") in known]
        found = await self._segment(image, work.preset, fresh)
        return await asyncio.to_thread(self._store_instances, work.job, work.item.idx, found, kept)

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
        found = await asyncio.to_thread(self._stored_instances, item.instances or [], reuse)
        segmented = await self._segment(image, work.preset, fresh)
        found.update(segmented)
        records = [r for r in (item.instances or []) if r.get("concept") in reuse]
        written = 0
        if segmented:
            stored = await asyncio.to_thread(self._store_instances, job, item.idx, segmented, records)
            records, written = [dict(r) for r in stored.instances], stored.stored_bytes
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
        records: Sequence[Mapping[str, Any]],
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
            renditions = applier.render_item(idx, result.image, templates_of(work.preset, job.output_set))
        except applier.ApplierError as e:
            raise PermanentFailure(f"the rule cannot be applied to this photo: {e}") from e
        user, jid = job.user_id, job.id
        output_key = keys.output_key(user, jid, idx)
        written = self._put(output_key, _png(result.image), content_type="image/png")
        preview_key = keys.preview_key(user, jid, idx)
        written += self._put(preview_key, applier.thumbnail(result.image), content_type="image/jpeg")
        for concept, layer in layers.items():
            alpha8 = np.clip(layer.alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)
            written += self._put(keys.mask_key(user, jid, idx, concept), _png(alpha8), content_type="image/png")
        stored = []
        for r in renditions:
            ext = r.path.rsplit(".", 1)[-1]
            key = keys.rendition_key(user, jid, idx, r.template, ext)
            written += self._put(key, r.data, content_type=r.media_type)
            stored.append({"template_id": r.template, "key": key, "format": ext, **r.to_dict()})
        deliverables = (output_key, preview_key, *(str(r["key"]) for r in stored))
        try:
            proof = self._prove_stored(work, source_sha, output_key, stored, protect_mask, has_alpha=result.has_alpha)
            if not proof.passed:
                raise PermanentFailure(f"protect check failed on the stored output: {proof.failure}")
        except PermanentFailure:
            # Nothing of this attempt may be downloaded: the item fails (refunded) with the reason.
            for key in deliverables:
                self._store.delete(key)
            raise
        for record, rendition_proof in zip(stored, proof.renditions, strict=True):
            record["protect"] = rendition_proof
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
            renditions=stored,
            instances=records,
            protect_check=check,
            width=int(image.shape[1]),
            height=int(image.shape[0]),
            stored_bytes=written,
        )

    def _prove_stored(
        self,
        work: Work,
        source_sha: str,
        output_key: str,
        renditions: Sequence[Mapping[str, Any]],
        protect: applier.ProtectMask,
        *,
        has_alpha: bool,
    ) -> StoredProof:
        """Read back what a client downloads (the master and every rendition) and the stored source,
        decode them as a client does, and prove the protected pixels on them (``applier.proof``)."""
        limit = self._settings.max_image_pixels
        source_bytes = self._store.get(work.item.input_key, max_bytes=self._settings.max_upload_bytes)
        if hashlib.sha256(source_bytes).hexdigest() != source_sha:
            return StoredProof.failed("the stored source photo changed while the item was processed")
        source = images.decode_rgb(source_bytes, max_pixels=limit)
        master = applier.proof.prove_master(source, self._read_back(output_key, limit), protect)
        if not master.passed:
            return StoredProof.failed(f"full-size output: {master.to_dict()}", master=master.to_dict())
        templates = {t.id: t for t in templates_of(work.preset, work.job.output_set)}
        proofs: list[dict[str, object]] = []
        for record in renditions:
            template = templates[str(record["template_id"])]
            if not protect.mask.any():
                proofs.append({"method": "nothing protected in this photo", "compared_pixels": 0, "passed": True})
                continue
            reference = applier.proof.reference_rendition(source, template, has_alpha=has_alpha)
            region = applier.proof.protected_region(protect.mask, template)
            encoded = (
                None
                if template.format in applier.proof.LOSSLESS_FORMATS
                else images.decode_display(applier.encode(reference, template), max_pixels=limit)
            )
            stored = self._read_back(str(record["key"]), limit)
            proof = applier.proof.prove_rendition(reference, stored, region, template, encoded_reference=encoded)
            if not proof.passed:
                return StoredProof.failed(f"rendition {template.id}: {proof.to_dict()}", master=master.to_dict())
            proofs.append(proof.to_dict())
        return StoredProof(master=master.to_dict(), renditions=tuple(proofs))

    def _read_back(self, key: str, max_pixels: int) -> U8:
        try:
            return images.decode_display(self._store.get(key), max_pixels=max_pixels)
        except (ValidationFailed, PayloadTooLarge) as e:
            raise PermanentFailure(f"protect check failed: the stored {key} does not decode: {e.message}") from e

    # -- package --------------------------------------------------------------------------------
    def package(self, claim: Claim) -> PackageOutputs:
        """The job's set: every rendition of every done item, and a manifest that proves the protect
        checks and lists sha256 hashes. Deterministic, so a retried packaging writes the same zip."""
        if isinstance(self._source, Work):
            raise TypeError("packaging reads every item of the job: it needs the database")
        with self._source.read() as s:
            job = s.get(JobRow, claim.job_id)
            if job is None:
                raise NotFound(f"job {claim.job_id} no longer exists")
            items = [i for i in load_items(s, job.id) if i.status == "done"]
        templates = templates_of(preset_of(job.preset_id), job.output_set)
        renditions: list[applier.Rendition] = []
        manifest_items = []
        for item in items:
            for r in item.renditions or []:
                renditions.append(
                    applier.Rendition(
                        item=item.idx,
                        template=str(r["template"]),
                        path=str(r["path"]),
                        data=self._store.get(str(r["key"])),
                        width=int(r["width"]),
                        height=int(r["height"]),
                        media_type=str(r["media_type"]),
                    )
                )
            check = dict(item.protect_check or {})
            manifest_items.append(
                applier.ManifestItem(
                    idx=item.idx,
                    source_sha256=check.pop("source_sha256", None),
                    width=item.width,
                    height=item.height,
                    alpha=bool(check.pop("alpha", False)),
                    instances=(job.instance_choices or {}).get(str(item.idx)),
                    steps=check.pop("steps", []),
                    protect_check=check,
                    renditions=[
                        {k: v for k, v in r.items() if k not in ("key", "template_id", "format")}
                        for r in item.renditions or []
                    ],
                )
            )
        extra = {
            "job_id": job.id,
            "preset": job.preset_id,
            "output_set": job.output_set,
            "model": self._segmenter.info.name,
            "masks_meaningful": self._segmenter.info.meaningful,
            "failed_items": job.failed_items,
        }
        doc = applier.sets.manifest(
            manifest_items, templates, dict(job.concepts or {}), list(job.protect or []), extra=extra
        )
        data = applier.sets.package(renditions, doc)
        key = keys.set_key(job.user_id, job.id)
        return PackageOutputs(key, self._put(key, data, content_type="application/zip"))
