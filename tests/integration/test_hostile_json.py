"""Hostile JSON bodies over real sockets: deep nesting, huge strings, oversize bodies, wrong types,
unknown fields, broken encodings and unicode in names. Each is a clear 400 (or 413) envelope, and
nothing is half-written: no rule, job, credit or slot changes unless the request succeeded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.invariants import check_invariants
from tests.support.live_rest import LiveRest, check_envelope, err, live_rest, ok, sign_up

pytestmark = pytest.mark.integration

WALL = {"Wall": {"action": "recolor", "value": "white"}}
RULE = {"name": "r", "preset_id": "interior", "concepts": WALL}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRest]:
    root: Path = tmp_path_factory.mktemp("hostile-json")
    with live_rest(f"sqlite:///{root / 's3.db'}", root / "data") as served:
        yield served


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def _state(http: httpx.Client, auth: dict[str, str]) -> tuple[Any, ...]:
    me = ok(http.get("/me", headers=auth))
    rules = ok(http.get("/rules", headers=auth))["rules"]
    jobs = ok(http.get("/jobs", headers=auth))["jobs"]
    return me, [(r["rule_id"], r["name"], r["concepts"], r["protect"]) for r in rules], [j["job_id"] for j in jobs]


# (method, path template, raw body or JSON value, expected status, expected code)
CASES: list[tuple[str, str, bytes | object, int, str]] = [
    ("POST", "/rules", _nested(40).encode(), 400, "VALIDATION_ERROR"),
    ("POST", "/rules", _nested(10_000).encode(), 400, "VALIDATION_ERROR"),
    ("POST", "/rules", b"[" * 60_000, 400, "VALIDATION_ERROR"),
    ("POST", "/jobs/{job_id}/execute", b"[" * 200_000, 400, "VALIDATION_ERROR"),
    ("POST", "/rules", {**RULE, "name": "n" * 50_000}, 400, "VALIDATION_ERROR"),
    # A rule is small: past its endpoint's cap (64 KiB) a body is refused before it is parsed.
    ("POST", "/rules", {**RULE, "name": "n" * 500_000}, 413, "PAYLOAD_TOO_LARGE"),
    ("POST", "/rules", {**RULE, "name": "n" * 2_000_000}, 413, "PAYLOAD_TOO_LARGE"),
    (
        "POST",
        "/jobs",
        {"preset": "interior", "item_count": 1, "content_types": ["image/jpeg"] * 2000},
        413,
        "PAYLOAD_TOO_LARGE",
    ),
    ("POST", "/jobs/{job_id}/cancel", {"reason": "r" * 2000}, 413, "PAYLOAD_TOO_LARGE"),
    ("POST", "/rules", {**RULE, "name": 5}, 400, "VALIDATION_ERROR"),
    ("POST", "/rules", {**RULE, "concepts": ["Wall"]}, 400, "VALIDATION_ERROR"),
    ("POST", "/rules", {**RULE, "concepts": {"Wall": "recolor"}}, 400, "VALIDATION_ERROR"),
    ("POST", "/rules", {**RULE, "protect": "edges"}, 400, "VALIDATION_ERROR"),
    ("POST", "/rules", {**RULE, "owner": "someone-else"}, 400, "VALIDATION_ERROR"),
    ("POST", "/rules", {**RULE, "concepts": {"벽": {"action": "recolor", "value": "white"}}}, 400, "VALIDATION_ERROR"),
    (
        "POST",
        "/rules",
        {**RULE, "concepts": {"Wall\u0000": {"action": "recolor", "value": "white"}}},
        400,
        "VALIDATION_ERROR",
    ),
    ("POST", "/rules", {**RULE, "concepts": {"Wall": {"action": "recolor", "value": "흰색"}}}, 400, "VALIDATION_ERROR"),
    ("POST", "/rules", {**RULE, "concepts": {}}, 400, "VALIDATION_ERROR"),
    ("POST", "/rules", [RULE], 400, "VALIDATION_ERROR"),
    ("POST", "/rules", b'{"name": "r", "name": 1e999}', 400, "VALIDATION_ERROR"),
    ("POST", "/rules", b'{"name": NaN}', 400, "VALIDATION_ERROR"),
    ("POST", "/rules", b'{"name": "\\ud800"}', 400, "VALIDATION_ERROR"),
    ("POST", "/rules", b"\xff\xfe{not utf-8}", 400, "VALIDATION_ERROR"),
    ("POST", "/rules", b'{"name": "r"', 400, "VALIDATION_ERROR"),
    ("POST", "/jobs", {"preset": "interior", "item_count": "3"}, 400, "VALIDATION_ERROR"),
    ("POST", "/jobs", {"preset": "interior", "item_count": 2**53 + 1}, 400, "VALIDATION_ERROR"),
    ("POST", "/jobs", {"preset": "interior", "item_count": 2.5}, 400, "VALIDATION_ERROR"),
    ("POST", "/jobs", {"preset": "interior", "item_count": -1}, 400, "VALIDATION_ERROR"),
    ("POST", "/jobs", {"preset": "interior", "item_count": True}, 400, "VALIDATION_ERROR"),
    ("POST", "/jobs", {"preset": {"id": "interior"}, "item_count": 1}, 400, "VALIDATION_ERROR"),
    ("POST", "/jobs", {"preset": "interior", "item_count": 1, "cost_per_item": 0}, 400, "VALIDATION_ERROR"),
    ("POST", "/jobs", {"preset": "interior", "item_count": 1, "content_types": ["text/html"]}, 400, "VALIDATION_ERROR"),
    ("POST", "/jobs", {"preset": "../../etc/passwd", "item_count": 1}, 400, "VALIDATION_ERROR"),
    ("PUT", "/rules/{rule_id}", {"name": ["x"]}, 400, "VALIDATION_ERROR"),
    ("PUT", "/rules/{rule_id}", {"concepts": {"Wall": {"action": "explode"}}}, 400, "VALIDATION_ERROR"),
    ("PUT", "/rules/{rule_id}", {"preset_id": "seller"}, 400, "VALIDATION_ERROR"),
    ("PUT", "/rules/{rule_id}", {"rule_id": "another"}, 400, "VALIDATION_ERROR"),
    ("POST", "/jobs/{job_id}/cancel", {"status": "done"}, 400, "VALIDATION_ERROR"),
    ("POST", "/jobs/{job_id}/confirm-upload", b"[]", 400, "VALIDATION_ERROR"),
]


def test_hostile_bodies_are_clear_errors_and_change_nothing(live: LiveRest) -> None:
    http = httpx.Client(base_url=live.base_url, timeout=60)
    auth, _ = sign_up(http)
    rule_id = ok(http.post("/rules", json=RULE, headers=auth), 201)["rule_id"]
    job_id = ok(http.post("/jobs", json={"preset": "interior", "item_count": 1}, headers=auth), 201)["job_id"]
    before = _state(http, auth)
    for method, template, body, status, code in CASES:
        path = template.format(rule_id=rule_id, job_id=job_id)
        raw = body if isinstance(body, bytes) else httpx.Request("POST", "/", json=body).content
        response = http.request(method, path, content=raw, headers={**auth, "Content-Type": "application/json"})
        message = err(response, status, code)
        assert len(message) < 2000, (template, message[:200])  # the error never echoes a huge input
        assert _state(http, auth) == before, (method, template, str(body)[:80])
    check_invariants(live.stack.db)
    http.close()


def test_unicode_names_round_trip(live: LiveRest) -> None:
    http = httpx.Client(base_url=live.base_url, timeout=60)
    auth, _ = sign_up(http)
    names = ["벽은 흰색으로 🎨", "Wände: weiß", "‮right-to-left‬ and \u200b zero width"]
    for name in names[:2]:
        rule = ok(http.post("/rules", json={**RULE, "name": name}, headers=auth), 201)
        assert rule["name"] == name
    listed = {r["name"] for r in ok(http.get("/rules", headers=auth))["rules"]}
    assert listed == set(names[:2])
    # Whatever the service decides about control characters, it is an envelope, never a 500.
    rule_id = ok(http.get("/rules", headers=auth))["rules"][0]["rule_id"]
    check_envelope(http.put(f"/rules/{rule_id}", json={"name": names[2]}, headers=auth))
    http.close()


def test_a_huge_action_parameter_is_a_clear_400(live: LiveRest) -> None:
    http = httpx.Client(base_url=live.base_url, timeout=60)
    auth, _ = sign_up(http)
    body = {**RULE, "concepts": {"Wall": {"action": "recolor", "value": "w" * 50_000}}}
    try:
        err(http.post("/rules", json=body, headers=auth), 400, "VALIDATION_ERROR")
    finally:
        http.close()
