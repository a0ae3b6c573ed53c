"""The REST shim in front of the real JobService, over real sockets: uvicorn + gRPC server + SQLite.

Covers the seed 003 TODO-2 curl sequence with the contract's fields and error codes, the free plan's
rule slots, cross-user access, every way a token can be wrong, and a job's life through the shim
(presigned uploads to the gateway's /objects routes, confirm, progress events, cancel and refund).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from gateway_rest.app import create_app
from gateway_rest.credentials import EdgeCredentials
from gateway_rest.metrics import HttpMetrics
from gateway_rest.objects import object_routes
from gateway_rest.operator import create_operator_app
from server.grpc_api.server import build_grpc_server
from server.ports import free_port
from server.storage.local import LocalObjectStore
from tests.support.stack import TEST_SECRET, Stack, jpeg_bytes, make_stack
from tests.unit.gateway.live import run_server

pytestmark = pytest.mark.integration


@dataclass
class Rest:
    http: httpx.Client
    stack: Stack
    operator: httpx.Client
    """The operator surface (``/metrics``, the detailed ``/health``)."""


@pytest.fixture
def rest(tmp_path: Path) -> Iterator[Rest]:
    port = free_port()
    # The local store's presigned URLs point at this gateway, so it must know the port up front.
    stack = make_stack(f"sqlite:///{tmp_path / 's3.db'}", tmp_path / "data", http_port=port)
    grpc_server = build_grpc_server(stack.services, bind="127.0.0.1:0", max_workers=8)
    grpc_server.start()
    try:
        assert isinstance(stack.store, LocalObjectStore)
        target = f"127.0.0.1:{grpc_server.port}"
        metrics = HttpMetrics()
        app = create_app(
            grpc_target=target,
            object_routes=object_routes(stack.store),
            metrics=metrics,
            credentials=EdgeCredentials.from_config(stack.settings.auth),
        )
        operator_app = create_operator_app(grpc_target=target, metrics=metrics, rpc_timeout_s=10.0)
        with (
            run_server(app, port=port) as base,
            run_server(operator_app) as operator_base,
            httpx.Client(base_url=base, timeout=30) as http,
            httpx.Client(base_url=operator_base, timeout=30) as operator,
        ):
            yield Rest(http, stack, operator)
    finally:
        grpc_server.stop(1.0)
        stack.db.dispose()


def _ok(response: httpx.Response, status: int = 200) -> Any:
    body = response.json()
    assert response.status_code == status, body
    assert body["success"] is True and body["error"] is None
    assert response.headers["x-request-id"] == body["meta"]["request_id"]
    return body["data"]


def _err(response: httpx.Response, status: int, code: str) -> str:
    body = response.json()
    assert (response.status_code, body["error"]["code"]) == (status, code), body
    assert body["success"] is False and body["data"] is None
    message: str = body["error"]["message"]
    return message


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _sign_up(http: httpx.Client) -> dict[str, str]:
    return _bearer(_ok(http.post("/auth/anon"), 201)["token"])


SEED_RULE = {"name": "test", "preset_id": "interior", "concepts": {"Wall": {"action": "recolor", "value": "white"}}}


def test_seed_003_curl_sequence(rest: Rest) -> None:
    http = rest.http
    # 1. Auth: `curl -s -X POST /auth/anon | jq -r '.data.token'`
    anon = _ok(http.post("/auth/anon"), 201)
    # The seed's fields, and the session's refresh token (contract "Additions").
    assert set(anon) == {
        "token",
        "user_id",
        "plan",
        "credits",
        "expires_at",
        "refresh_token",
        "refresh_expires_at",
        "signup_credits",
    }
    assert (anon["plan"], anon["credits"]) == ("free", 100)
    auth = _bearer(anon["token"])

    # 2. Me
    me = _ok(http.get("/me", headers=auth))
    assert me["user_id"] == anon["user_id"]
    assert {k: me[k] for k in ("plan", "credits", "active_jobs", "max_concurrency")} == {
        "plan": "free",
        "credits": 100,
        "active_jobs": 0,
        "max_concurrency": 1,
    }
    assert (me["rule_slots_used"], me["rule_slots_max"], me["max_batch"]) == (0, 2, 10)

    # 3. Presets
    listing = _ok(http.get("/presets", headers=auth))
    presets = listing["presets"]
    assert set(listing["model"]) == {"name", "meaningful"} and isinstance(listing["model"]["meaningful"], bool)
    assert {"interior", "seller"} <= {p["id"] for p in presets}
    interior = _ok(http.get("/presets/interior", headers=auth))
    assert len(interior["concepts"]) == 12 and "Wall" in {c["id"] for c in interior["concepts"]}
    assert isinstance(interior["protect_defaults"], list) and interior["templates"]
    assert "recolor" in interior["actions"]

    # 4. Rules: the seed's exact body
    rule = _ok(http.post("/rules", json=SEED_RULE, headers=auth), 201)
    assert (rule["name"], rule["preset_id"]) == ("test", "interior")
    assert rule["concepts"]["Wall"]["action"] == "recolor"
    listed = _ok(http.get("/rules", headers=auth))
    assert [r["rule_id"] for r in listed["rules"]] == [rule["rule_id"]]
    assert (listed["rule_slots_used"], listed["rule_slots_max"]) == (1, 2)
    updated = _ok(http.put(f"/rules/{rule['rule_id']}", json={"name": "white walls"}, headers=auth))
    assert updated["name"] == "white walls" and updated["concepts"] == rule["concepts"]
    replaced = _ok(
        http.put(
            f"/rules/{rule['rule_id']}",
            json={"concepts": {"Floor": {"action": "recolor", "value": "black"}}, "protect": []},
            headers=auth,
        )
    )
    assert set(replaced["concepts"]) == {"Floor"}
    deleted = _ok(http.delete(f"/rules/{rule['rule_id']}", headers=auth))
    assert deleted == {"rule_id": rule["rule_id"], "deleted": True}
    assert _ok(http.get("/me", headers=auth))["rule_slots_used"] == 0

    # 5. Jobs
    created = _ok(http.post("/jobs", json={"preset": "interior", "item_count": 2}, headers=auth), 201)
    assert created["status"] == "created" and created["expires_at"]
    assert [u["idx"] for u in created["upload_urls"]] == [0, 1]
    assert all(u["method"] == "PUT" and u["key"].startswith("inputs/") for u in created["upload_urls"])
    jobs = _ok(http.get("/jobs", headers=auth))["jobs"]
    assert [j["job_id"] for j in jobs] == [created["job_id"]]


def test_free_plan_has_two_rule_slots(rest: Rest) -> None:
    auth = _sign_up(rest.http)
    first = _ok(rest.http.post("/rules", json=SEED_RULE, headers=auth), 201)
    _ok(rest.http.post("/rules", json=SEED_RULE, headers=auth), 201)
    _err(rest.http.post("/rules", json=SEED_RULE, headers=auth), 409, "RULE_SLOT_LIMIT")
    _ok(rest.http.delete(f"/rules/{first['rule_id']}", headers=auth))
    _ok(rest.http.post("/rules", json=SEED_RULE, headers=auth), 201)


def test_another_users_rule_is_not_found(rest: Rest) -> None:
    owner, other = _sign_up(rest.http), _sign_up(rest.http)
    rule_id = _ok(rest.http.post("/rules", json=SEED_RULE, headers=owner), 201)["rule_id"]
    _err(rest.http.put(f"/rules/{rule_id}", json={"name": "mine"}, headers=other), 404, "NOT_FOUND")
    _err(rest.http.delete(f"/rules/{rule_id}", headers=other), 404, "NOT_FOUND")
    assert _ok(rest.http.get("/rules", headers=other))["rules"] == []
    assert _ok(rest.http.get("/rules", headers=owner))["rules"][0]["name"] == "test"
    _err(rest.http.delete("/rules/not-a-uuid", headers=owner), 404, "NOT_FOUND")


def _token(secret: str, *, sub: str = "someone", expires_in_s: int = 3600, **extra: Any) -> str:
    now = datetime.now(UTC)
    claims = {"sub": sub, "iat": now, "exp": now + timedelta(seconds=expires_in_s), "iss": "s3", **extra}
    return jwt.encode(claims, secret, algorithm="HS256")


def _unsigned_token() -> str:
    """A well-formed token with every claim right but ``alg: none`` and no signature."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"sub": "someone", "iat": now, "exp": now + 3600, "iss": "s3"}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def test_missing_and_bad_tokens_are_401(rest: Rest) -> None:
    http = rest.http
    _err(http.get("/me"), 401, "AUTH_REQUIRED")
    _err(http.get("/rules"), 401, "AUTH_REQUIRED")
    _err(http.get("/me", headers={"Authorization": "Basic dXNlcjpwdw=="}), 401, "INVALID_TOKEN")
    for bad in [
        "garbage",
        _token("another-secret-" + "y" * 40),
        _token(TEST_SECRET, expires_in_s=-3600),
        _unsigned_token(),
    ]:
        _err(http.get("/me", headers=_bearer(bad)), 401, "INVALID_TOKEN")
    # The real token of a user works; tampering with one character does not.
    token = _ok(http.post("/auth/anon"), 201)["token"]
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    _err(http.get("/me", headers=_bearer(tampered)), 401, "INVALID_TOKEN")
    assert _ok(http.get("/me", headers=_bearer(token)))["plan"] == "free"
    # No auth needed here.
    assert rest.http.get("/health").status_code == 200


