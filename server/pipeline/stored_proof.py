"""The protect proof of what a client downloads: the stored master and renditions, read back.

Each stored file is decoded as a client decodes it and compared with the stored source photo on the
protected pixels (``applier.proof``); a file that changed, or does not decode, fails the item.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

import applier
from server import images
from server.config.sections import PhotoLimits
from server.errors import PayloadTooLarge, ValidationFailed
from server.item_records import StoredRendition
from server.storage.port import ObjectIO
from server.work import PermanentFailure


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


def prove_stored(
    store: ObjectIO,
    limits: PhotoLimits,
    *,
    source_key: str,
    source_sha: str,
    output_key: str,
    renditions: Sequence[StoredRendition],
    templates: Sequence[applier.Template],
    protect: applier.ProtectMask,
    has_alpha: bool,
) -> StoredProof:
    """Read back what a client downloads (the master and every rendition) and the stored source,
    decode them as a client does, and prove the protected pixels on them (``applier.proof``)."""
    limit = limits.max_image_pixels
    source_bytes = store.get(source_key, max_bytes=limits.max_upload_bytes)
    if hashlib.sha256(source_bytes).hexdigest() != source_sha:
        return StoredProof.failed("the stored source photo changed while the item was processed")
    source = images.decode_rgb(source_bytes, max_pixels=limit)
    master = applier.proof.prove_master(source, _read_back(store, output_key, limit), protect)
    if not master.passed:
        return StoredProof.failed(f"full-size output: {master.to_dict()}", master=master.to_dict())
    by_id = {t.id: t for t in templates}
    proofs: list[dict[str, object]] = []
    for record in renditions:
        template = by_id[record.template_id]
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
        stored = _read_back(store, record.key, limit)
        proof = applier.proof.prove_rendition(reference, stored, region, template, encoded_reference=encoded)
        if not proof.passed:
            return StoredProof.failed(f"rendition {template.id}: {proof.to_dict()}", master=master.to_dict())
        proofs.append(proof.to_dict())
    return StoredProof(master=master.to_dict(), renditions=tuple(proofs))


def _read_back(store: ObjectIO, key: str, max_pixels: int) -> npt.NDArray[np.uint8]:
    try:
        return images.decode_display(store.get(key), max_pixels=max_pixels)
    except (ValidationFailed, PayloadTooLarge) as e:
        raise PermanentFailure(f"protect check failed: the stored {key} does not decode: {e.message}") from e
