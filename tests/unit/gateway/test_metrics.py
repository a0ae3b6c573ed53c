"""The shim's metrics: Prometheus text (no envelope) on the operator surface only, counters per route
template and status that move with the requests, one series for every unknown path or made-up
method, and no sharing between apps."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from gateway_rest.metrics import HttpMetrics
from server.errors import NotFound
from tests.unit.gateway.conftest import AUTH, ClientFactory
from tests.unit.gateway.fake_service import Script


def _samples(operator: TestClient, name: str) -> dict[tuple[str, str, str], float]:
    response = operator.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    out: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name:
                labels = sample.labels
                out[(labels["method"], labels["route"], labels["status"])] = sample.value
    return out


def test_counters_move_per_route_template_and_status(client: TestClient, operator: TestClient, script: Script) -> None:
    assert _samples(operator, "s3_http_requests_total") == {}
    for _ in range(3):
        assert client.get("/me", headers=AUTH).status_code == 200
    client.get("/jobs/3f2a/events/x")  # no such route
    client.get("/no/such/path")
    script.error = NotFound("job not found")
    assert client.get("/jobs/abc", headers=AUTH).status_code == 404
    assert client.get("/jobs/def", headers=AUTH).status_code == 404
    assert client.delete("/me", headers=AUTH).status_code == 405

    counts = _samples(operator, "s3_http_requests_total")
    assert counts[("GET", "/me", "200")] == 3
    assert counts[("GET", "/jobs/{job_id}", "404")] == 2  # one series for both job ids
    assert counts[("GET", "<unmatched>", "404")] == 2
    assert counts[("DELETE", "/me", "405")] == 1
    assert not any("abc" in route or "3f2a" in route for _, route, _ in counts)
    latency = _samples(operator, "s3_http_request_duration_seconds_count")
    assert latency[("GET", "/me", "200")] == 3
    # Scrapes of the operator surface are not requests of the public API.
    assert not any(route == "/metrics" for _, route, _ in counts)


def test_made_up_methods_share_one_label(client: TestClient, operator: TestClient) -> None:
    for n in range(50):
        client.request(f"BREW{n}", "/me", headers=AUTH)
        client.request(f"X-{n}", f"/random/{n}")
    counts = _samples(operator, "s3_http_requests_total")
    methods = {method for method, _, _ in counts}
    assert methods == {"OTHER"}, methods
    assert counts[("OTHER", "/me", "405")] == 50
    assert counts[("OTHER", "<unmatched>", "404")] == 50


def test_the_public_port_has_no_metrics(client: TestClient) -> None:
    r = client.get("/metrics")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"


def test_metrics_is_not_an_envelope_and_needs_no_token(operator: TestClient) -> None:
    response = operator.get("/metrics")
    assert response.status_code == 200
    assert "# TYPE s3_http_requests_total counter" in response.text
    assert not response.text.lstrip().startswith("{")


def test_each_app_has_its_own_registry(make_client: ClientFactory) -> None:
    first_metrics, second_metrics = HttpMetrics(), HttpMetrics()
    first = make_client(metrics=first_metrics)
    make_client(metrics=second_metrics)
    first.get("/me", headers=AUTH)
    assert b'route="/me"' in first_metrics.exposition()
    assert b'route="/me"' not in second_metrics.exposition()
