"""GET /jobs/{id}/events: Server-Sent Events from the WatchJob stream."""

from __future__ import annotations

import json
import time

import httpx
from starlette.testclient import TestClient

from gateway_rest.app import create_app
from protos.s3.v1 import jobs_pb2 as jpb
from protos.s3.v1 import types_pb2 as pb
from server.errors import InferenceUnavailable, NotFound
from tests.unit.gateway.conftest import AUTH, ClientFactory
from tests.unit.gateway.fake_service import Script
from tests.unit.gateway.live import run_server


def _event(status: str, done: int, *, final: bool = False) -> jpb.JobEvent:
    job = pb.Job(job_id="j1", status=status, total_items=2, done_items=done, items=[pb.JobItem(idx=0)])
    return jpb.JobEvent(job=job, final=final)


def _parse(text: str) -> list[tuple[str, str]]:
    """(event name or ':' for a comment, data) per SSE block."""
    out = []
    for block in text.strip().split("\n\n"):
        if block.startswith(":"):
            out.append((":", block))
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((fields["event"], fields["data"]))
    return out


def test_events_until_terminal_then_end(client: TestClient, script: Script) -> None:
    script.events = [_event("queued", 0), _event("running", 1), _event("done", 2, final=True)]
    with client.stream("GET", "/jobs/j1/events", headers={**AUTH, "X-Request-Id": "rid-sse"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-request-id"] == "rid-sse"
        text = r.read().decode()
    events = _parse(text)
    assert [name for name, _ in events] == ["job", "job", "job", "end"]
    statuses = [json.loads(data)["status"] for _, data in events]
    assert statuses == ["queued", "running", "done", "done"]
    assert json.loads(events[1][1])["items"][0]["output_url"] is None
    assert "id: 3\n" in text
    assert script.calls[-1].metadata["x-request-id"] == "rid-sse"


def test_quiet_periods_send_keep_alive_comments(make_client: ClientFactory, script: Script) -> None:
    client = make_client(sse_keepalive_s=0.05)
    script.events = [_event("running", 0), _event("done", 2, final=True)]
    script.event_gap_s = 0.4
    with client.stream("GET", "/jobs/j1/events", headers=AUTH) as r:
        names = [name for name, _ in _parse(r.read().decode())]
    assert names[0] == "job" and names[-2:] == ["job", "end"]
    assert names.count(":") >= 2


def test_errors_before_the_stream_are_envelopes(client: TestClient, script: Script) -> None:
    script.error = NotFound("job not found")
    r = client.get("/jobs/j1/events", headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"


def test_failure_mid_stream_is_an_error_event(client: TestClient, script: Script) -> None:
    script.events = [_event("running", 0)]
    script.fail_after_events = InferenceUnavailable("the inference server went away")
    with client.stream("GET", "/jobs/j1/events", headers=AUTH) as r:
        assert r.status_code == 200
        events = _parse(r.read().decode())
    assert [name for name, _ in events] == ["job", "error"]
    assert json.loads(events[1][1]) == {
        "code": "INFERENCE_UNAVAILABLE",
        "message": "the inference server went away",
    }


def test_client_disconnect_cancels_the_watch(target: str, script: Script) -> None:
    script.events = [_event("running", 0)]
    with run_server(create_app(grpc_target=target, sse_keepalive_s=0.05)) as base:
        with httpx.Client(base_url=base, timeout=5) as http, http.stream("GET", "/jobs/j1/events", headers=AUTH) as r:
            assert next(r.iter_lines()) == "event: job"
        # Leaving the block closed the connection mid-stream.
        started = time.monotonic()
        assert script.watch_ended.wait(5), "the gRPC watch outlived its HTTP client"
        assert time.monotonic() - started < 5
