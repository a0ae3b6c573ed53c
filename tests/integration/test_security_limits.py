"""Limits under attack: bursts of parallel requests through the REST API cannot get past the plan's
concurrency, its rule slots or the user's credits, nor settle a job twice; on SQLite and PostgreSQL.

Each burst is 16 requests released at once from a thread pool against the real stack (uvicorn, the
gateway, the gRPC JobService with its thread pool, the database's locks).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from server.db.tables import UserRow
from tests.support.invariants import check_invariants
from tests.support.live_rest import LiveRest, check_envelope, live_rest, ok, sign_up, upload_all
from tests.support.stack import jpeg_bytes

pytestmark = pytest.mark.integration

BURST = 16
RULE = {"name": "r", "preset_id": "interior", "concepts": {"Wall": {"action": "blur"}}}


@pytest.fixture
def live(database_url: str, tmp_path: Path) -> Iterator[LiveRest]:
    with live_rest(database_url, tmp_path / "data", starting_credits=5) as served:
        yield served


def _burst(live: LiveRest, send: Callable[[httpx.Client], httpx.Response]) -> Counter[str]:
    """``send`` BURST times at once; the tally of ``"<status> <code or ok>"``."""
    gate = threading.Barrier(BURST)

    def one(_: int) -> str:
        with httpx.Client(base_url=live.base_url, timeout=60) as http:
            gate.wait()
            response = send(http)
        body = check_envelope(response)
        return f"{response.status_code} {body['error']['code'] if body['error'] else 'ok'}"

    with ThreadPoolExecutor(BURST) as pool:
        return Counter(pool.map(one, range(BURST)))


def test_concurrency_and_rule_slots_hold_under_a_burst(live: LiveRest) -> None:
    with httpx.Client(base_url=live.base_url, timeout=60) as http:
        auth, _ = sign_up(http)
        jobs = _burst(live, lambda h: h.post("/jobs", json={"preset": "interior", "item_count": 1}, headers=auth))
        assert jobs == {"201 ok": 1, "429 CONCURRENCY_LIMIT": BURST - 1}, jobs
        rules = _burst(live, lambda h: h.post("/rules", json=RULE, headers=auth))
        assert rules == {"201 ok": 2, "409 RULE_SLOT_LIMIT": BURST - 2}, rules
        me = ok(http.get("/me", headers=auth))
        assert (me["active_jobs"], me["rule_slots_used"], me["credits"], me["credits_reserved"]) == (1, 2, 4, 1)
    check_invariants(live.stack.db)


def test_credits_hold_under_a_burst(live: LiveRest) -> None:
    with httpx.Client(base_url=live.base_url, timeout=60) as http:
        auth, user_id = sign_up(http)
        with live.stack.db.write() as s:  # pro: three jobs at once, so credits are the binding limit
            user = s.get(UserRow, user_id)
            assert user is not None
            user.plan = "pro"
        jobs = _burst(live, lambda h: h.post("/jobs", json={"preset": "interior", "item_count": 2}, headers=auth))
        assert jobs["201 ok"] == 2 and jobs["402 INSUFFICIENT_CREDITS"] + jobs["429 CONCURRENCY_LIMIT"] == BURST - 2, (
            jobs
        )
        assert jobs["402 INSUFFICIENT_CREDITS"] > 0, jobs
        me = ok(http.get("/me", headers=auth))
        assert (me["credits"], me["credits_reserved"]) == (1, 4)
    check_invariants(live.stack.db)


def test_a_job_is_confirmed_and_canceled_once_under_a_burst(live: LiveRest) -> None:
    with httpx.Client(base_url=live.base_url, timeout=60) as http:
        auth, _ = sign_up(http)
        created = ok(http.post("/jobs", json={"preset": "interior", "item_count": 2}, headers=auth), 201)
        upload_all(http, created, [jpeg_bytes(seed=0), jpeg_bytes(seed=1)])
        job_id = created["job_id"]
        confirms = _burst(live, lambda h: h.post(f"/jobs/{job_id}/confirm-upload", headers=auth))
        assert confirms == {"200 ok": 1, "409 INVALID_STATE": BURST - 1}, confirms
        cancels = _burst(live, lambda h: h.post(f"/jobs/{job_id}/cancel", headers=auth))
        assert cancels == {"200 ok": 1, "409 INVALID_STATE": BURST - 1}, cancels
        me = ok(http.get("/me", headers=auth))
        assert (me["credits"], me["credits_reserved"], me["active_jobs"]) == (5, 0, 0)  # refunded exactly once
    check_invariants(live.stack.db)
