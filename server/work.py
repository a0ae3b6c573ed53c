"""What one claim works on: the job and item fields the pipeline reads, as plain values.

One shape for both kinds of worker: a direct worker reads it from the database rows
(``from_rows``); a worker behind the WorkerService receives it with its lease as JSON
(``to_json`` / ``from_json``), so the pipeline never needs to know where it came from.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from server.db.tables import JobItemRow, JobRow


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
    instances: list[dict[str, Any]] | None

    @classmethod
    def from_row(cls, row: JobItemRow) -> WorkItem:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})


T = TypeVar("T", WorkJob, WorkItem)


def to_json(value: WorkJob | WorkItem) -> str:
    return json.dumps(asdict(value), separators=(",", ":"))


def job_from_json(text: str) -> WorkJob:
    return _decode(WorkJob, text)


def item_from_json(text: str) -> WorkItem:
    return _decode(WorkItem, text)


def _decode(cls: type[T], text: str) -> T:
    doc = json.loads(text)
    if not isinstance(doc, dict) or set(doc) != {f.name for f in fields(cls)}:
        raise ValueError(f"not a {cls.__name__} document")
    return cls(**doc)
