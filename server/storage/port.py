"""The object-store port: what the service and the pipeline ask of a store, whatever holds the bytes.

Adapters: ``server.storage.local.LocalObjectStore`` (files under the data dir, presigned URLs signed
with HMAC and served by the gateway) and ``server.storage.s3.S3ObjectStore`` (any S3-compatible store,
SigV4 presigned URLs). Both use the key layout of ``server.storage.keys``.

Errors, the same for every adapter: ``server.errors.NotFound`` for a missing key,
``server.errors.PayloadTooLarge`` where a size limit applies, ``server.errors.StorageUnavailable``
for anything the store could not do (transient: the caller may retry), ``ValueError`` for a key
that breaks the key grammar (a programming error, never user input).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from server.errors import NotFound, PayloadTooLarge

MAX_PRESIGN_EXPIRES_S = 7 * 24 * 3600
"""SigV4's ceiling on presigned URL lifetime; the local store keeps the same bound."""


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object without reading it."""

    size: int
    """Bytes."""
    content_type: str


@dataclass(frozen=True)
class PresignedRequest:
    """An upload the client performs itself, straight to the store."""

    url: str
    method: str
    """Always ``PUT`` today."""
    headers: dict[str, str]
    """Headers the client must send verbatim (they are part of the signature)."""
    expires_at: datetime
    """When the URL stops working (timezone-aware, UTC)."""


class ObjectIO(Protocol):
    """What the pipeline asks of a store: every ``ObjectStore``, or presigned URLs standing in for
    one (``server.storage.presigned``) on a worker that holds no storage credentials."""

    def put(self, key: str, data: bytes, *, content_type: str) -> None: ...

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes: ...

    def delete(self, key: str) -> None: ...


class ObjectStore(Protocol):
    """A flat namespace of immutable-once-written objects addressed by key."""

    @property
    def max_upload_bytes(self) -> int:
        """The largest object a client may upload through a presigned URL."""
        ...

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        """Store ``data`` under ``key``, replacing any object there; readers see old or new, never half."""
        ...

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """The object's bytes. ``max_bytes`` caps the read (``PayloadTooLarge`` past it)."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """Size and content type, or ``None`` when there is no object at ``key``."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error (as on S3)."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with ``prefix`` (a folder: ends with ``/``); returns
        how many were removed. For the sweeper's purge of a job (``keys.job_prefixes``)."""
        ...

    def presign_put(self, key: str, *, content_type: str, expires_s: int) -> PresignedRequest:
        """A URL through which a client uploads ``key`` with exactly ``content_type``."""
        ...

    def seal(self, key: str) -> None:
        """Refuse further uploads through presigned URLs to ``key`` (confirm-upload, cancel).

        The local store refuses such a PUT with 403. An S3 presigned URL cannot be revoked, so there
        this does nothing and the hash pinned at confirm-upload is what keeps a swapped photo out."""
        ...

    def presign_get(self, key: str, *, expires_s: int, filename: str | None = None) -> str:
        """A URL through which anyone holding it downloads ``key`` until it expires (``expires_s``
        from now, whole seconds, never sooner). With ``filename`` (``signing.FILENAME``) the download
        carries ``Content-Disposition`` naming it (``content_disposition``)."""
        ...

    def check(self) -> None:
        """Readiness: return if the store answers, raise ``StorageUnavailable`` otherwise."""
        ...


def content_disposition(filename: str) -> str:
    """How a download is named: archives are saved (``attachment``), images shown (``inline``)."""
    kind = "attachment" if filename.endswith(".zip") else "inline"
    return f'{kind}; filename="{filename}"'


def check_expires(expires_s: int) -> int:
    """Validate a presigned URL lifetime (1 s .. 7 days)."""
    if not isinstance(expires_s, int) or isinstance(expires_s, bool):
        raise ValueError(f"expires_s must be an integer, got {expires_s!r}")
    if not 1 <= expires_s <= MAX_PRESIGN_EXPIRES_S:
        raise ValueError(f"expires_s must be within 1..{MAX_PRESIGN_EXPIRES_S}, got {expires_s}")
    return expires_s


def verify_upload(store: ObjectStore, key: str, *, max_bytes: int | None = None) -> ObjectInfo:
    """Check that a client's upload to ``key`` arrived and is within the upload size limit.

    ``confirm-upload`` calls this for every item. It is where the limit holds on S3: a presigned PUT
    cannot cap the body size (only POST policies can), so an oversized object is caught here, before
    anything reads it. On the local store the gateway already refused it while streaming.
    """
    limit = store.max_upload_bytes if max_bytes is None else max_bytes
    info = store.head(key)
    if info is None:
        raise NotFound(f"object {key} was not uploaded")
    if info.size > limit:
        raise PayloadTooLarge(f"object {key} is {info.size} bytes; the limit is {limit} bytes")
    return info
