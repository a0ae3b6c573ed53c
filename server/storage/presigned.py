"""An object store made of presigned URLs, for a worker that holds no storage credentials.

A worker behind the WorkerService gets GET URLs for a claim's inputs with its lease and asks the
replica (``sign``) for a URL to any other object of the claim when it first touches it; a URL, once
had, is used again (reads back what was written, for the protect proof). Deleting goes through the
replica (``discard``): a presigned URL cannot delete on every store.

Errors as the ``ObjectStore`` port says: ``NotFound`` (HTTP 404), ``PayloadTooLarge`` past
``max_bytes``, ``StorageUnavailable`` for anything else the store or the network did.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import httpx

from server.errors import NotFound, PayloadTooLarge, StorageUnavailable


@dataclass(frozen=True)
class ObjectUrls:
    """Where to read ``key`` and, when writing is allowed, where and how to write it."""

    key: str
    get_url: str
    put_url: str | None = None
    put_headers: Mapping[str, str] = field(default_factory=dict)


Sign = Callable[[Sequence[tuple[str, str | None]]], Sequence[ObjectUrls]]
"""``[(key, content type or None for read only)]`` -> their URLs."""
Discard = Callable[[Sequence[str]], None]


class PresignedObjectStore:
    def __init__(self, known: Iterable[ObjectUrls], *, sign: Sign, discard: Discard, client: httpx.Client) -> None:
        self._urls = {u.key: u for u in known}
        self._sign = sign
        self._discard = discard
        self._client = client
        self._lock = threading.Lock()  # the pipeline calls from worker threads

    def _url(self, key: str, content_type: str | None) -> ObjectUrls:
        with self._lock:
            had = self._urls.get(key)
        if had is not None and (content_type is None or had.put_url is not None):
            return had
        signed = {u.key: u for u in self._sign([(key, content_type)])}
        if key not in signed:
            raise StorageUnavailable(f"no URL was signed for {key}")
        with self._lock:
            self._urls.update(signed)
        return signed[key]

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        url = self._url(key, None).get_url
        try:
            with self._client.stream("GET", url) as response:
                if response.status_code == 404:
                    raise NotFound(f"object {key} not found")
                if response.status_code != 200:
                    raise StorageUnavailable(f"GET {key}: HTTP {response.status_code}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if max_bytes is not None and len(body) > max_bytes:
                        raise PayloadTooLarge(f"object {key} is over {max_bytes} bytes")
                return bytes(body)
        except httpx.HTTPError as e:
            raise StorageUnavailable(f"GET {key}: {e}") from e

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        urls = self._url(key, content_type)
        if urls.put_url is None:
            raise StorageUnavailable(f"no upload URL for {key}")
        headers = httpx.Headers(urls.put_headers)  # as signed: they are part of the signature
        headers.setdefault("Content-Type", content_type)
        try:
            response = self._client.put(urls.put_url, content=data, headers=headers)
        except httpx.HTTPError as e:
            raise StorageUnavailable(f"PUT {key}: {e}") from e
        if not 200 <= response.status_code < 300:
            raise StorageUnavailable(f"PUT {key}: HTTP {response.status_code} {response.text[:200]}")

    def delete(self, key: str) -> None:
        self._discard([key])
