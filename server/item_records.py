"""What an item stores about its results: its instances and its renditions, as typed records.

The records live in the item's ``instances`` and ``renditions`` JSON columns (``server.db.tables``
decodes them there), in ``{idx}_instances.json`` next to the masks, in a remote worker's report and
in the lease it is handed. This module is the one place that knows their JSON shape, so the stored
format cannot drift between writers and readers: ``to_json`` writes the keys in the order the rows
have always held them (an old row reads back and writes out unchanged), ``from_json`` refuses what
is not a record (an unknown or missing key, a wrong type, a number that is not finite) with
:class:`MalformedRecord` naming the bad key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self, TypeVar

from server.errors import ValidationFailed


class MalformedRecord(ValueError):
    """A record that is not one; ``field`` is the key at fault ("" for the record as a whole)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def _int(doc: Mapping[str, Any], key: str) -> int:
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedRecord(key, "must be an integer")
    return value


def _number(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedRecord(key, "must be a number")
    # Stored values come back in every later answer about the item: one inf would break them all.
    if not math.isfinite(value):
        raise MalformedRecord(key, "must be a finite number")
    return float(value)


def _str(doc: Mapping[str, Any], key: str) -> str:
    value = doc[key]
    if not isinstance(value, str):
        raise MalformedRecord(key, "must be a string")
    return value


def _optional(doc: Mapping[str, Any], key: str, kind: type, what: str) -> Any:
    """``doc[key]`` when present and of ``kind`` (``what`` names it in the error), else None."""
    value = doc.get(key)
    if value is not None and not isinstance(value, kind):
        raise MalformedRecord(key, f"must be {what}")
    return value


def _keys(doc: object, required: frozenset[str], optional: frozenset[str] = frozenset()) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise MalformedRecord("", "must be an object")
    missing = sorted(required - doc.keys())
    if missing:
        raise MalformedRecord(missing[0], "is required")
    unknown = sorted(set(doc) - required - optional)
    if unknown:
        raise MalformedRecord(str(unknown[0]), "unknown field")
    return doc


Box = tuple[float, float, float, float]
"""x0, y0, x1, y1 in photo pixels."""


@dataclass(frozen=True)
class StoredInstance:
    """One numbered instance of a concept in an item's photo."""

    concept: str
    number: int
    score: float
    box: Box
    area: int
    mask_key: str | None = None
    """Its low-resolution mask; None for an instance a remote worker reported by callback (it
    stores no masks the service knows of)."""

    _REQUIRED = frozenset({"concept", "number", "score", "box", "area"})

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "concept": self.concept,
            "number": self.number,
            "score": self.score,
            "box": list(self.box),
            "area": self.area,
        }
        if self.mask_key is not None:
            doc["mask_key"] = self.mask_key
        return doc

    @classmethod
    def from_json(cls, doc: object) -> Self:
        d = _keys(doc, cls._REQUIRED, frozenset({"mask_key"}))
        box = d["box"]
        if not isinstance(box, Sequence) or isinstance(box, str) or len(box) != 4:
            raise MalformedRecord("box", "must be 4 numbers: x0, y0, x1, y1")
        x0, y0, x1, y1 = (_number(v, "box") for v in box)
        mask_key = _optional(d, "mask_key", str, "a string")
        return cls(
            concept=_str(d, "concept"),
            number=_int(d, "number"),
            score=_number(d["score"], "score"),
            box=(x0, y0, x1, y1),
            area=_int(d, "area"),
            mask_key=mask_key,
        )


@dataclass(frozen=True)
class StoredRendition:
    """One template's rendition of an item's output, stored under ``key``."""

    template_id: str
    key: str
    format: str
    """The file extension (``jpg``, ``png``, ``webp``)."""
    path: str
    """Its path inside the set's zip: ``{item}/{template}.{ext}``."""
    width: int
    height: int
    media_type: str
    bytes: int
    sha256: str
    protect: Mapping[str, object] | None = None
    """The protect proof of the stored file (``applier.proof``), once it is proven."""

    _REQUIRED = frozenset(
        {"template_id", "key", "format", "template", "path", "width", "height", "media_type", "bytes", "sha256"}
    )

    def manifest_json(self) -> dict[str, Any]:
        """The rendition as the set's manifest lists it: no storage key, named by ``template``."""
        doc: dict[str, Any] = {
            "template": self.template_id,
            "path": self.path,
            "width": self.width,
            "height": self.height,
            "media_type": self.media_type,
            "bytes": self.bytes,
            "sha256": self.sha256,
        }
        if self.protect is not None:
            doc["protect"] = dict(self.protect)
        return doc

    def to_json(self) -> dict[str, Any]:
        # The stored form has always named the template twice ("template_id" and "template").
        return {"template_id": self.template_id, "key": self.key, "format": self.format, **self.manifest_json()}

    @classmethod
    def from_json(cls, doc: object) -> Self:
        d = _keys(doc, cls._REQUIRED, frozenset({"protect"}))
        if d["template"] != d["template_id"]:
            raise MalformedRecord("template", "must equal template_id")
        protect = _optional(d, "protect", Mapping, "an object")
        return cls(
            template_id=_str(d, "template_id"),
            key=_str(d, "key"),
            format=_str(d, "format"),
            path=_str(d, "path"),
            width=_int(d, "width"),
            height=_int(d, "height"),
            media_type=_str(d, "media_type"),
            bytes=_int(d, "bytes"),
            sha256=_str(d, "sha256"),
            protect=None if protect is None else dict(protect),
        )


class _Record(Protocol):
    def to_json(self) -> dict[str, Any]: ...


R = TypeVar("R", StoredInstance, StoredRendition)


def decode_all(cls: type[R], docs: object, *, what: str) -> list[R]:
    """Every record of ``docs``; :class:`MalformedRecord` naming the record (``what[i]``) and key."""
    if not isinstance(docs, list):
        raise MalformedRecord(what, "must be a list")
    out = []
    for i, doc in enumerate(docs):
        try:
            out.append(cls.from_json(doc))
        except MalformedRecord as e:
            at = f"{what}[{i}]" + (f".{e.field}" if e.field else "")
            raise MalformedRecord(at, e.message) from e
    return out


def reported(cls: type[R], docs: object, *, field: str) -> list[R]:
    """Records a client or a remote worker sent: ``ValidationFailed`` with the field at fault
    (``instances[2].score``), as the contract reports any bad field."""
    if isinstance(docs, list) and any(not isinstance(d, Mapping) for d in docs):
        raise ValidationFailed(f"{field}: each must be an object", field=field)
    try:
        return decode_all(cls, docs, what=field)
    except MalformedRecord as e:
        raise ValidationFailed(str(e), field=e.field) from e


def encode_all(records: Sequence[_Record]) -> list[dict[str, Any]]:
    return [r.to_json() for r in records]
