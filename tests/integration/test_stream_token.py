"""Progress in a browser: ``EventSource`` sends no Authorization header, so a job's event stream also
opens with a short-lived stream token in the URL. Tested with a client that sends no header at all
(HTTP/1.0, not even Host), over a real socket to the real shim and JobService."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.live_rest import LiveRest, bearer, err, live_rest, ok

pytestmark = pytest.mark.integration


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[LiveRest]:
    with live_rest(database_url, tmp_path / "data") as served:
        yield served


def _headerless_get(base_url: str, path: str, *, timeout_s: float = 30.0) -> bytes:
    """``GET path`` with no header whatsoever; everything the server sends until it closes."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=timeout_s) as conn:
        conn.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _job(http: httpx.Client) -> tuple[dict[str, str], str]:
    auth = bearer(ok(http.post("/auth/anon"), 201)["token"])
    created = ok(http.post("/jobs", json={"preset": "interior", "item_count": 1}, headers=auth), 201)
    return auth, created["job_id"]


def test_a_client_without_headers_follows_a_job_with_a_stream_token(api: LiveRest) -> None:
    with httpx.Client(base_url=api.base_url, timeout=30) as http:
        auth, job_id = _job(http)
        issued = ok(http.post(f"/jobs/{job_id}/stream-token", headers=auth), 201)
        assert issued["events_url"].startswith(f"/jobs/{job_id}/events?token=") and issued["expires_at"]
        received: list[bytes] = []
        reader = threading.Thread(target=lambda: received.append(_headerless_get(api.base_url, issued["events_url"])))
        reader.start()
        # The stream's first event is the job as it is; then the cancel, then the end.
        ok(http.post(f"/jobs/{job_id}/cancel", headers=auth))
        reader.join(30)
        assert not reader.is_alive()
    [raw] = received
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head.lower(), head
    text = body.decode()
    assert "event: job" in text and '"status":"canceled"' in text and "event: end" in text, text


def test_a_stream_token_opens_that_stream_only(api: LiveRest) -> None:
    with httpx.Client(base_url=api.base_url, timeout=30) as http:
        auth, job_id = _job(http)
        _, other_job = _job(http)
        token = ok(http.post(f"/jobs/{job_id}/stream-token", headers=auth), 201)["token"]
        # Not another job's stream, not a bearer token for anything else.
        err(http.get(f"/jobs/{other_job}/events", params={"token": token}), 401, "INVALID_TOKEN")
        err(http.get("/me", headers=bearer(token)), 401, "INVALID_TOKEN")
        err(http.get(f"/jobs/{job_id}", headers=bearer(token)), 401, "INVALID_TOKEN")
        # A user's access token is no stream token, a forged one neither; no credential at all is 401.
        access = auth["Authorization"].removeprefix("Bearer ")
        err(http.get(f"/jobs/{job_id}/events", params={"token": access}), 401, "INVALID_TOKEN")
        err(http.get(f"/jobs/{job_id}/events", params={"token": token[:-3] + "abc"}), 401, "INVALID_TOKEN")
        err(http.get(f"/jobs/{job_id}/events"), 401, "AUTH_REQUIRED")
        # Only the owner gets a token for the job.
        stranger = bearer(ok(http.post("/auth/anon"), 201)["token"])
        err(http.post(f"/jobs/{job_id}/stream-token", headers=stranger), 404, "NOT_FOUND")
        err(http.post(f"/jobs/{job_id}/stream-token"), 401, "AUTH_REQUIRED")
