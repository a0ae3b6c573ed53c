"""What one claim works on: the job and item fields the pipeline reads, as plain values, the
preset they name, and the failure that ends the work for good.

One shape for both kinds of worker: a direct worker reads it from the database rows
(``from_rows``); a worker behind the WorkerService receives it with its lease as JSON
(``to_json`` / ``from_json``), so the pipeline never needs to know where it came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import applier
from server.db.tables import JobItemRow, JobRow
from server.errors import S3Error
from server.item_records import StoredInstance, decode_all, encode_all
from server.presets import PRESETS, PresetSpec


class PermanentFailure(S3Error):
    """The item can never succeed (bad rule parameters for this photo, unusable input)."""

    code = "VALIDATION_ERROR"


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


@dataclass(frozen=True)
class WorkJob:
    id: str
    user_id: str
    preset_id: str
    output_set: str | None
    concepts: dict[str, dict[str, Any]] | None
    protect: list[str] | None
    analyzed_concepts: list[str] | None
    instance_choices: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: JobRow) -> WorkJob:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class WorkItem:
    idx: int
    input_key: str
    input_sha256: str | None
    analyzed_concepts: list[str] | None
    instances: list[StoredInstance] | None

    @classmethod
    def from_row(cls, row: JobItemRow) -> WorkItem:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


T = TypeVar("T", WorkJob, WorkItem)


def to_json(value: WorkJob | WorkItem) -> str:
    doc = {f.name: getattr(value, f.name) for f in fields(value)}
    if isinstance(value, WorkItem) and value.instances is not None:
        doc["instances"] = encode_all(value.instances)
    return json.dumps(doc, separators=(",", ":"))


def job_from_json(text: str) -> WorkJob:
    return WorkJob(**_fields(WorkJob, text))


def item_from_json(text: str) -> WorkItem:
    doc = _fields(WorkItem, text)
    if doc["instances"] is not None:
        doc["instances"] = decode_all(StoredInstance, doc["instances"], what="instances")
    return WorkItem(**doc)


def _fields(cls: type[T], text: str) -> dict[str, Any]:
    doc = json.loads(text)
    if not isinstance(doc, dict) or set(doc) != {f.name for f in fields(cls)}:
        raise ValueError(f"not a {cls.__name__} document")
    return doc
