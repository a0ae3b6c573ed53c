"""A whole output set made in memory from rendered photos: the applier's parts composed as the
pipeline composes them from stored files (render every template, write the manifest, zip)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from applier.apply import RenderResult
from applier.sets import ManifestItem, manifest, package, render_item, steps_record
from applier.templates import Template


@dataclass(frozen=True)
class SetItem:
    idx: int
    result: RenderResult
    source_sha256: str | None = None


def build_output_set(
    items: Sequence[SetItem],
    templates: Sequence[Template],
    rule: Mapping[str, object],
    protect: Sequence[str] = (),
    extra: Mapping[str, object] | None = None,
) -> tuple[bytes, dict[str, object]]:
    """(zip bytes, manifest) of every item rendered to every template."""
    by_item = {item.idx: render_item(item.idx, item.result.image, templates) for item in items}
    records = [
        ManifestItem(
            idx=item.idx,
            width=item.result.image.shape[1],
            height=item.result.image.shape[0],
            alpha=item.result.has_alpha,
            steps=steps_record(item.result),
            protect_check=item.result.protect.to_dict(),
            renditions=[r.to_dict() for r in by_item[item.idx]],
            source_sha256=item.source_sha256,
        )
        for item in items
    ]
    doc = manifest(records, templates, rule, protect, extra)
    return package([r for rs in by_item.values() for r in rs], doc), doc
