"""The shim's part in sessions and idempotency keys: it forwards the key (only on the routes that take
one), marks replayed answers, and maps /auth/refresh onto RefreshSession; the rest is the JobService's."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from gateway_rest.http_rules import RULES
from protos.s3.v1 import jobs_pb2 as jpb
from server.grpc_api.metadata_keys import KEYED_RPCS
from tests.unit.gateway.conftest import AUTH
from tests.unit.gateway.fake_service import Script

KEYED_POSTS = [
    ("/jobs", {"preset": "interior", "item_count": 1}),
    ("/rules", {"name": "r", "preset_id": "interior", "concepts": {"Wall": {"action": "blur"}}}),
    ("/jobs/j1/analyze", {"concepts": ["Wall"]}),
    ("/jobs/j1/execute", {"concepts": {"Wall": {"action": "blur"}}}),
    ("/jobs/j1/cancel", None),
]
"""A request to each route whose RPC is marked ``(idempotency_key)``."""


def test_the_keyed_routes_are_the_rpcs_marked_in_the_proto() -> None:
    # An oracle written out: adding the mark to an RPC (or losing it) must be a decision seen here.
    assert {"CreateRule", "CreateJob", "AnalyzeJob", "ExecuteJob", "CancelJob"} == KEYED_RPCS
    keyed_paths = {rule.path.replace("{job_id}", "j1") for rule in RULES.values() if rule.idempotency_key}
    assert keyed_paths == {path for path, _ in KEYED_POSTS}


@pytest.mark.parametrize(("path", "body"), KEYED_POSTS)
def test_the_key_is_forwarded_and_a_replay_is_marked(
    client: TestClient, script: Script, path: str, body: object
) -> None:
    first = client.post(path, json=body, headers={**AUTH, "Idempotency-Key": "key-1"})
    assert first.status_code in (200, 201), first.text
    assert script.calls[-1].metadata["idempotency-key"] == "key-1"
    assert "Idempotent-Replayed" not in first.headers
    script.replayed = True
    again = client.post(path, json=body, headers={**AUTH, "Idempotency-Key": "key-1"})
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["data"] == first.json()["data"]


def test_no_key_is_sent_when_none_is_given_or_the_route_takes_none(client: TestClient, script: Script) -> None:
    client.post("/jobs", json={"preset": "interior", "item_count": 1}, headers=AUTH)
    assert "idempotency-key" not in script.calls[-1].metadata
    client.post("/jobs/j1/confirm-upload", headers={**AUTH, "Idempotency-Key": "k"})
    assert "idempotency-key" not in script.calls[-1].metadata


@pytest.mark.parametrize("key", ["caf\u00e9", "a" * 9000, "tab\there"])
def test_a_key_that_cannot_travel_is_refused_before_any_call(client: TestClient, script: Script, key: str) -> None:
    r = client.post(
        "/jobs",
        json={"preset": "interior", "item_count": 1},
        headers={**{k.encode(): v.encode() for k, v in AUTH.items()}, b"Idempotency-Key": key.encode()},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "VALIDATION_ERROR", r.text
    assert "Idempotency-Key" in r.json()["error"]["message"]
    assert script.calls == []


def test_refresh_maps_onto_refresh_session(client: TestClient, script: Script) -> None:
    r = client.post("/auth/refresh", json={"refresh_token": "s3r_old"})
    assert r.status_code == 200, r.text
    sent = script.calls[-1].request
    assert isinstance(sent, jpb.RefreshSessionRequest) and sent.refresh_token == "s3r_old"
    assert r.json()["data"] == {
        "token": "t2",
        "user_id": "u1",
        "expires_at": "2026-01-01T00:15:00Z",
        "refresh_token": "s3r_next",
        "refresh_expires_at": None,
    }
    bad = client.post("/auth/refresh", json={"refresh_token": "x", "user_id": "u2"})
    assert bad.status_code == 400 and "user_id" in bad.json()["error"]["message"]
    assert client.post("/auth/refresh", json={}).status_code == 400
