"""Route by route: what the shim sends to the JobService and what JSON it answers."""

from __future__ import annotations

from starlette.testclient import TestClient

from protos.s3.v1 import jobs_pb2 as jpb
from protos.s3.v1 import types_pb2 as pb
from tests.unit.gateway.conftest import AUTH, ClientFactory
from tests.unit.gateway.fake_service import Script

_REPORT = jpb.GetHealthResponse(
    ok=True,
    components=[
        jpb.ComponentHealth(name="database", ok=True, detail="sqlite"),
        jpb.ComponentHealth(name="storage", ok=True, detail="local"),
        jpb.ComponentHealth(name="inference", ok=True, detail="triton"),
    ],
    model="sam3-tiny-random",
    model_meaningful=False,
)


def test_public_health_says_ok_and_nothing_more(client: TestClient, script: Script) -> None:
    script.health = _REPORT
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json()["data"] == {"ok": True}
    assert "authorization" not in script.calls[-1].metadata


def test_public_health_down_is_503_without_the_report(client: TestClient, script: Script) -> None:
    script.health = jpb.GetHealthResponse(
        ok=False,
        components=[
            jpb.ComponentHealth(name="database", ok=True, detail="sqlite"),
            jpb.ComponentHealth(name="inference", ok=False, detail="connection refused at 10.0.0.7:8001"),
        ],
    )
    r = client.get("/health")
    body = r.json()
    assert r.status_code == 503 and body["success"] is False
    assert body["error"]["code"] == "INFERENCE_UNAVAILABLE" and body["data"] == {"ok": False}
    assert "10.0.0.7" not in r.text and "sqlite" not in r.text


def test_operator_health_has_the_report(operator: TestClient, script: Script) -> None:
    script.health = _REPORT
    data = operator.get("/health").json()["data"]
    assert set(data["components"]) == {"database", "storage", "inference"}
    assert data["components"]["database"] == {"ok": True, "detail": "sqlite"}
    assert (data["model"], data["model_meaningful"]) == ("sam3-tiny-random", False)
    script.health = jpb.GetHealthResponse(
        ok=False, components=[jpb.ComponentHealth(name="inference", ok=False, detail="connection refused")]
    )
    r = operator.get("/health")
    body = r.json()
    assert r.status_code == 503 and body["error"]["code"] == "INFERENCE_UNAVAILABLE"
    assert "inference" in body["error"]["message"]
    assert body["data"]["components"]["inference"]["detail"] == "connection refused"


def test_create_rule_splits_action_from_params(client: TestClient, script: Script) -> None:
    concepts = {"Wall": {"action": "recolor", "value": "white", "strength": 1, "opts": {"a": [1, 2.5]}}}
    r = client.post(
        "/rules",
        json={"name": "test", "preset_id": "interior", "concepts": concepts, "protect": ["Text"]},
        headers=AUTH,
    )
    assert r.status_code == 201
    sent = script.calls[-1].request
    assert isinstance(sent, jpb.CreateRuleRequest)
    assert sent.concepts["Wall"].action == "recolor"
    assert dict(sent.concepts["Wall"].params)["value"] == "white"
    assert list(sent.protect) == ["Text"]
    # Back out: the same map, whole numbers as integers (Struct stores doubles).
    assert r.json()["data"]["concepts"] == concepts


def test_update_rule_sends_only_the_given_fields(client: TestClient, script: Script) -> None:
    client.put("/rules/r1", json={"name": "walls"}, headers=AUTH)
    sent = script.calls[-1].request
    assert isinstance(sent, jpb.UpdateRuleRequest)
    assert sent.rule_id == "r1" and sent.HasField("name") and not sent.HasField("preset_id")
    assert not sent.replace_concepts and not sent.replace_protect
    client.put("/rules/r1", json={"concepts": {}, "protect": []}, headers=AUTH)
    sent = script.calls[-1].request
    assert isinstance(sent, jpb.UpdateRuleRequest)
    assert sent.replace_concepts and sent.replace_protect and not sent.HasField("name")


