"""Checking the photos of a job before confirm-upload accepts them: there, within limits, whole.

Two passes, so a call that must fail for a missing object reads and decodes nothing: every object is
looked up first (cheap ``head``), and only when all are there is each one read, pinned (sha256),
probed and fully decoded, the full decodes bounded across the process.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from server import images
from server.config.sections import PhotoLimits
from server.db.tables import JobItemRow
from server.errors import NotFound, PayloadTooLarge, S3Error, ValidationFailed
from server.storage.port import ObjectStore, verify_upload


@dataclass(frozen=True)
class PhotoCheck:
    """Outcome of checking one uploaded object."""

    idx: int
    error: S3Error | None
    size: int = 0
    width: int = 0
    height: int = 0
    content_type: str = ""
    sha256: str | None = None


class UploadChecker:
    def __init__(self, store: ObjectStore, limits: PhotoLimits) -> None:
        self._store = store
        self._limits = limits
        # Full decodes of uploaded photos at once in this process, whoever asks: memory stays
        # bounded by this many decoded photos however many confirms arrive together.
        self._decodes = threading.BoundedSemaphore(limits.decode_concurrency)

    def check(self, items: Sequence[JobItemRow]) -> list[PhotoCheck]:
        """One check per item, in order. ``ValidationFailed`` naming every missing object when one
        is missing (nothing is read then); the first item's error when no photo is usable."""
        heads = [self._head(item) for item in items]
        missing = [item.idx for item, head in zip(items, heads, strict=True) if head is None]
        if missing:
            raise ValidationFailed(
                f"items: not uploaded yet: {', '.join(map(str, missing))}", field=f"items[{missing[0]}]"
            )
        present = [(item, head) for item, head in zip(items, heads, strict=True) if head is not None]
        checks = [head if head.error is not None else self._check_photo(item, head) for item, head in present]
        bad = [(c.idx, c.error) for c in checks if c.error is not None]
        if items and len(bad) == len(items):
            idx, first = bad[0]
            raise type(first)(f"no usable photo in this job; items[{idx}]: {first.message}")
        return checks

    def _head(self, item: JobItemRow) -> PhotoCheck | None:
        """Cheap first pass: the object is there and within the size limit. None when missing."""
        try:
            info = verify_upload(self._store, item.input_key, max_bytes=self._limits.max_upload_bytes)
        except PayloadTooLarge as e:
            return PhotoCheck(item.idx, e, size=self._store.max_upload_bytes)
        except NotFound:
            return None
        return PhotoCheck(item.idx, None, size=info.size)

    def _check_photo(self, item: JobItemRow, head: PhotoCheck) -> PhotoCheck:
        """Read, pin (sha256), probe the header, then decode fully under the process-wide bound."""
        limit = self._limits.max_upload_bytes
        try:
            data = self._store.get(item.input_key, max_bytes=limit)
            sha = hashlib.sha256(data).hexdigest()
            info = images.probe(data, max_pixels=self._limits.max_image_pixels)
            with self._decodes:
                # A full decode proves the file is whole (a truncated JPEG passes a header probe).
                images.verify_decodes(data, max_pixels=self._limits.max_image_pixels)
        except NotFound:
            # Deleted between the two passes: the same answer as missing in the first.
            raise ValidationFailed(f"items: not uploaded yet: {item.idx}", field=f"items[{item.idx}]") from None
        except (ValidationFailed, PayloadTooLarge) as e:
            return PhotoCheck(item.idx, e, size=head.size)
        return PhotoCheck(
            item.idx,
            None,
            size=len(data),
            width=info.width,
            height=info.height,
            content_type=info.content_type,
            sha256=sha,
        )
