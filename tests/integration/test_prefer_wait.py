"""``Prefer: wait=N`` through the real shim and JobService: the answer comes when the job ends (with
``Preference-Applied``), or after the capped wait with the job as it is then; waiting requests hold
no JobService thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.live_rest import LiveRest, bearer, live_rest, ok
from tests.support.pipeline import link_tiny_model, photo_jpeg, process_jobs

pytestmark = pytest.mark.integration

MAX_WAIT_S = 30
EXECUTE = {"concepts": {"Wall": {"action": "recolor", "value": "white"}}}


@pytest.fixture(params=[MAX_WAIT_S])
def api(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> Iterator[LiveRest]:
    with live_rest(
        database_url,
        link_tiny_model(tmp_path / "data"),
        grpc_workers=4,
        inference="onnx",
        app_options={"prefer_wait_max_s": request.param, "prefer_poll_s": 0.1},
    ) as served:
        yield served


def _uploaded_job(http: httpx.Client) -> tuple[dict[str, str], str]:
    auth = bearer(ok(http.post("/auth/anon"), 201)["token"])
    created = ok(http.post("/jobs", json={"preset": "interior", "item_count": 1}, headers=auth), 201)
    [upload] = created["upload_urls"]
    ok(http.put(upload["url"], content=photo_jpeg(96, 72), headers=upload["headers"]))
    ok(http.post(f"/jobs/{created['job_id']}/confirm-upload", headers=auth))
    return auth, created["job_id"]


def test_execute_answers_when_the_job_is_done(api: LiveRest) -> None:
    with httpx.Client(base_url=api.base_url, timeout=60) as http:
        auth, job_id = _uploaded_job(http)
        # The workers start a moment after the request, so the answer can only be "done" by waiting.
        workers = threading.Timer(0.5, lambda: process_jobs(api.stack, [job_id], workers=1))
        workers.start()
        try:
            answer = http.post(f"/jobs/{job_id}/execute", json=EXECUTE, headers={**auth, "Prefer": "wait=25"})
        finally:
            workers.join()
        job = ok(answer)
        assert answer.headers["preference-applied"] == "wait=25"
        assert job["status"] == "done" and job["set_url"], job


@pytest.mark.parametrize("api", [2], indirect=True)
def test_the_wait_is_capped_and_then_answers_with_the_state_so_far(api: LiveRest) -> None:
    with httpx.Client(base_url=api.base_url, timeout=60) as http:
        auth, job_id = _uploaded_job(http)
        ok(http.post(f"/jobs/{job_id}/execute", json=EXECUTE, headers=auth))
        started = time.monotonic()
        answer = http.get(f"/jobs/{job_id}", headers={**auth, "Prefer": "respond-async, wait=600"})
        waited = time.monotonic() - started
        assert ok(answer)["status"] == "queued"  # no worker runs in this test
        assert answer.headers["preference-applied"] == "wait=2"
        assert 1.8 <= waited < 4


def test_no_or_malformed_preference_answers_at_once(api: LiveRest) -> None:
    with httpx.Client(base_url=api.base_url, timeout=60) as http:
        auth, job_id = _uploaded_job(http)
        for prefer in (None, "wait=soon", "wait=-1", "handling=lenient"):
            headers = auth if prefer is None else {**auth, "Prefer": prefer}
            started = time.monotonic()
            answer = http.get(f"/jobs/{job_id}", headers=headers)
            assert ok(answer)["status"] == "uploaded"
            assert "preference-applied" not in answer.headers
            assert time.monotonic() - started < 1.5, prefer


def test_many_waiters_do_not_hold_the_job_service_threads(api: LiveRest) -> None:
    """The JobService here has 4 threads; 24 requests waiting 2 s at once would take 12 s or more if
    each held one while waiting. They all answer in about the wait."""
    with httpx.Client(base_url=api.base_url, timeout=60) as http:
        auth, job_id = _uploaded_job(http)

    async def waiters() -> list[float]:
        async with httpx.AsyncClient(base_url=api.base_url, timeout=60) as client:

            async def one() -> float:
                started = time.monotonic()
                answer = await client.get(f"/jobs/{job_id}", headers={**auth, "Prefer": "wait=2"})
                assert answer.status_code == 200 and answer.headers["preference-applied"] == "wait=2"
                return time.monotonic() - started

            return list(await asyncio.gather(*(one() for _ in range(24))))

    durations = asyncio.run(waiters())
    assert min(durations) >= 1.8 and max(durations) < 6, durations
