"""A job's output set: every rendition of every done item in one zip, with a manifest that proves
the protect checks and lists sha256 hashes (``applier.sets``).

Deterministic, so a retried packaging writes the same zip.
"""

from __future__ import annotations

import applier
from server.db.engine import Database
from server.db.tables import JobRow
from server.errors import NotFound
from server.inference.port import SegmenterInfo
from server.service.job_views import load_items
from server.service.settle import PackageOutputs
from server.storage import keys
from server.storage.port import ObjectIO
from server.work import preset_of, templates_of


def package_set(db: Database, store: ObjectIO, model: SegmenterInfo, job_id: str) -> PackageOutputs:
    with db.read() as s:
        job = s.get(JobRow, job_id)
        if job is None:
            raise NotFound(f"job {job_id} no longer exists")
        items = [i for i in load_items(s, job.id) if i.status == "done"]
    templates = templates_of(preset_of(job.preset_id), job.output_set)
    renditions: list[applier.Rendition] = []
    manifest_items = []
    for item in items:
        for r in item.renditions or []:
            renditions.append(
                applier.Rendition(
                    item=item.idx,
                    template=r.template_id,
                    path=r.path,
                    data=store.get(r.key),
                    width=r.width,
                    height=r.height,
                    media_type=r.media_type,
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
                renditions=[r.manifest_json() for r in item.renditions or []],
            )
        )
    extra = {
        "job_id": job.id,
        "preset": job.preset_id,
        "output_set": job.output_set,
        "model": model.name,
        "masks_meaningful": model.meaningful,
        "failed_items": job.failed_items,
    }
    doc = applier.sets.manifest(
        manifest_items, templates, dict(job.concepts or {}), list(job.protect or []), extra=extra
    )
    data = applier.sets.package(renditions, doc)
    key = keys.set_key(job.user_id, job.id)
    store.put(key, data, content_type="application/zip")
    return PackageOutputs(key, len(data))
