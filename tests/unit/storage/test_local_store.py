"""The local store: atomic writes, content types, size limits, containment under its root."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from server.errors import NotFound, PayloadTooLarge, StorageUnavailable
from server.storage.local import LocalObjectStore
from server.storage.port import ObjectInfo, ObjectStore, verify_upload
from server.storage.signing import UrlSigner

KEY = "inputs/u1/j1/0.jpg"


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    s = LocalObjectStore(
        tmp_path / "objects",
        signer=UrlSigner(b"s" * 32),
        public_base_url="http://127.0.0.1:8080/",
        max_upload_bytes=1000,
    )
    s.ensure_root()
    return s


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.is_file() and p.name.endswith("~tmp"))


def test_it_is_an_object_store(store: LocalObjectStore) -> None:
    def accepts(s: ObjectStore) -> int:
        return s.max_upload_bytes

    assert accepts(store) == 1000


def test_put_get_head_delete(store: LocalObjectStore) -> None:
    assert store.head(KEY) is None
    store.put(KEY, b"\xff\xd8jpeg", content_type="image/jpeg")
    assert store.get(KEY) == b"\xff\xd8jpeg"
    assert store.head(KEY) == ObjectInfo(size=6, content_type="image/jpeg")
    assert (store.root / KEY).read_bytes() == b"\xff\xd8jpeg"
    store.delete(KEY)
    assert store.head(KEY) is None
    with pytest.raises(NotFound):
        store.get(KEY)
    store.delete(KEY)  # deleting twice is fine, as on S3


def test_content_type_is_kept_not_guessed(store: LocalObjectStore) -> None:
    store.put("masks/u1/j1/0_instances.json", b"{}", content_type="application/json")
    store.put("outputs/u1/j1/0_result.png", b"x", content_type="image/webp")
    assert store.head("outputs/u1/j1/0_result.png") == ObjectInfo(1, "image/webp")


def test_content_type_falls_back_to_the_extension_without_metadata(store: LocalObjectStore) -> None:
    path = store.root / "outputs/u1/j1/0_result.png"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"png")
    assert store.head("outputs/u1/j1/0_result.png") == ObjectInfo(3, "image/png")


def test_overwrite_replaces_whole_object(store: LocalObjectStore) -> None:
    store.put(KEY, b"a" * 500, content_type="image/jpeg")
    store.put(KEY, b"b", content_type="image/png")
    assert store.get(KEY) == b"b"
    assert store.head(KEY) == ObjectInfo(1, "image/png")
    assert _leftovers(store.root) == []


def test_streamed_upload_past_the_limit_leaves_nothing(store: LocalObjectStore) -> None:
    with pytest.raises(PayloadTooLarge), store.open_writer(KEY, content_type="image/jpeg", max_bytes=1000) as w:
        for _ in range(20):
            w.write(b"x" * 100)
    assert store.head(KEY) is None
    assert _leftovers(store.root) == []


def test_a_failed_upload_keeps_the_previous_object(store: LocalObjectStore) -> None:
    store.put(KEY, b"old", content_type="image/jpeg")
    with pytest.raises(RuntimeError), store.open_writer(KEY, content_type="image/png") as w:
        w.write(b"new but broken")
        raise RuntimeError("client went away")
    assert store.get(KEY) == b"old"
    assert store.head(KEY) == ObjectInfo(3, "image/jpeg")
    assert _leftovers(store.root) == []


def test_upload_at_exactly_the_limit_is_accepted(store: LocalObjectStore) -> None:
    with store.open_writer(KEY, content_type="image/jpeg", max_bytes=1000) as w:
        w.write(b"x" * 600)
        w.write(b"x" * 400)
    assert store.head(KEY) == ObjectInfo(1000, "image/jpeg")


def test_readers_never_see_a_partial_object(store: LocalObjectStore) -> None:
    big, small = b"A" * 200_000, b"B" * 100
    store.put(KEY, small, content_type="image/jpeg")
    seen: set[bytes] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(store.get(KEY))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(30):
            store.put(KEY, big, content_type="image/jpeg")
            store.put(KEY, small, content_type="image/jpeg")
    finally:
        stop.set()
        reader.join()
    assert seen <= {big, small}


def test_get_with_a_cap(store: LocalObjectStore) -> None:
    store.put(KEY, b"x" * 50, content_type="image/jpeg")
    assert store.get(KEY, max_bytes=50) == b"x" * 50
    with pytest.raises(PayloadTooLarge):
        store.get(KEY, max_bytes=49)


def test_verify_upload(store: LocalObjectStore) -> None:
    with pytest.raises(NotFound):
        verify_upload(store, KEY)
    store.put(KEY, b"x" * 1001, content_type="image/jpeg")
    with pytest.raises(PayloadTooLarge, match="1001 bytes"):
        verify_upload(store, KEY)
    store.put(KEY, b"x" * 10, content_type="image/jpeg")
    assert verify_upload(store, KEY) == ObjectInfo(10, "image/jpeg")
    with pytest.raises(PayloadTooLarge):
        verify_upload(store, KEY, max_bytes=9)


@pytest.mark.parametrize("key", ["../outside", "/etc/passwd", "a/../../x", "a\\..\\b", "", "a/~meta"])
def test_keys_outside_the_grammar_never_reach_the_disk(store: LocalObjectStore, key: str) -> None:
    for call in (
        lambda: store.put(key, b"x", content_type="text/plain"),
        lambda: store.get(key),
        lambda: store.head(key),
        lambda: store.delete(key),
        lambda: store.presign_get(key, expires_s=60),
    ):
        with pytest.raises(ValueError):
            call()
    assert not (store.root.parent / "outside").exists()


def test_a_symlink_inside_the_root_cannot_lead_outside(store: LocalObjectStore, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "passwd").write_text("root:x")
    (store.root / "inputs").mkdir()
    os.symlink(secret, store.root / "inputs" / "evil")
    with pytest.raises(ValueError, match="outside"):
        store.get("inputs/evil/passwd")
    with pytest.raises(ValueError, match="outside"):
        store.put("inputs/evil/new", b"x", content_type="text/plain")
    assert sorted(p.name for p in secret.iterdir()) == ["passwd"]


def test_presigned_urls_point_at_the_gateway(store: LocalObjectStore) -> None:
    before = datetime.now(UTC)
    req = store.presign_put(KEY, content_type="image/jpeg", expires_s=900)
    parts = urlsplit(req.url)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "127.0.0.1:8080", f"/objects/{KEY}")
    assert req.method == "PUT"
    assert req.headers == {"Content-Type": "image/jpeg"}
    assert 899 <= (req.expires_at - before).total_seconds() <= 902
    query = dict(parse_qsl(parts.query))
    store.signer.verify(method="PUT", key=KEY, query=query, content_type="image/jpeg")
    get_url = store.presign_get(KEY, expires_s=60)
    store.signer.verify(method="GET", key=KEY, query=dict(parse_qsl(urlsplit(get_url).query)))


@pytest.mark.parametrize("expires_s", [0, -5, 8 * 24 * 3600])
def test_presign_expiry_is_bounded(store: LocalObjectStore, expires_s: int) -> None:
    with pytest.raises(ValueError):
        store.presign_get(KEY, expires_s=expires_s)


def test_check_reports_a_missing_root(tmp_path: Path) -> None:
    s = LocalObjectStore(tmp_path / "nope", signer=UrlSigner(b"s" * 32), public_base_url="http://x")
    with pytest.raises(StorageUnavailable):
        s.check()
    s.ensure_root()
    s.check()


def test_write_failures_become_storage_unavailable(store: LocalObjectStore) -> None:
    # A file where a directory must go: the OS refuses, the store reports it as its own error.
    (store.root / "inputs").write_bytes(b"")
    with pytest.raises(StorageUnavailable) as caught:
        store.put(KEY, b"x", content_type="image/jpeg")
    assert isinstance(caught.value.__cause__, OSError)


def test_stale_upload_files_are_swept(store: LocalObjectStore) -> None:
    store.put(KEY, b"kept", content_type="image/jpeg")
    with store.open_writer("inputs/u1/j1/1.jpg", content_type="image/jpeg") as live:
        live.write(b"in progress")
        stale = store.root / "inputs/u1/j1/.2.jpg.abc~tmp"
        stale.write_bytes(b"left by a crash")
        os.utime(stale, (1_000_000_000, 1_000_000_000))
        assert store.remove_stale_uploads(older_than_s=3600) == 1
        assert len(_leftovers(store.root)) == 1  # the live upload's file is untouched
    assert _leftovers(store.root) == []
    assert store.get(KEY) == b"kept"
    assert store.get("inputs/u1/j1/1.jpg") == b"in progress"
