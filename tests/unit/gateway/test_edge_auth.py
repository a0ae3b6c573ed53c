"""Credentials before bodies: a request with a wrong token or callback secret is answered from its
head (the body is never received, parsed or forwarded), each endpoint reads at most its own body
cap, and big bodies are decoded off the event loop."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
import pytest
from starlette.testclient import TestClient

from gateway_rest import codec, routes
from gateway_rest.app import create_app
from gateway_rest.body import INLINE_DECODE_BYTES
from tests.unit.gateway.conftest import (
    EDGE_CALLBACK_SECRET,
    EDGE_JWT_SECRET,
    SIGNED_AUTH,
    ClientFactory,
    edge_credentials,
)
from tests.unit.gateway.fake_service import Script

CALLBACK = {"idempotency_key": "k1", "idx": 0, "status": "failed", "error": "x"}


def _asgi_post(app: Any, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], int]:
    """POST through the ASGI interface; ``(status, response headers, times the body was asked for)``."""
    asked = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw_headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    asyncio.run(_with_lifespan(app, lambda state: app({**scope, "state": dict(state)}, receive, send)))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, asked


async def _with_lifespan(app: Any, call: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    """Run the app's lifespan around ``call``, as a server would: ``call`` gets the lifespan's state,
    which each request's scope starts from."""
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await events.put({"type": "lifespan.startup"})
    state: dict[str, Any] = {}
    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}, events.get, answers.put)
    )
    assert (await answers.get())["type"] == "lifespan.startup.complete"
    try:
        await call(state)
    finally:
        await events.put({"type": "lifespan.shutdown"})
        assert (await answers.get())["type"] == "lifespan.shutdown.complete"
        await lifespan


BIG = json.dumps({**CALLBACK, "error": "e" * 850_000}).encode()


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/jobs/j1/callback", {"X-Callback-Secret": "wrong-" + "w" * 40}, 403),
        ("/jobs/j1/callback", {}, 403),
        ("/jobs/j1/callback", {"X-Callback-Secret": EDGE_CALLBACK_SECRET[:-1]}, 403),
        ("/rules", {"Authorization": "Bearer not-a-token"}, 401),
        ("/rules", {}, 401),
        ("/jobs/j1/execute", {"Authorization": "Basic dXNlcjpwYXNz"}, 401),
    ],
)
def test_refused_before_a_byte_of_the_body_is_read(
    target: str, script: Script, path: str, headers: dict[str, str], status: int
) -> None:
    app = create_app(grpc_target=target, credentials=edge_credentials())
    got, response_headers, asked = _asgi_post(app, path, {**headers, "content-type": "application/json"}, BIG)
    assert got == status
    assert asked == 0  # the body was never received
    assert response_headers["connection"] == "close"  # and the server stops reading it
    assert script.calls == []  # nor forwarded


def test_the_right_credentials_pass(make_client: ClientFactory, script: Script) -> None:
    client = make_client(credentials=edge_credentials())
    r = client.post("/jobs/j1/callback", json=CALLBACK, headers={"X-Callback-Secret": EDGE_CALLBACK_SECRET})
    assert r.status_code == 200, r.text
    assert script.calls[-1].method == "ReportItemResult"
    assert client.get("/me", headers=SIGNED_AUTH).status_code == 200
    # A callback secret is not a user token, nor the reverse.
    assert client.get("/me", headers={"Authorization": f"Bearer {EDGE_CALLBACK_SECRET}"}).status_code == 401
    r = client.post("/jobs/j1/callback", json=CALLBACK, headers=SIGNED_AUTH)
    assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN"


def test_an_expired_token_is_refused_at_the_edge(make_client: ClientFactory, script: Script) -> None:
    now = int(time.time())
    claims = {"sub": "u", "iss": "s3", "iat": now - 3600, "nbf": now - 3600, "exp": now - 600}
    token = jwt.encode(claims, EDGE_JWT_SECRET, algorithm="HS256")
    client = make_client(credentials=edge_credentials())
    r = client.post("/rules", content=b"{}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "INVALID_TOKEN"
    assert "expired" in r.json()["error"]["message"]
    assert script.calls == []


@pytest.mark.parametrize(
    ("path", "size", "capped"),
    [
        ("/auth/anon", 2 * 1024, True),
        ("/jobs/j1/cancel", 2 * 1024, True),
        ("/jobs/j1/confirm-upload", 2 * 1024, True),
        ("/jobs", 20 * 1024, True),
        ("/rules", 70 * 1024, True),
        ("/jobs/j1/execute", 70 * 1024, False),
        ("/jobs/j1/callback", 700 * 1024, False),
    ],
)
def test_each_endpoint_has_its_own_body_cap(make_client: ClientFactory, path: str, size: int, capped: bool) -> None:
    client = make_client()
    headers = {**SIGNED_AUTH, "X-Callback-Secret": EDGE_CALLBACK_SECRET, "Content-Type": "application/json"}
    body = b'{"x": "' + b"x" * (size - 9) + b'"}'
    r = client.post(path, content=body, headers=headers)
    if capped:
        assert r.status_code == 413 and r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE", r.text
    else:  # read in full, then refused for its unknown field
        assert r.status_code == 400 and "unknown field 'x'" in r.json()["error"]["message"], r.text


def test_the_app_wide_cap_still_bounds_every_endpoint(make_client: ClientFactory) -> None:
    client = make_client(max_body_bytes=100)
    r = client.post("/jobs/j1/callback", content=b"{" + b" " * 200 + b"}", headers=SIGNED_AUTH)
    assert r.status_code == 413


def test_big_bodies_are_decoded_off_the_event_loop(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[int] = []
    real = codec.decode

    def recording(message_type: Any, body: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return real(message_type, body, **kwargs)

    monkeypatch.setattr(routes, "decode", recording)
    loop_thread: list[int] = []

    original = codec.encode

    def on_loop(m: Any) -> Any:
        loop_thread.append(threading.get_ident())  # encoding runs on the event loop
        return original(m)

    monkeypatch.setattr(routes, "encode", on_loop)
    small = {**CALLBACK, "error": "e"}
    big = {**CALLBACK, "error": "e" * (INLINE_DECODE_BYTES * 4)}
    assert client.post("/jobs/j1/callback", json=small).status_code == 200
    assert client.post("/jobs/j1/callback", json=big).status_code == 200
    assert threads[0] == loop_thread[0]
    assert threads[1] != loop_thread[1]