def test_unknown_and_mistyped_fields_are_named(client: TestClient, script: Script) -> None:
    cases = [
        ({"name": "n", "preset_id": "interior", "concepts": {}, "colour": 1}, "'colour'"),
        ({"name": 3, "preset_id": "interior", "concepts": {}}, "name must be a string"),
        ({"preset_id": "interior", "concepts": {}}, "name is required"),
        ({"name": "n", "preset_id": "interior", "concepts": []}, "concepts must be an object"),
        ({"name": "n", "preset_id": "interior", "concepts": {"Wall": "white"}}, "concepts.Wall must"),
        ({"name": "n", "preset_id": "interior", "concepts": {"Wall": {"value": 1}}}, "concepts.Wall.action"),
        ({"name": "n", "preset_id": "interior", "concepts": {}, "protect": "Text"}, "protect must be"),
    ]
    for body, needle in cases:
        r = client.post("/rules", json=body, headers=AUTH)
        assert r.status_code == 400, body
        assert needle in r.json()["error"]["message"], (body, r.json())
    assert script.calls == []


def test_create_job_and_list(client: TestClient, script: Script) -> None:
    r = client.post("/jobs", json={"preset": "interior", "item_count": 2}, headers=AUTH)
    data = r.json()["data"]
    assert r.status_code == 201 and data["status"] == "created"
    assert data["upload_urls"] == [
        {"idx": 0, "key": "inputs/u1/j1/0.jpg", "url": "http://x", "method": "PUT", "headers": {}, "expires_at": None}
    ]
    for bad, needle in [
        ({"preset": "interior", "item_count": True}, "item_count must be an integer"),
        ({"preset": "interior", "item_count": 2**40}, "item_count is out of range"),
    ]:
        r = client.post("/jobs", json=bad, headers=AUTH)
        assert r.status_code == 400 and needle in r.json()["error"]["message"]
    r = client.get("/jobs?page_size=5&page_token=abc", headers=AUTH)
    sent = script.calls[-1].request
    assert isinstance(sent, jpb.ListJobsRequest) and (sent.page_size, sent.page_token) == (5, "abc")
    listed = r.json()["data"]
    assert listed["next_page_token"] is None and "items" not in listed["jobs"][0]
    assert client.get("/jobs?page_size=-1", headers=AUTH).status_code == 400


def test_job_json_turns_empty_strings_into_null(client: TestClient, script: Script) -> None:
    script.job = pb.Job(
        job_id="j1",
        status="running",
        preset="interior",
        total_items=2,
        done_items=1,
        progress=0.5,
        items=[
            pb.JobItem(idx=0, status="done", input_url="http://in/0", output_url="http://out/0"),
            pb.JobItem(
                idx=1,
                status="queued",
                input_url="http://in/1",
                instances=[pb.InstanceInfo(concept="Wall", number=1, score=0.9, box=[0, 0, 4, 4], area=16)],
            ),
        ],
    )
    job = client.get("/jobs/j1", headers=AUTH).json()["data"]
    assert job["set_url"] is None and job["rule_id"] is None and job["upload_expires_at"] is None
    done, queued = job["items"]
    assert done["output_url"] == "http://out/0" and done["error"] is None and done["protect_check"] is None
    assert queued["output_url"] is None and queued["preview_url"] is None
    assert queued["instances"] == [
        {"concept": "Wall", "number": 1, "score": 0.9, "box": [0, 0, 4, 4], "area": 16, "mask_url": None}
    ]
    sent = script.calls[-1].request
    assert isinstance(sent, jpb.JobRef) and sent.job_id == "j1"