def test_server_side_validation_reaches_the_client(rest: Rest) -> None:
    auth = _sign_up(rest.http)
    body = {**SEED_RULE, "concepts": {"Unicorn": {"action": "recolor", "value": "white"}}}
    assert "Unicorn" in _err(rest.http.post("/rules", json=body, headers=auth), 400, "VALIDATION_ERROR")
    _err(rest.http.get("/presets/nope", headers=auth), 404, "NOT_FOUND")
    _err(rest.http.post("/jobs", json={"preset": "interior", "item_count": 11}, headers=auth), 400, "BATCH_LIMIT")


def test_health_reports_each_component_on_the_operator_surface_only(rest: Rest) -> None:
    assert _ok(rest.http.get("/health")) == {"ok": True}
    assert rest.http.get("/metrics").status_code == 404
    assert "s3_http_requests_total" in rest.operator.get("/metrics").text
    data = _ok(rest.operator.get("/health"))
    assert data["ok"] is True
    assert {"database", "storage"} <= set(data["components"])
    assert all(c["ok"] for c in data["components"].values())
    assert isinstance(data["model_meaningful"], bool)


def test_request_id_is_logged_on_both_sides(rest: Rest, caplog: pytest.LogCaptureFixture) -> None:
    def logged(name: str) -> list[logging.LogRecord]:
        return [rec for rec in caplog.records if rec.name == name]

    with caplog.at_level(logging.INFO):
        r = rest.http.get("/presets", headers={**_sign_up(rest.http), "X-Request-Id": "rid-both-sides"})
        assert r.json()["meta"]["request_id"] == "rid-both-sides"
        # The access line is written once the response is sent, so it may trail the client a little.
        deadline = time.monotonic() + 5
        while not any("rid-both-sides" in rec.getMessage() for rec in logged("s3.rest.access")):
            assert time.monotonic() < deadline, "no access log line"
            time.sleep(0.01)
    assert any(getattr(rec, "request_id", None) == "rid-both-sides" for rec in logged("s3.grpc"))
    access = [json.loads(rec.getMessage()) for rec in logged("s3.rest.access")]
    assert any(line["request_id"] == "rid-both-sides" and line["status"] == 200 for line in access)


