"""Operator tools against real servers: ``s3ctl`` as a subprocess, and the Prometheus endpoints of
a ``python -m stack.serve`` process (the shim's operator address and the JobService's own port) scraped
and parsed after real traffic, inference included."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.grpc_api.server import build_grpc_server
from server.inference.artifacts import REPO_ROOT
from server.ports import free_port
from server.work.queue import WorkQueue
from tests.support.invariants import check_invariants
from tests.support.pipeline import job_statuses, link_tiny_model, queued_job
from tests.support.processes import child, service_env, wait_for, wait_http_ready
from tests.support.stack import Stack, make_stack

pytestmark = pytest.mark.integration


@dataclasses.dataclass
class Ctl:
    env: dict[str, str]

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stack.ctl", *args],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def json(self, *args: str) -> Any:
        done = self("--json", *args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def _ctl_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3_")}
    env.update(values)
    return env


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Stack, int]]:
    stack = make_stack(f"sqlite:///{tmp_path / 's3.db'}", tmp_path / "data", max_attempts=1)
    server = build_grpc_server(stack.services, bind="127.0.0.1:0", max_workers=8)
    server.start()
    try:
        yield stack, server.port
    finally:
        server.stop(1.0)
        stack.db.dispose()


def test_s3ctl_grant_user_dead_letters_requeue(served: tuple[Stack, int]) -> None:
    stack, port = served
    token = stack.settings.auth.admin_token
    assert token is not None
    ctl = Ctl(_ctl_env(S3_GRPC_TARGET=f"127.0.0.1:{port}", S3_ADMIN_TOKEN=token))
    user, job_id = queued_job(stack, 2)
    claim = WorkQueue(stack.db, stack.settings.queue).claim("worker-x")
    assert claim is not None
    WorkQueue(stack.db, stack.settings.queue).fail(claim, "Triton: model not loaded", retryable=True)

    granted = ctl("grant", user, "25", "--reason", "ticket 7", "--actor", "alice")
    assert granted.returncode == 0, granted.stderr
    assert "granted 25" in granted.stdout and "admin_grant" in granted.stdout

    shown = ctl.json("user", user)
    assert shown["state"]["credits"] == 100 - 2 + 1 + 25  # reserved 2, one refunded, 25 granted
    assert shown["credits_granted"] == 125
    assert [e["type"] for e in shown["recent_events"]][:2] == ["admin_grant", "refund"]
    table = ctl("user", user)
    assert table.returncode == 0 and "credits available  124" in table.stdout

    dead = ctl.json("dead-letters")
    assert [(d["job_id"], d["idx"], d["requeueable"]) for d in dead["items"]] == [(job_id, claim.idx, True)]
    listed = ctl("dead-letters")
    assert job_id in listed.stdout and "Triton: model not loaded" in listed.stdout

    requeued = ctl("requeue", job_id, str(claim.idx), "--reason", "retry after fix")
    assert requeued.returncode == 0, requeued.stderr
    assert ctl.json("job", job_id)["queue"][claim.idx]["requeues"] == 1
    assert ctl.json("dead-letters")["items"] == []
    canceled = ctl.json("cancel", job_id)
    assert canceled["job"]["status"] == "canceled"
    assert ctl.json("plan", user, "pro")["state"]["max_concurrency"] == 3
    check_invariants(stack.db)

    # Failures: the contract code and message on stderr, a non-zero exit.
    again = ctl("requeue", job_id, str(claim.idx))
    assert again.returncode == 1 and again.stderr.startswith("s3ctl: INVALID_STATE: ")
    assert ctl("grant", user, "0", "--reason", "x").stderr.startswith("s3ctl: VALIDATION_ERROR: amount")
    wrong = Ctl(_ctl_env(S3_GRPC_TARGET=f"127.0.0.1:{port}", S3_ADMIN_TOKEN="w" * 43))("user", user)
    assert wrong.returncode == 1 and wrong.stderr.startswith("s3ctl: FORBIDDEN: ")
    no_token = Ctl(_ctl_env(S3_GRPC_TARGET=f"127.0.0.1:{port}", S3_DATA_DIR=str(stack.settings.data_dir / "none")))
    missing = no_token("user", user)
    assert missing.returncode == 2 and "no admin token" in missing.stderr
    nobody = Ctl(_ctl_env(S3_GRPC_TARGET=f"127.0.0.1:{free_port()}", S3_ADMIN_TOKEN=token))
    down = nobody("--timeout", "2", "user", user)
    assert down.returncode == 1 and down.stderr.startswith("s3ctl: UNAVAILABLE: ")


def _scrape(url: str) -> dict[str, list[tuple[Mapping[str, str], float]]]:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, list[tuple[Mapping[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def _value(samples: dict[str, list[tuple[Mapping[str, str], float]]], name: str, **labels: str) -> float:
    found = [v for have, v in samples.get(name, []) if all(have.get(k) == want for k, want in labels.items())]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


def test_metrics_of_a_served_stack_and_s3ctl_with_the_generated_token(tmp_path: Path) -> None:
    data_dir = link_tiny_model(tmp_path / "data")
    http_port, grpc_port, metrics_port, operator_port = free_port(), free_port(), free_port(), free_port()
    stack = make_stack(
        f"sqlite:///{tmp_path / 's3.db'}",
        data_dir,
        inference="onnx",
        http_port=http_port,
        grpc_port=grpc_port,
        workers=1,
        operator_port=operator_port,
    )
    base = f"http://127.0.0.1:{http_port}"
    operator = f"http://127.0.0.1:{operator_port}"
    try:
        user, job_id = queued_job(stack, 2)
        # No S3_ADMIN_TOKEN: the server generates data_dir/secrets/admin_token, where s3ctl finds it.
        env = service_env(stack.settings.changed(admin_token=None), S3_METRICS_PORT=str(metrics_port))
        with child("stack.serve", env, tmp_path / "logs") as server:
            wait_http_ready(base, server)
            with httpx.Client(base_url=base, timeout=30) as http:
                token = http.post("/auth/anon").json()["data"]["token"]
                for _ in range(2):
                    assert http.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
                assert http.get("/me").status_code == 401
                assert http.get("/jobs/3f2a").status_code == 401
            wait_for(
                lambda: job_statuses(stack.db, [job_id])[job_id] == "done" or not server.alive(),
                timeout_s=120,
                what="the served worker to finish the job",
            )
            assert server.alive(), server.output()[-3000:]

            # The operator surface is off the public port: there, /metrics does not exist and /health
            # says only ok; on the operator address both tell everything.
            with httpx.Client(timeout=30) as http:
                assert http.get(f"{base}/metrics").status_code == 404
                assert http.get(f"{base}/health").json()["data"] == {"ok": True}
                detailed = http.get(f"{operator}/health").json()["data"]
                assert detailed["ok"] is True and detailed["model_meaningful"] is False
                assert {"database", "storage", "inference"} <= set(detailed["components"])
                http.request("BREW", f"{base}/me")
            shim = _scrape(f"{operator}/metrics")
            assert _value(shim, "s3_http_requests_total", method="GET", route="/me", status="200") == 2
            assert _value(shim, "s3_http_requests_total", method="GET", route="/me", status="401") == 1
            assert _value(shim, "s3_http_requests_total", method="POST", route="/auth/anon", status="201") == 1
            assert _value(shim, "s3_http_requests_total", method="GET", route="/jobs/{job_id}", status="401") == 1
            assert _value(shim, "s3_http_request_duration_seconds_count", method="GET", route="/me", status="200") == 2
            assert _value(shim, "s3_http_requests_total", method="OTHER", route="/me", status="405") == 1
            assert not any(labels.get("method") == "BREW" for labels, _ in shim["s3_http_requests_total"])

            ctl = Ctl(_ctl_env(S3_GRPC_TARGET=f"127.0.0.1:{grpc_port}", S3_DATA_DIR=str(data_dir)))
            shown = ctl.json("user", user)
            assert shown["state"]["credits_spent"] == 2

            service = _scrape(f"http://127.0.0.1:{metrics_port}/metrics")
            grpc_me = {"method": "/s3.v1.JobService/GetMe"}
            assert _value(service, "s3_grpc_requests_total", **grpc_me, code="OK") == 2
            # The request without a token was answered by the shim's edge check: it never reached gRPC.
            assert not [v for labels, v in service["s3_grpc_requests_total"] if labels.get("code") == "AUTH_REQUIRED"]
            assert _value(service, "s3_grpc_requests_total", method="/s3.v1.AdminService/GetUser", code="OK") == 1
            assert _value(service, "s3_grpc_request_duration_seconds_count", **grpc_me, code="OK") == 2
            # The served worker segmented both photos through the timed segmenter.
            assert _value(service, "s3_inference_duration_seconds_count", outcome="ok") >= 2
            assert _value(service, "s3_jobs", status="done") == 1
            assert _value(service, "s3_queue_depth", stage="execute", state="ready") == 0
            assert _value(service, "s3_metrics_database_up") == 1
    finally:
        stack.db.dispose()
    check_invariants(stack.db)
