"""``GET /metrics`` on the shim: Prometheus text (no envelope), counters per route template and
status that move with the requests, one series for every unknown path, and no sharing between apps."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from server.errors import NotFound
from tests.unit.gateway.conftest import AUTH, ClientFactory
from tests.unit.gateway.fake_service import Script


def _samples(client: TestClient, name: str) -> dict[tuple[str, str, str], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    out: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name:
                labels = sample.labels
                out[(labels["method"], labels["route"], labels["status"])] = sample.value
    return out


def test_counters_move_per_route_template_and_status(client: TestClient, script: Script) -> None:
    assert _samples(client, "s3_http_requests_total") == {}
    for _ in range(3):
        assert client.get("/me", headers=AUTH).status_code == 200
    client.get("/jobs/3f2a/events/x")  # no such route
    client.get("/no/such/path")
    script.error = NotFound("job not found")
    assert client.get("/jobs/abc", headers=AUTH).status_code == 404
    assert client.get("/jobs/def", headers=AUTH).status_code == 404
    assert client.delete("/me", headers=AUTH).status_code == 405

    counts = _samples(client, "s3_http_requests_total")
    assert counts[("GET", "/me", "200")] == 3
    assert counts[("GET", "/jobs/{job_id}", "404")] == 2  # one series for both job ids
    assert counts[("GET", "<unmatched>", "404")] == 2
    assert counts[("DELETE", "/me", "405")] == 1
    assert not any("abc" in route or "3f2a" in route for _, route, _ in counts)
    latency = _samples(client, "s3_http_request_duration_seconds_count")
    assert latency[("GET", "/me", "200")] == 3
    # The previous scrape is counted too, by the time this one is rendered.
    assert _samples(client, "s3_http_requests_total")[("GET", "/metrics", "200")] == 3


def test_metrics_is_not_an_envelope_and_needs_no_token(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert "# TYPE s3_http_requests_total counter" in response.text
    assert not response.text.lstrip().startswith("{")


def test_each_app_has_its_own_registry(make_client: ClientFactory) -> None:
    first, second = make_client(), make_client()
    first.get("/me", headers=AUTH)
    assert ("GET", "/me", "200") in _samples(first, "s3_http_requests_total")
    assert ("GET", "/me", "200") not in _samples(second, "s3_http_requests_total")
