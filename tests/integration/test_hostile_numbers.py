"""Numbers and digits that used to reach a 500, over real sockets against the real JobService (on
SQLite and PostgreSQL): non-finite numbers anywhere in a rule, execute or callback body, odd digits
and huge page sizes, duplicate keys. Each is a 400 VALIDATION_ERROR that changes nothing, and no
callback can store a value that would make a later ``GET /jobs/{id}`` fail."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protos.s3.v1 import jobs_pb2 as jpb
from protos.s3.v1 import jobs_pb2_grpc
from protos.s3.v1 import types_pb2 as pb
from tests.support.invariants import check_invariants
from tests.support.live_rest import LiveRest, bearer, err, live_rest, ok, sign_up
from tests.support.pipeline import queued_job

pytestmark = pytest.mark.integration

WALL = {"Wall": {"action": "recolor", "value": "white"}}
RULE = {"name": "r", "preset_id": "interior", "concepts": WALL, "protect": ["Text"]}
EXECUTE = {"concepts": {"Wall": {"action": "adjust", "brightness": 0.1}}, "protect": ["Text"]}
NON_FINITE = ["1e999", "-1e999", "NaN", "Infinity", "-Infinity", "1E400", "-0.5e99999"]


@pytest.fixture
def live(database_url: str, tmp_path: Path) -> Iterator[LiveRest]:
    with live_rest(database_url, tmp_path / "data") as served:
        yield served


def _raw(http: httpx.Client, method: str, path: str, body: str, auth: dict[str, str]) -> httpx.Response:
    headers = {**auth, "Content-Type": "application/json"}
    return http.request(method, path, content=body.encode(), headers=headers)


def _with_number(value: Any, literal: str, path: list[str | int]) -> str:
    """``value`` as JSON text with the leaf at ``path`` replaced by the literal (e.g. ``1e999``)."""
    marker = "__NUMBER__"
    node: Any = value
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = marker
    return json.dumps(value).replace(f'"{marker}"', literal)


def _leaf_paths(value: Any, prefix: list[str | int]) -> list[list[str | int]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaf_paths(v, [*prefix, k])] or [prefix]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaf_paths(v, [*prefix, i])] or [prefix]
    return [prefix]


def test_non_finite_numbers_anywhere_are_400(live: LiveRest) -> None:
    http = httpx.Client(base_url=live.base_url, timeout=60)
    auth, _ = sign_up(http)
    rule_id = ok(http.post("/rules", json=RULE, headers=auth), 201)["rule_id"]
    job_id = ok(http.post("/jobs", json={"preset": "interior", "item_count": 1}, headers=auth), 201)["job_id"]
    before = ok(http.get("/me", headers=auth)), ok(http.get("/rules", headers=auth))
    targets = [
        ("POST", "/rules", RULE),
        ("PUT", f"/rules/{rule_id}", RULE),
        ("POST", f"/jobs/{job_id}/execute", EXECUTE),
    ]
    for method, path, body in targets:
        for leaf in _leaf_paths(body, []):
            for literal in NON_FINITE:
                text = _with_number(json.loads(json.dumps(body)), literal, leaf)
                err(_raw(http, method, path, text, auth), 400, "VALIDATION_ERROR")
        # A new key holding the number, and the number as an action parameter.
        err(_raw(http, method, path, json.dumps(body)[:-1] + ', "extra": 1e999}', auth), 400, "VALIDATION_ERROR")
    assert (ok(http.get("/me", headers=auth)), ok(http.get("/rules", headers=auth))) == before
    check_invariants(live.stack.db)
    http.close()


@pytest.mark.parametrize(
    "page_size",
    ["²", "³", "٣", "1²", "１０", "-1", "+5", " 5", "5 ", "0x10", "1e3", "9" * 5000, "9" * 11, str(2**31), "", "⁵"],
)
def test_odd_page_sizes_are_400(live: LiveRest, page_size: str) -> None:
    http = httpx.Client(base_url=live.base_url, timeout=60)
    auth, _ = sign_up(http)
    err(http.get("/jobs", params={"page_size": page_size}, headers=auth), 400, "VALIDATION_ERROR")
    assert ok(http.get("/jobs", params={"page_size": "5"}, headers=auth))["jobs"] == []
    http.close()


@pytest.mark.parametrize(
    "body",
    [
        '{"name": "a", "name": "b", "preset_id": "interior", "concepts": {"Wall": {"action": "keep"}}}',
        '{"name": "a", "preset_id": "interior", "concepts": {"Wall": {"action": "keep"}, "Wall": {"action": "remove"}}}',
        '{"name": "a", "preset_id": "interior", "concepts": {"Wall": {"action": "recolor", "action": "keep"}}}',
        '{"name": "a", "preset_id": "interior", "concepts": {"Wall": {"action": "keep"}}, "protect": [], "protect": []}',
        '{"name": ' + "1" * 5000 + "}",
        '{"name": "a", "preset_id": "interior", "concepts": {"Wall": {"action": "blur", "radius": 1'
        + "0" * 400
        + "}}}",
    ],
)
def test_duplicate_keys_and_huge_integers_are_400(live: LiveRest, body: str) -> None:
    http = httpx.Client(base_url=live.base_url, timeout=60)
    auth, _ = sign_up(http)
    err(_raw(http, "POST", "/rules", body, auth), 400, "VALIDATION_ERROR")
    assert ok(http.get("/rules", headers=auth))["rules"] == []
    http.close()


def _literal(number: float | int) -> str:
    """The JSON text a client would send: 1e999 for an infinity (valid JSON, read as inf), NaN as is."""
    if isinstance(number, float) and math.isinf(number):
        return "1e999" if number > 0 else "-1e999"
    if isinstance(number, float) and math.isnan(number):
        return "NaN"
    return json.dumps(number)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    number=st.sampled_from([math.inf, -math.inf, math.nan])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(10**30), max_value=10**30),
    where=st.sampled_from(["name", "value", "strength", "param", "protect", "instances"]),
)
def test_any_number_in_an_execute_body_is_answered_below_500(
    created_job: tuple[httpx.Client, dict[str, str], str], number: float | int, where: str
) -> None:
    http, auth, job_id = created_job
    body: dict[str, Any] = {"concepts": {"Wall": {"action": "adjust", "brightness": 0.1}}}
    literal = _literal(number)
    text = json.dumps(body)
    if where == "name":
        text = text[:-1] + f', "rule_id": {literal}}}'
    elif where == "value":
        text = text.replace('"brightness": 0.1', f'"brightness": {literal}')
    elif where == "strength":
        text = text.replace('"brightness": 0.1', f'"brightness": 0.1, "strength": {literal}')
    elif where == "param":
        text = text.replace('"brightness": 0.1', f'"brightness": 0.1, "opts": [{{"a": {literal}}}]')
    elif where == "protect":
        text = text[:-1] + f', "protect": [{literal}]}}'
    else:
        text = text[:-1] + f', "instances": {{"0": {{"Wall": {{"exclude": [{literal}]}}}}}}}}'
    r = _raw(http, "POST", f"/jobs/{job_id}/execute", text, auth)
    assert r.status_code < 500, (text, r.text)
    r.json()  # an envelope, never a bare server error


@pytest.fixture
def created_job(live: LiveRest) -> Iterator[tuple[httpx.Client, dict[str, str], str]]:
    """A client, its user's auth and a created job: execute is refused for the job's state once the
    body decodes, so any number of examples queue nothing."""
    http = httpx.Client(base_url=live.base_url, timeout=60)
    auth, _ = sign_up(http)
    job_id = ok(http.post("/jobs", json={"preset": "interior", "item_count": 1}, headers=auth), 201)["job_id"]
    yield http, auth, job_id
    http.close()


def test_callbacks_cannot_store_what_a_later_read_cannot_give_back(live: LiveRest) -> None:
    user, job_id = queued_job(live.stack, 2)
    secret = live.stack.settings.auth.callback_secret
    assert secret
    http = httpx.Client(base_url=live.base_url, timeout=60)
    headers = {"X-Callback-Secret": secret, "Content-Type": "application/json"}
    prefix = f"outputs/{user}/{job_id}/0_result.png"
    done = {"idempotency_key": "k-inf", "idx": 0, "status": "done", "output_key": prefix}
    instance = {"concept": "Wall", "number": 1, "score": 0.9, "box": [0, 0, 1, 1], "area": 1}
    bodies = [
        json.dumps({**done, "instances": [instance]}).replace("0.9", "1e999"),
        json.dumps({**done, "instances": [instance]}).replace("[0, 0, 1, 1]", "[0, 0, Infinity, 1]"),
        json.dumps({**done, "protect_check": {"max_delta": 0.5}}).replace("0.5", "NaN"),
        json.dumps({**done, "protect_check": {"deep": [{"x": 0.5}]}}).replace("0.5", "-1e999"),
    ]
    for body in bodies:
        r = http.post(f"/jobs/{job_id}/callback", content=body.encode(), headers=headers)
        err(r, 400, "VALIDATION_ERROR")
    # The same values straight over gRPC, where a double field can hold them.
    with grpc.insecure_channel(live.grpc_target) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        metadata = (("x-callback-secret", secret),)
        reports = [
            jpb.ReportItemResultRequest(
                job_id=job_id,
                idempotency_key="g1",
                idx=0,
                status="done",
                output_key=prefix,
                instances=[pb.InstanceInfo(concept="Wall", number=1, score=math.inf, box=[0, 0, 1, 1])],
            ),
            jpb.ReportItemResultRequest(
                job_id=job_id,
                idempotency_key="g2",
                idx=0,
                status="done",
                output_key=prefix,
                instances=[pb.InstanceInfo(concept="Wall", number=1, score=0.5, box=[0, math.nan, 1, 1])],
            ),
        ]
        check = jpb.ReportItemResultRequest(
            job_id=job_id, idempotency_key="g3", idx=0, status="done", output_key=prefix
        )
        check.protect_check.update({"max_delta": math.inf})
        reports.append(check)
        for report in reports:
            with pytest.raises(grpc.RpcError) as raised:
                stub.ReportItemResult(report, metadata=metadata, timeout=30)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    # Nothing was stored: the job reads back, its items still open, and a good report still works.
    auth = bearer(live.stack.services.tokens.issue(user).token)
    job = ok(http.get(f"/jobs/{job_id}", headers=auth))
    assert all(i["status"] not in ("done", "failed") for i in job["items"]), job["items"]
    ok(http.post(f"/jobs/{job_id}/callback", json={**done, "instances": [instance]}, headers=headers))
    job = ok(http.get(f"/jobs/{job_id}", headers=auth))
    assert job["items"][0]["status"] == "done" and job["items"][0]["instances"][0]["score"] == 0.9
    check_invariants(live.stack.db)
    http.close()


def test_grpc_params_holding_nan_are_a_validation_error(live: LiveRest) -> None:
    http = httpx.Client(base_url=live.base_url, timeout=60)
    _, user = sign_up(http)
    token = live.stack.services.tokens.issue(user).token
    with grpc.insecure_channel(live.grpc_target) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        rule = jpb.CreateRuleRequest(name="r", preset_id="interior")
        rule.concepts["Wall"].action = "adjust"
        rule.concepts["Wall"].params.update({"brightness": math.nan})
        with pytest.raises(grpc.RpcError) as raised:
            stub.CreateRule(rule, metadata=(("authorization", f"Bearer {token}"),), timeout=30)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    assert ok(http.get("/rules", headers=bearer(token)))["rules"] == []
    http.close()