def _sse_events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    events, name = [], ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((name, json.loads(line.removeprefix("data: "))))
    return events


def test_job_through_the_shim_upload_confirm_watch_cancel(rest: Rest) -> None:
    http = rest.http
    auth = _sign_up(http)
    created = _ok(http.post("/jobs", json={"preset": "interior", "item_count": 2}, headers=auth), 201)
    job_id = created["job_id"]
    assert _ok(http.get("/me", headers=auth))["credits"] == 100 - created["credits_reserved"]
    _err(http.post(f"/jobs/{job_id}/execute", json={}, headers=auth), 409, "INVALID_STATE")

    for upload in created["upload_urls"]:
        # Straight to the presigned URL, as the app does: no bearer token, the URL is the credential.
        r = http.request(
            upload["method"], upload["url"], content=jpeg_bytes(seed=upload["idx"]), headers=upload["headers"]
        )
        assert _ok(r)["key"] == upload["key"]
    job = _ok(http.post(f"/jobs/{job_id}/confirm-upload", headers=auth))
    assert job["status"] == "uploaded" and job["total_items"] == 2
    assert all(item["input_url"] and item["output_url"] is None for item in job["items"])
    assert http.get(job["items"][0]["input_url"]).content == jpeg_bytes(seed=0)

    other = _sign_up(http)
    _err(http.get(f"/jobs/{job_id}", headers=other), 404, "NOT_FOUND")
    _err(http.get(f"/jobs/{job_id}/events", headers=other), 404, "NOT_FOUND")
    secret = {"X-Callback-Secret": "wrong-" + "w" * 40}
    result = {"idempotency_key": "k1", "idx": 0, "status": "done"}
    _err(http.post(f"/jobs/{job_id}/callback", json=result, headers=secret), 403, "FORBIDDEN")

    canceled = _ok(http.post(f"/jobs/{job_id}/cancel", headers=auth))
    assert canceled["status"] == "canceled"
    assert _ok(http.get("/me", headers=auth))["credits"] == 100
    _err(http.post(f"/jobs/{job_id}/cancel", headers=auth), 409, "INVALID_STATE")

    with http.stream("GET", f"/jobs/{job_id}/events", headers=auth) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = _sse_events(r)
    assert [name for name, _ in events] == ["job", "end"]
    assert events[0][1]["status"] == "canceled" and events[1][1] == {"job_id": job_id, "status": "canceled"}


def test_objects_routes_refuse_a_forged_url(rest: Rest) -> None:
    r = rest.http.put("/objects/inputs/u/j/0.jpg?expires=1&sig=forged", content=b"x")
    _err(r, 403, "FORBIDDEN")
