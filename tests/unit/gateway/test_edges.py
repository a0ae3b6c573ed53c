"""The envelope on every edge case, request ids, body limits, unexpected errors, the access log."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway_rest import routes
from tests.unit.gateway.conftest import AUTH, ClientFactory
from tests.unit.gateway.fake_service import Script


def _error(response: Any, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status
    body = response.json()
    assert body["success"] is False and body["data"] is None
    assert body["error"]["code"] == code and body["error"]["message"]
    assert set(body["meta"]) == {"request_id", "timestamp"}
    assert response.headers["x-request-id"] == body["meta"]["request_id"]
    error: dict[str, object] = body["error"]
    return error


def test_success_envelope(client: TestClient) -> None:
    r = client.get("/me", headers=AUTH)
    body = r.json()
    assert r.status_code == 200 and body["success"] is True and body["error"] is None
    assert body["data"]["user_id"] == "u1"
    assert body["meta"]["timestamp"].endswith("Z")


def test_unknown_path_is_not_found(client: TestClient) -> None:
    error = _error(client.get("/nowhere"), 404, "NOT_FOUND")
    assert "/nowhere" in str(error["message"])


def test_trailing_slash_is_not_found_not_a_bare_redirect(client: TestClient) -> None:
    r = client.get("/me/", headers=AUTH, follow_redirects=False)
    _error(r, 404, "NOT_FOUND")


def test_wrong_method_is_405_with_allow(client: TestClient) -> None:
    r = client.delete("/me")
    _error(r, 405, "VALIDATION_ERROR")
    assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD"}
    r = client.patch("/rules")
    _error(r, 405, "VALIDATION_ERROR")
    assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe{}", "UTF-8"),
        (b'{"name": NaN}', "NaN"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        (b"[" * 5000 + b"]" * 5000, "nests deeper"),
        (b'{"name": "\\ud800"}', "Unicode"),
        (b'{"name": 1e400}', "out of range"),
        (b'{"name": -1e999}', "out of range"),
        (b'{"name": Infinity}', "Infinity"),
        (b'{"name": -Infinity}', "-Infinity"),
        (b'{"name": "a", "name": "b"}', "twice"),
        (b'{"concepts": {"Wall": {"action": "blur", "action": "recolor"}}}', "twice"),
        (b'{"name": ' + b"9" * 5000 + b"}", "too large"),
        (b'{"name": 12345678901234567}', "too large"),
    ],
)
def test_malformed_bodies_are_validation_errors(client: TestClient, body: bytes, needle: str) -> None:
    r = client.post("/rules", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert needle in str(_error(r, 400, "VALIDATION_ERROR")["message"])


def test_declared_oversized_body_is_413(make_client: ClientFactory, script: Script) -> None:
    client = make_client(max_body_bytes=100)
    r = client.post("/rules", content=b"x" * 101, headers=AUTH)
    _error(r, 413, "PAYLOAD_TOO_LARGE")
    assert script.calls == []


def test_streamed_oversized_body_is_413_without_content_length(make_client: ClientFactory, script: Script) -> None:
    client = make_client(max_body_bytes=100)

    def chunks() -> Iterator[bytes]:
        # A generator body is sent chunked: no Content-Length to trust.
        yield b'{"name": "'
        for _ in range(10):
            yield b"y" * 20

    r = client.post("/rules", content=chunks(), headers=AUTH)
    assert "content-length" not in r.request.headers
    _error(r, 413, "PAYLOAD_TOO_LARGE")
    assert script.calls == []


def test_body_at_the_limit_is_accepted(make_client: ClientFactory) -> None:
    body = json.dumps({"name": "n", "preset_id": "interior", "concepts": {}}).encode()
    client = make_client(max_body_bytes=len(body))
    assert client.post("/rules", content=body, headers=AUTH).status_code == 201


def test_unexpected_error_is_500_without_details(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_: object) -> dict[str, object]:
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(routes, "encode", broken)
    with caplog.at_level(logging.ERROR, logger="s3.rest"):
        r = client.get("/me", headers=AUTH)
    error = _error(r, 500, "INTERNAL")
    assert error["message"] == "internal error"
    assert "secret" not in r.text and "Traceback" not in r.text
    # The traceback is in the log, with the request id.
    assert any(rec.exc_info and "secret internals" in str(rec.exc_info[1]) for rec in caplog.records)


def test_request_id_round_trip(client: TestClient, script: Script) -> None:
    r = client.get("/me", headers={**AUTH, "X-Request-Id": "client-id-42"})
    assert r.headers["x-request-id"] == "client-id-42"
    assert r.json()["meta"]["request_id"] == "client-id-42"
    assert script.calls[-1].metadata["x-request-id"] == "client-id-42"
    assert script.calls[-1].metadata["authorization"] == "Bearer token-1"


@pytest.mark.parametrize("given", [None, "", "x" * 129, "bad\tid", "naïve-id".encode("latin-1")])
def test_unusable_request_ids_are_replaced(client: TestClient, script: Script, given: str | bytes | None) -> None:
    headers: dict[str, Any] = dict(AUTH)
    if given is not None:
        headers["X-Request-Id"] = given
    r = client.get("/me", headers=headers)
    rid = r.json()["meta"]["request_id"]
    assert uuid.UUID(rid).version == 4
    assert r.headers["x-request-id"] == rid == script.calls[-1].metadata["x-request-id"]


def test_request_id_on_errors_from_routing(client: TestClient) -> None:
    r = client.get("/nowhere", headers={"X-Request-Id": "rid-404"})
    assert r.json()["meta"]["request_id"] == "rid-404" and r.headers["x-request-id"] == "rid-404"


def test_one_json_access_log_line_per_request(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="s3.rest.access"):
        client.get("/me?page_token=secret", headers={**AUTH, "X-Request-Id": "rid-log"})
    lines = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "s3.rest.access"]
    assert len(lines) == 1
    line = lines[0]
    assert {k: line[k] for k in ("method", "path", "status", "request_id")} == {
        "method": "GET",
        "path": "/me",
        "status": 200,
        "request_id": "rid-log",
    }
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert "secret" not in caplog.text


def test_authorization_that_cannot_be_forwarded_is_invalid_token(client: TestClient, script: Script) -> None:
    r = client.get("/me", headers={"Authorization": "Bearer \x7f"})
    _error(r, 401, "INVALID_TOKEN")
    assert script.calls == []


def test_callback_secret_is_forwarded_only_by_the_callback(client: TestClient, script: Script) -> None:
    headers = {"X-Callback-Secret": "s" * 40}
    client.get("/me", headers={**AUTH, **headers})
    assert "x-callback-secret" not in script.calls[-1].metadata
    body = {"idempotency_key": "k1", "idx": 0, "status": "done", "output_key": "outputs/u/j/0_result.png"}
    r = client.post("/jobs/j1/callback", json=body, headers=headers)
    assert r.status_code == 200 and r.json()["data"]["item_status"] == "done"
    assert script.calls[-1].metadata["x-callback-secret"] == "s" * 40
    assert "authorization" not in script.calls[-1].metadata
