"""The presigned-URL object store of API workers, against a fake S3 endpoint (httpx's transport):
URLs from the lease are used as given, others signed once on first use and kept, the signed headers
are sent, and every failure is the port's error."""

from __future__ import annotations

from collections.abc import Sequence

import httpx
import pytest

from server.errors import NotFound, PayloadTooLarge, StorageUnavailable
from server.storage.presigned import ObjectUrls, PresignedObjectStore

BASE = "http://store.test"


class FakeEndpoint:
    """Objects by URL path; a PUT must carry the Content-Type its URL was signed for."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {"/in/photo.jpg": b"jpeg-bytes"}
        self.signed_types: dict[str, str] = {}
        self.fail_with: int | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.fail_with is not None:
            return httpx.Response(self.fail_with)
        path = request.url.path
        if request.method == "GET":
            data = self.objects.get(path)
            return httpx.Response(200, content=data) if data is not None else httpx.Response(404)
        if request.method == "PUT":
            if request.headers.get("content-type") != self.signed_types.get(path):
                return httpx.Response(403, text="SignatureDoesNotMatch")
            self.objects[path] = request.content
            return httpx.Response(200)
        return httpx.Response(405)


class Replica:
    """Stands in for the WorkerService's SignObjects/DiscardObjects."""

    def __init__(self, endpoint: FakeEndpoint) -> None:
        self.endpoint = endpoint
        self.signed: list[tuple[str, str | None]] = []
        self.discarded: list[str] = []

    def sign(self, objects: Sequence[tuple[str, str | None]]) -> list[ObjectUrls]:
        self.signed.extend(objects)
        out = []
        for key, content_type in objects:
            if content_type is not None:
                self.endpoint.signed_types[f"/{key}"] = content_type
            put = f"{BASE}/{key}" if content_type else None
            out.append(ObjectUrls(key, f"{BASE}/{key}", put, {"content-type": content_type} if content_type else {}))
        return out

    def discard(self, keys: Sequence[str]) -> None:
        self.discarded.extend(keys)


@pytest.fixture
def parts() -> tuple[FakeEndpoint, Replica, PresignedObjectStore]:
    endpoint = FakeEndpoint()
    replica = Replica(endpoint)
    client = httpx.Client(transport=httpx.MockTransport(endpoint))
    known = [ObjectUrls("in/photo.jpg", f"{BASE}/in/photo.jpg")]
    return endpoint, replica, PresignedObjectStore(known, sign=replica.sign, discard=replica.discard, client=client)


def test_reads_the_leased_url_without_asking_for_one(parts: tuple[FakeEndpoint, Replica, PresignedObjectStore]) -> None:
    _, replica, store = parts
    assert store.get("in/photo.jpg") == b"jpeg-bytes"
    assert replica.signed == []


def test_writes_through_a_url_signed_once_and_reads_it_back(
    parts: tuple[FakeEndpoint, Replica, PresignedObjectStore],
) -> None:
    endpoint, replica, store = parts
    store.put("out/0.png", b"png", content_type="image/png")
    assert endpoint.objects["/out/0.png"] == b"png"
    assert store.get("out/0.png") == b"png"  # the read-back of the proof
    store.put("out/0.png", b"png2", content_type="image/png")
    assert replica.signed == [("out/0.png", "image/png")]


def test_a_leased_read_only_url_is_not_used_to_write(parts: tuple[FakeEndpoint, Replica, PresignedObjectStore]) -> None:
    _, replica, store = parts
    store.put("in/photo.jpg", b"x", content_type="image/jpeg")  # the replica decides (it refuses inputs)
    assert replica.signed == [("in/photo.jpg", "image/jpeg")]


def test_errors_are_the_ports(parts: tuple[FakeEndpoint, Replica, PresignedObjectStore]) -> None:
    endpoint, _, store = parts
    with pytest.raises(NotFound):
        store.get("missing.png")
    with pytest.raises(PayloadTooLarge):
        store.get("in/photo.jpg", max_bytes=3)
    endpoint.fail_with = 503
    with pytest.raises(StorageUnavailable):
        store.get("in/photo.jpg")
    with pytest.raises(StorageUnavailable):
        store.put("out/1.png", b"png", content_type="image/png")


def test_a_put_with_headers_other_than_signed_is_refused_by_the_store(
    parts: tuple[FakeEndpoint, Replica, PresignedObjectStore],
) -> None:
    endpoint, _, store = parts
    store.put("out/2.png", b"png", content_type="image/png")
    endpoint.signed_types["/out/2.png"] = "image/jpeg"  # the signature no longer matches
    with pytest.raises(StorageUnavailable):
        store.put("out/2.png", b"png", content_type="image/png")


def test_a_network_failure_is_storage_unavailable() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = httpx.Client(transport=httpx.MockTransport(down))
    store = PresignedObjectStore(
        [ObjectUrls("k", f"{BASE}/k")], sign=lambda o: [], discard=lambda k: None, client=client
    )
    with pytest.raises(StorageUnavailable):
        store.get("k")
    with pytest.raises(StorageUnavailable):  # nothing signed for it
        store.put("other", b"x", content_type="image/png")


def test_delete_goes_to_the_replica(parts: tuple[FakeEndpoint, Replica, PresignedObjectStore]) -> None:
    _, replica, store = parts
    store.delete("out/0.png")
    assert replica.discarded == ["out/0.png"]
