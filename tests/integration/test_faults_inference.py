"""Triton killed with SIGKILL in the middle of an album, everything as real processes:
``python -m stack.serve`` (REST, gRPC, two in-process workers, SQLite) pointed by ``S3_TRITON_URL``
at a Triton server serving the tiny SAM3.

While Triton is gone the API keeps answering and ``/health`` says inference is down; every item that
was not finished retries with backoff and then fails cleanly and is refunded, and the credit
invariant holds. Once Triton is back on the same address, the next album is processed normally.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.db.engine import Database
from server.inference import local_triton
from server.inference.local_triton import LocalTriton
from server.ports import free_port
from tests.support.invariants import check_invariants
from tests.support.live_rest import bearer, check_envelope, ok, upload_all
from tests.support.pipeline import photo_jpeg, tiny_artifact
from tests.support.processes import child, service_env, wait_for, wait_http_ready
from tests.support.stack import make_settings

pytestmark = pytest.mark.integration

ITEMS = 8
WALL = {"Wall": {"action": "recolor", "value": "white"}}


def _album(http: httpx.Client, auth: dict[str, str], n: int, seed: int) -> str:
    created = ok(http.post("/jobs", json={"preset": "interior", "item_count": n}, headers=auth), 201)
    upload_all(http, created, [photo_jpeg(640, 480, seed=seed + i) for i in range(n)])
    ok(http.post(f"/jobs/{created['job_id']}/confirm-upload", headers=auth))
    ok(http.post(f"/jobs/{created['job_id']}/execute", json={"concepts": WALL}, headers=auth))
    job_id: str = created["job_id"]
    return job_id


def _job(http: httpx.Client, auth: dict[str, str], job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = ok(http.get(f"/jobs/{job_id}", headers=auth))
    return job


def test_triton_killed_mid_album_fails_cleanly_then_recovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "triton"
    repository = tiny_artifact().cpu_repository(work / "repository")
    triton = LocalTriton(repository, work)
    triton.start()
    try:
        db_url = f"sqlite:///{tmp_path / 's3.db'}"
        settings = make_settings(
            tmp_path / "data",
            database_url=db_url,
            http_port=free_port(),
            grpc_port=free_port(),
            workers=2,
            max_attempts=3,
            retry_backoff_s=0.2,
            lease_s=10.0,
        )
        env = service_env(settings, S3_TRITON_URL=triton.url, S3_INFERENCE_TIMEOUT_S="5")
        base = f"http://127.0.0.1:{settings.http.port}"
        with child("stack.serve", env, tmp_path / "logs") as serve, httpx.Client(base_url=base, timeout=30) as http:
            wait_http_ready(base, serve)
            auth = bearer(ok(http.post("/auth/anon"), 201)["token"])
            job_id = _album(http, auth, ITEMS, seed=0)
            wait_for(lambda: _job(http, auth, job_id)["done_items"] >= 1, timeout_s=60, what="a first item done")
            assert triton.pid is not None
            os.kill(triton.pid, signal.SIGKILL)
            killed_at = time.monotonic()

            def inference_down() -> bool:
                r = http.get("/health")
                body = check_envelope(r)
                return r.status_code == 503 and body["error"]["code"] == "INFERENCE_UNAVAILABLE"

            wait_for(inference_down, timeout_s=20, what="/health to report inference down", poll_s=0.2)
            # The API still answers quickly while inference is down.
            started = time.monotonic()
            ok(http.get("/me", headers=auth))
            ok(http.get(f"/jobs/{job_id}", headers=auth))
            assert time.monotonic() - started < 2.0

            wait_for(
                lambda: _job(http, auth, job_id)["status"] in ("done", "failed"),
                timeout_s=90,
                what="the album to end",
                poll_s=0.2,
            )
            job = _job(http, auth, job_id)
            print(
                f"album ended {time.monotonic() - killed_at:.1f}s after the kill: {job['done_items']} done, {job['failed_items']} failed"
            )
            assert job["done_items"] + job["failed_items"] == ITEMS and job["failed_items"] >= 1
            for item in job["items"]:
                if item["status"] == "failed":
                    assert item["attempts"] == 3 and "Triton" in item["error"], item
            me = ok(http.get("/me", headers=auth))
            assert (me["credits"], me["credits_reserved"], me["active_jobs"]) == (100 - job["done_items"], 0, 0)

            # Triton back on the same address: the service reconnects by itself.
            port = triton.grpc_port
            triton.stop()
            monkeypatch.setattr(local_triton, "free_port", lambda: port)
            triton = LocalTriton(repository, work)
            triton.start()
            wait_for(lambda: http.get("/health").status_code == 200, timeout_s=30, what="health", poll_s=0.2)
            again = _album(http, auth, 2, seed=100)
            wait_for(
                lambda: _job(http, auth, again)["status"] == "done", timeout_s=60, what="the next album", poll_s=0.2
            )
        db = Database.from_url(db_url)
        try:
            check_invariants(db)
        finally:
            db.dispose()
    finally:
        triton.stop()
