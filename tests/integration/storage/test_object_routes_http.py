"""The /objects routes over a real socket (uvicorn), with streamed uploads as real clients send them."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from gateway_rest.objects import object_routes
from server.storage.local import LocalObjectStore
from server.storage.signing import UrlSigner

pytestmark = pytest.mark.integration

LIMIT = 1024 * 1024
KEY = "inputs/u1/j1/0.jpg"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[LocalObjectStore]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    store = LocalObjectStore(
        tmp_path / "objects",
        signer=UrlSigner(b"s" * 32),
        public_base_url=f"http://127.0.0.1:{port}",
        max_upload_bytes=LIMIT,
    )
    store.ensure_root()
    config = uvicorn.Config(Starlette(routes=object_routes(store)), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield store
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield bytes([sent % 251]) * n


def test_streamed_upload_and_download(served: LocalObjectStore) -> None:
    req = served.presign_put(KEY, content_type="image/jpeg", expires_s=60)
    body = b"".join(_chunks(LIMIT))
    with httpx.Client(timeout=30) as client:
        r = client.put(req.url, content=_chunks(LIMIT), headers=req.headers)
        assert r.status_code == 200, r.text
        assert r.json()["data"]["size"] == LIMIT
        r = client.get(served.presign_get(KEY, expires_s=60))
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/jpeg"
        assert r.content == body
        r = client.head(served.presign_get(KEY, expires_s=60))
        assert r.status_code == 200
        assert r.headers["content-length"] == str(LIMIT)


def test_streamed_oversize_upload_is_refused_and_nothing_is_stored(served: LocalObjectStore) -> None:
    req = served.presign_put(KEY, content_type="image/jpeg", expires_s=60)
    with httpx.Client(timeout=30) as client:
        r = client.put(req.url, content=_chunks(3 * LIMIT), headers=req.headers)
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert served.head(KEY) is None
    assert [p for p in served.root.rglob("*") if p.is_file()] == []
    # The server is still fine afterwards.
    with httpx.Client(timeout=30) as client:
        r = client.put(req.url, content=b"small", headers=req.headers)
        assert r.status_code == 200


def test_client_vanishing_mid_upload_leaves_nothing(served: LocalObjectStore) -> None:
    req = served.presign_put(KEY, content_type="image/jpeg", expires_s=60)
    url = httpx.URL(req.url)
    head = (
        f"PUT {url.raw_path.decode()} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
        f"Content-Type: image/jpeg\r\nContent-Length: {LIMIT}\r\n\r\n"
    ).encode()
    with socket.create_connection((url.host, url.port or 80), timeout=5) as conn:
        conn.sendall(head + b"x" * 100_000)
        # Give the server time to start writing the object before the client disappears.
        deadline = time.monotonic() + 5
        while not list(served.root.rglob("*~tmp")) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert list(served.root.rglob("*~tmp")), "the upload never started"
    deadline = time.monotonic() + 5
    while list(served.root.rglob("*~tmp")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [p for p in served.root.rglob("*") if p.is_file()] == []
    assert served.head(KEY) is None
