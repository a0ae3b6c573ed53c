"""The boto3 adapter against a real S3-compatible server (moto's, in its own process).

moto checks neither SigV4 query signatures nor their expiry, so what is tested here is that our URLs
work as real clients use them and that their signed parts are the ones AWS enforces (the method, the
key and the Content-Type header); the local store's tests cover rejection of tampered URLs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from server.config import Settings
from server.errors import NotFound, PayloadTooLarge, StorageUnavailable
from server.ports import free_port
from server.storage.port import ObjectInfo, ObjectStore, verify_upload
from server.storage.s3 import S3ObjectStore
from tests.servers.s3server import S3Endpoint

pytestmark = pytest.mark.integration

KEY = "inputs/u1/j1/0.jpg"


def _store(endpoint: S3Endpoint, bucket: str, max_upload_bytes: int = 1000) -> S3ObjectStore:
    return S3ObjectStore(
        bucket=bucket,
        region=endpoint.region,
        endpoint_url=endpoint.url,
        access_key_id=endpoint.access_key_id,
        secret_access_key=endpoint.secret_access_key,
        max_upload_bytes=max_upload_bytes,
    )


@pytest.fixture
def store(s3_endpoint: S3Endpoint) -> Iterator[S3ObjectStore]:
    s = _store(s3_endpoint, f"test-{uuid.uuid4().hex[:12]}")
    s.ensure_bucket()
    yield s


def test_it_is_an_object_store(store: S3ObjectStore) -> None:
    def accepts(s: ObjectStore) -> int:
        return s.max_upload_bytes

    assert accepts(store) == 1000


def test_from_settings_uses_the_explicit_settings(s3_endpoint: S3Endpoint) -> None:
    settings = Settings().changed(
        storage="s3",
        s3_endpoint_url=s3_endpoint.url,
        s3_bucket="from-settings",
        s3_region="eu-west-1",
        s3_access_key_id=s3_endpoint.access_key_id,
        s3_secret_access_key=s3_endpoint.secret_access_key,
        max_upload_bytes=1234,
    )
    store = S3ObjectStore.from_settings(settings)
    store.ensure_bucket()
    store.check()
    assert (store.bucket, store.max_upload_bytes) == ("from-settings", 1234)
    url = store.presign_get(KEY, expires_s=60)
    assert "eu-west-1" in parse_qs(urlsplit(url).query)["X-Amz-Credential"][0]


def test_ensure_bucket_creates_once_and_is_idempotent(s3_endpoint: S3Endpoint) -> None:
    s = _store(s3_endpoint, f"fresh-{uuid.uuid4().hex[:12]}")
    with pytest.raises(StorageUnavailable):
        s.check()
    s.ensure_bucket()
    s.ensure_bucket()
    s.check()


def test_put_get_head_delete(store: S3ObjectStore) -> None:
    assert store.head(KEY) is None
    store.put(KEY, b"\xff\xd8photo", content_type="image/jpeg")
    assert store.head(KEY) == ObjectInfo(size=7, content_type="image/jpeg")
    assert store.get(KEY) == b"\xff\xd8photo"
    store.delete(KEY)
    assert store.head(KEY) is None
    with pytest.raises(NotFound) as caught:
        store.get(KEY)
    assert caught.value.__cause__ is not None
    store.delete(KEY)


def test_get_with_a_cap(store: S3ObjectStore) -> None:
    store.put(KEY, b"x" * 3_000_000, content_type="image/jpeg")
    assert len(store.get(KEY, max_bytes=3_000_000)) == 3_000_000
    with pytest.raises(PayloadTooLarge):
        store.get(KEY, max_bytes=2_999_999)


def test_presigned_put_then_head_and_get(store: S3ObjectStore) -> None:
    before = datetime.now(UTC)
    req = store.presign_put(KEY, content_type="image/png", expires_s=900)
    assert req.method == "PUT"
    assert req.headers == {"Content-Type": "image/png"}
    assert 898 <= (req.expires_at - before).total_seconds() <= 900
    query = parse_qs(urlsplit(req.url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["900"]
    # Content-Type is a signed header: a real S3 refuses an upload with any other type.
    assert "content-type" in query["X-Amz-SignedHeaders"][0].split(";")

    r = httpx.put(req.url, content=b"\x89PNG data", headers=req.headers)
    assert r.status_code == 200, r.text
    assert store.head(KEY) == ObjectInfo(size=9, content_type="image/png")
    assert verify_upload(store, KEY) == ObjectInfo(size=9, content_type="image/png")

    r = httpx.get(store.presign_get(KEY, expires_s=60))
    assert r.status_code == 200
    assert r.content == b"\x89PNG data"
    assert r.headers["content-type"] == "image/png"


def test_oversized_presigned_upload_is_caught_at_confirmation(store: S3ObjectStore) -> None:
    req = store.presign_put(KEY, content_type="image/jpeg", expires_s=60)
    r = httpx.put(req.url, content=b"x" * 1001, headers=req.headers)
    assert r.status_code == 200  # S3 cannot cap a presigned PUT ...
    with pytest.raises(PayloadTooLarge):
        verify_upload(store, KEY)  # ... so confirm-upload does.
    with pytest.raises(NotFound):
        verify_upload(store, "inputs/u1/j1/1.jpg")


def test_presigned_get_of_a_missing_key_is_404(store: S3ObjectStore) -> None:
    r = httpx.get(store.presign_get("inputs/u1/j1/9.jpg", expires_s=60))
    assert r.status_code == 404


def test_bad_keys_never_reach_the_server(store: S3ObjectStore) -> None:
    for key in ("../x", "/abs", "a//b"):
        with pytest.raises(ValueError):
            store.put(key, b"x", content_type="text/plain")
        with pytest.raises(ValueError):
            store.presign_put(key, content_type="text/plain", expires_s=60)


def test_an_unreachable_store_is_storage_unavailable() -> None:
    dead = S3ObjectStore(
        bucket="nothing-here",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        access_key_id="a",
        secret_access_key="b",
        connect_timeout_s=0.5,
    )
    for call in (dead.check, dead.ensure_bucket, lambda: dead.get(KEY), lambda: dead.head(KEY)):
        with pytest.raises(StorageUnavailable) as caught:
            call()
        assert caught.value.__cause__ is not None
