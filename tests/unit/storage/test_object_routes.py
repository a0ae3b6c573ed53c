"""The gateway's /objects routes: signed uploads and downloads against the local store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from gateway_rest.objects import object_routes
from server.errors import Forbidden
from server.storage.local import LocalObjectStore
from server.storage.port import ObjectInfo
from server.storage.signing import UrlSigner

KEY = "inputs/u1/j1/0.jpg"
BASE = "http://testserver"
LIMIT = 4096


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> LocalObjectStore:
    s = LocalObjectStore(
        tmp_path / "objects",
        signer=UrlSigner(b"s" * 32, clock=clock),
        public_base_url=BASE,
        max_upload_bytes=LIMIT,
    )
    s.ensure_root()
    return s


@pytest.fixture
def client(store: LocalObjectStore) -> Iterator[TestClient]:
    with TestClient(Starlette(routes=object_routes(store))) as c:
        yield c


def _error_code(response: object) -> str:
    body = response.json()  # type: ignore[attr-defined]
    assert body["success"] is False and body["data"] is None
    assert set(body["meta"]) == {"request_id", "timestamp"}
    return str(body["error"]["code"])


def test_signed_upload_then_signed_download(client: TestClient, store: LocalObjectStore) -> None:
    req = store.presign_put(KEY, content_type="image/jpeg", expires_s=60)
    r = client.put(req.url, content=b"\xff\xd8photo", headers=req.headers)
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"key": KEY, "size": 7, "content_type": "image/jpeg"}
    assert store.head(KEY) == ObjectInfo(7, "image/jpeg")

    r = client.get(store.presign_get(KEY, expires_s=60))
    assert r.status_code == 200
    assert r.content == b"\xff\xd8photo"
    assert r.headers["content-type"] == "image/jpeg"
    assert r.headers["x-content-type-options"] == "nosniff"


def test_chunked_upload_is_streamed_to_the_store(client: TestClient, store: LocalObjectStore) -> None:
    req = store.presign_put(KEY, content_type="image/png", expires_s=60)
    r = client.put(req.url, content=iter([b"a" * 1000] * 4), headers=req.headers)
    assert r.status_code == 200, r.text
    assert store.get(KEY) == b"a" * 4000


def test_declared_oversize_upload_is_refused_with_413(client: TestClient, store: LocalObjectStore) -> None:
    req = store.presign_put(KEY, content_type="image/jpeg", expires_s=60)
    r = client.put(req.url, content=b"x" * (LIMIT + 1), headers=req.headers)
    assert r.status_code == 413
    assert _error_code(r) == "PAYLOAD_TOO_LARGE"
    assert store.head(KEY) is None


def test_undeclared_oversize_upload_is_cut_off_with_413(client: TestClient, store: LocalObjectStore) -> None:
    req = store.presign_put(KEY, content_type="image/jpeg", expires_s=60)
    r = client.put(req.url, content=iter([b"x" * 1024] * 5), headers=req.headers)
    assert "content-length" not in r.request.headers
    assert r.status_code == 413
    assert _error_code(r) == "PAYLOAD_TOO_LARGE"
    assert store.head(KEY) is None
    assert [p for p in store.root.rglob("*") if p.is_file()] == []


def test_wrong_content_type_is_forbidden(client: TestClient, store: LocalObjectStore) -> None:
    req = store.presign_put(KEY, content_type="image/jpeg", expires_s=60)
    r = client.put(req.url, content=b"<html>", headers={"Content-Type": "text/html"})
    assert r.status_code == 403
    assert _error_code(r) == "FORBIDDEN"
    assert store.head(KEY) is None


def test_expired_upload_url_is_forbidden(client: TestClient, store: LocalObjectStore, clock: Clock) -> None:
    req = store.presign_put(KEY, content_type="image/jpeg", expires_s=60)
    clock.now += 61
    r = client.put(req.url, content=b"x", headers=req.headers)
    assert r.status_code == 403
    assert "expired" in r.json()["error"]["message"]


def test_url_replayed_for_another_key_is_forbidden(client: TestClient, store: LocalObjectStore) -> None:
    req = store.presign_put(KEY, content_type="image/jpeg", expires_s=60)
    r = client.put(req.url.replace("/0.jpg?", "/1.jpg?"), content=b"x", headers=req.headers)
    assert r.status_code == 403
    assert store.head("inputs/u1/j1/1.jpg") is None


def test_download_url_cannot_upload(client: TestClient, store: LocalObjectStore) -> None:
    store.put(KEY, b"original", content_type="image/jpeg")
    url = store.presign_get(KEY, expires_s=60)
    r = client.put(url, content=b"replaced", headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 403
    assert store.get(KEY) == b"original"


def test_tampered_download_url_is_forbidden(client: TestClient, store: LocalObjectStore) -> None:
    store.put(KEY, b"x", content_type="image/jpeg")
    url = store.presign_get(KEY, expires_s=60)
    r = client.get(url[:-2] + ("AA" if not url.endswith("AA") else "BB"))
    assert r.status_code == 403
    assert _error_code(r) == "FORBIDDEN"
    r = client.get(f"{BASE}/objects/{KEY}")
    assert r.status_code == 403


def test_missing_object_is_404(client: TestClient, store: LocalObjectStore) -> None:
    r = client.get(store.presign_get(KEY, expires_s=60))
    assert r.status_code == 404
    assert _error_code(r) == "NOT_FOUND"


def test_traversal_in_the_path_is_refused(client: TestClient, store: LocalObjectStore, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("do not serve")
    url = store.presign_get(KEY, expires_s=60)
    query = url.split("?", 1)[1]
    for path in ("/objects/../secret.txt", "/objects/%2e%2e/secret.txt", "/objects/inputs/..%2f..%2fsecret.txt"):
        r = client.get(f"{path}?{query}")
        assert r.status_code in (403, 404)
        assert b"do not serve" not in r.content


def test_request_id_is_echoed(client: TestClient, store: LocalObjectStore) -> None:
    r = client.get(store.presign_get(KEY, expires_s=60), headers={"X-Request-Id": "req-123"})
    assert r.json()["meta"]["request_id"] == "req-123"
    assert r.headers["x-request-id"] == "req-123"


def test_a_store_failure_is_an_internal_error(client: TestClient, store: LocalObjectStore) -> None:
    (store.root / "inputs").write_bytes(b"")  # a file where the key's directory must go
    req = store.presign_put(KEY, content_type="image/jpeg", expires_s=60)
    r = client.put(req.url, content=b"x", headers=req.headers)
    assert r.status_code == 500
    assert _error_code(r) == "INTERNAL"


def test_sealed_key_refuses_uploads_but_still_serves(client: TestClient, store: LocalObjectStore) -> None:
    """confirm-upload and cancel seal a photo's key: its upload URL, still within its lifetime, is
    refused (403) and the object stays what was confirmed."""
    req = store.presign_put(KEY, content_type="image/jpeg", expires_s=60)
    assert client.put(req.url, content=b"confirmed", headers=req.headers).status_code == 200
    store.seal(KEY)
    r = client.put(req.url, content=b"swapped", headers=req.headers)
    assert r.status_code == 403 and _error_code(r) == "FORBIDDEN"
    assert store.get(KEY) == b"confirmed"
    assert client.get(store.presign_get(KEY, expires_s=60)).content == b"confirmed"
    # The store's own writes (the service, the workers) are not client uploads.
    store.put(KEY, b"rewritten by the service", content_type="image/jpeg")
    assert store.get(KEY) == b"rewritten by the service"


def test_seal_landing_while_an_upload_streams_refuses_its_commit(store: LocalObjectStore) -> None:
    with store.open_writer(KEY, content_type="image/jpeg", client_upload=True) as writer:
        writer.write(b"first")
    with pytest.raises(Forbidden), store.open_writer(KEY, content_type="image/jpeg", client_upload=True) as writer:
        writer.write(b"second")
        store.seal(KEY)  # confirm-upload came first
    assert store.get(KEY) == b"first"
    assert not list(store.root.rglob("*~tmp"))  # the refused upload left no temporary file


def test_delete_prefix_removes_a_jobs_folder_only(store: LocalObjectStore) -> None:
    for key in ("inputs/u1/j1/0.jpg", "inputs/u1/j1/1.jpg", "inputs/u1/j2/0.jpg"):
        store.put(key, b"x", content_type="image/jpeg")
    store.seal("inputs/u1/j1/0.jpg")
    assert store.delete_prefix("inputs/u1/j1/") == 2
    assert store.head("inputs/u1/j1/0.jpg") is None and store.head("inputs/u1/j2/0.jpg") is not None
    assert not (store.root / "inputs/u1/j1").exists()
    assert store.delete_prefix("inputs/u1/j1/") == 0
    with pytest.raises(ValueError):
        store.delete_prefix("inputs/u1/j2")  # not a folder


@pytest.mark.parametrize("method", ["POST", "DELETE", "PATCH"])
def test_a_wrong_method_is_405_listing_every_method_of_the_path(client: TestClient, method: str) -> None:
    response = client.request(method, f"/objects/{KEY}")
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} == {"GET", "HEAD", "PUT"}