def test_execute_decodes_concepts_and_instance_choices(client: TestClient, script: Script) -> None:
    body = {
        "concepts": {"Wall": {"action": "recolor", "value": "white"}},
        "protect": ["edges"],
        "instances": {"0": {"Wall": {"exclude": [2], "lock": [1]}}, "3": {"Floor": {"exclude": [1, 4]}}},
        "output_set": "web",
    }
    assert client.post("/jobs/j1/execute", json=body, headers=AUTH).status_code == 200
    sent = script.calls[-1].request
    assert isinstance(sent, jpb.ExecuteJobRequest)
    assert sent.job_id == "j1" and sent.output_set == "web" and list(sent.protect) == ["edges"]
    assert list(sent.instances[0].concepts["Wall"].exclude) == [2]
    assert list(sent.instances[0].concepts["Wall"].lock) == [1]
    assert list(sent.instances[3].concepts["Floor"].exclude) == [1, 4]
    for bad, needle in [
        ({"instances": {"x": {}}}, "instances key 'x'"),
        ({"instances": {"01": {}}}, "instances key '01'"),
        ({"instances": {"0": {"Wall": {"exclude": ["2"]}}}}, "instances.0.Wall.exclude[0]"),
        ({"instances": {"0": {"Wall": {"hide": [2]}}}}, "'instances.0.Wall.hide'"),
        ({"rule_id": 5}, "rule_id must be a string"),
    ]:
        r = client.post("/jobs/j1/execute", json=bad, headers=AUTH)
        assert r.status_code == 400 and needle in r.json()["error"]["message"], (bad, r.json())


def test_bodyless_posts_accept_nothing_or_an_empty_object(client: TestClient, script: Script) -> None:
    assert client.post("/jobs/j1/confirm-upload", headers=AUTH).status_code == 200
    assert client.post("/jobs/j1/confirm-upload", json={}, headers=AUTH).status_code == 200
    r = client.post("/jobs/j1/confirm-upload", json={"force": True}, headers=AUTH)
    assert r.status_code == 400 and "'force'" in r.json()["error"]["message"]
    r = client.post("/auth/anon")
    assert r.status_code == 201 and r.json()["data"]["token"] == "t"


def test_callback_checks_the_job_id_and_forwards_the_result(client: TestClient, script: Script) -> None:
    body = {
        "idempotency_key": "k1",
        "idx": 1,
        "status": "done",
        "instances": [{"concept": "Wall", "number": 1, "score": 0.5, "box": [1, 2, 3, 4], "area": 4}],
        "protect_check": {"ok": True, "changed_px": 0},
    }
    r = client.post("/jobs/j1/callback", json={**body, "job_id": "other"}, headers=AUTH)
    assert r.status_code == 400
    r = client.post("/jobs/j1/callback", json=body)
    assert r.status_code == 200
    sent = script.calls[-1].request
    assert isinstance(sent, jpb.ReportItemResultRequest)
    assert (sent.job_id, sent.idx, sent.instances[0].concept) == ("j1", 1, "Wall")
    assert dict(sent.protect_check)["ok"] is True


def test_cors_for_the_web_build(make_client: ClientFactory, script: Script) -> None:
    client = make_client(cors_origins=["https://app.example"])
    preflight = client.options(
        "/rules",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    ok = client.get("/me", headers={**AUTH, "Origin": "https://app.example"})
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-request-id" in ok.headers["access-control-expose-headers"].lower()
    # Errors, including routing errors, carry the CORS headers too: the app must read their envelope.
    missing = client.get("/nowhere", headers={"Origin": "https://app.example"})
    assert missing.status_code == 404 and missing.headers["access-control-allow-origin"] == "https://app.example"
    other = client.get("/me", headers={**AUTH, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    denied = client.options(
        "/rules", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert denied.status_code == 400


def test_no_cors_headers_unless_configured(client: TestClient) -> None:
    r = client.get("/me", headers={**AUTH, "Origin": "https://app.example"})
    assert "access-control-allow-origin" not in r.headers
