"""``Idempotency-Key`` over HTTP and gRPC against the real stack, on each database: a retried POST
answers the first answer and does nothing again, even when the retries arrive at the same time."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from sqlalchemy import func, select, update

from protos.s3.v1 import jobs_pb2 as jpb
from protos.s3.v1 import jobs_pb2_grpc
from scripts.try_session_attacks import post_at_once
from server.db.tables import BillingEventRow, IdempotencyKeyRow, JobRow, RuleRow
from server.errors import InvalidState
from server.service.idempotency import Claim, Idempotency, Replay
from server.service.sweeper import delete_expired_records
from tests.support.grpc_calls import trailers
from tests.support.invariants import check_invariants
from tests.support.live_rest import LiveRest, check_envelope, err, live_rest, ok, sign_up, upload_all
from tests.support.stack import Stack, jpeg_bytes

pytestmark = pytest.mark.integration

JOB: dict[str, Any] = {"preset": "interior", "item_count": 3}
RULE = {"name": "walls", "preset_id": "interior", "concepts": {"Wall": {"action": "recolor", "value": "white"}}}
EXECUTE = {"concepts": {"Wall": {"action": "recolor", "value": "white"}}}
REPLAYED = "Idempotent-Replayed"


@pytest.fixture
def live(database_url: str, tmp_path: Path) -> Iterator[LiveRest]:
    with live_rest(database_url, tmp_path / "data") as served:
        yield served


def _key(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


def _count(live: LiveRest, table: Any, *where: Any) -> int:
    with live.stack.db.read() as s:
        return s.scalar(select(func.count()).select_from(table).where(*where)) or 0


def _reservations(live: LiveRest, user_id: str) -> int:
    return _count(live, BillingEventRow, BillingEventRow.user_id == user_id, BillingEventRow.type == "reserve")


def _uploaded_job(http: httpx.Client, auth: dict[str, str]) -> str:
    created = ok(http.post("/jobs", json={"preset": "interior", "item_count": 1}, headers=auth), 201)
    upload_all(http, created, [jpeg_bytes()])
    ok(http.post(f"/jobs/{created['job_id']}/confirm-upload", headers=auth))
    return str(created["job_id"])


def test_a_retried_create_job_creates_one_job_and_reserves_once(live: LiveRest) -> None:
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        auth, user_id = sign_up(http)
        key = str(uuid.uuid4())
        first = http.post("/jobs", json=JOB, headers=_key(auth, key))
        again = http.post("/jobs", json=JOB, headers=_key(auth, key))
        assert (first.status_code, again.status_code) == (201, 201), again.text
        assert REPLAYED not in first.headers and again.headers[REPLAYED] == "true"
        # The same answer, presigned URLs included; only meta (request id, time) is the retry's own.
        assert check_envelope(again)["data"] == check_envelope(first)["data"]
        assert ok(http.get("/me", headers=auth))["credits"] == 100 - JOB["item_count"]
        assert len(ok(http.get("/jobs", headers=auth))["jobs"]) == 1
        # Without a key the free plan's one active job is what a second POST meets.
        err(http.post("/jobs", json=JOB, headers=auth), 429, "CONCURRENCY_LIMIT")
    assert _reservations(live, user_id) == 1
    check_invariants(live.stack.db)


def test_concurrent_retries_create_one_job(live: LiveRest) -> None:
    """Eight copies of one POST at once (a flaky network retrying): one job, one reservation; every
    answer is the job or a clear "still in progress" conflict, never a second job."""
    copies = 8
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        auth, user_id = sign_up(http)
    headers = _key(auth, "retry-storm")
    answers = post_at_once(live.base_url, "/jobs", JOB, headers, copies)
    assert len(answers) == copies
    created = [check_envelope(a)["data"]["job_id"] for a in answers if a.status_code == 201]
    conflicts = [a for a in answers if a.status_code != 201]
    assert created and len(set(created)) == 1, [a.text for a in answers]
    for a in conflicts:
        assert check_envelope(a)["error"]["code"] == "INVALID_STATE", a.text
    assert _count(live, JobRow, JobRow.user_id == user_id) == 1
    assert _reservations(live, user_id) == 1
    # After the storm, a retry gets the job.
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        late = http.post("/jobs", json=JOB, headers=headers)
        assert ok(late, 201)["job_id"] == created[0] and late.headers[REPLAYED] == "true"
    check_invariants(live.stack.db)


def test_the_same_key_with_another_body_is_a_mismatch(live: LiveRest) -> None:
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        auth, user_id = sign_up(http)
        ok(http.post("/jobs", json=JOB, headers=_key(auth, "k1")), 201)
        err(http.post("/jobs", json={**JOB, "item_count": 4}, headers=_key(auth, "k1")), 422, "IDEMPOTENCY_MISMATCH")
        # The same key on another endpoint is another request too.
        err(http.post("/rules", json=RULE, headers=_key(auth, "k1")), 422, "IDEMPOTENCY_MISMATCH")
        # Key order and spacing of the JSON are not "another body".
        same = http.post(
            "/jobs",
            content=b'{ "item_count": 3,  "preset": "interior" }',
            headers={**_key(auth, "k1"), "Content-Type": "application/json"},
        )
        assert ok(same, 201) and same.headers[REPLAYED] == "true"
        # Keys are per user: another user's identical key is a request of its own.
        other_auth, other_id = sign_up(http)
        other = http.post("/jobs", json=JOB, headers=_key(other_auth, "k1"))
        assert ok(other, 201) and REPLAYED not in other.headers
        err(http.post("/jobs", json=JOB, headers=_key(auth, "x" * 256)), 400, "VALIDATION_ERROR")
    assert _reservations(live, user_id) == 1 and _reservations(live, other_id) == 1


def test_an_error_is_not_kept(live: LiveRest) -> None:
    """A refused request changed nothing, so its key is free: the corrected retry runs."""
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        auth, _ = sign_up(http)
        err(http.post("/jobs", json={**JOB, "item_count": 11}, headers=_key(auth, "k")), 400, "BATCH_LIMIT")
        err(http.post("/jobs", json={**JOB, "item_count": 11}, headers=_key(auth, "k")), 400, "BATCH_LIMIT")
        fixed = http.post("/jobs", json=JOB, headers=_key(auth, "k"))
        assert ok(fixed, 201) and REPLAYED not in fixed.headers
    assert _count(live, IdempotencyKeyRow) == 1


def test_execute_cancel_and_analyze_replay(live: LiveRest) -> None:
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        auth, user_id = sign_up(http)
        analyzed = _uploaded_job(http, auth)
        path = f"/jobs/{analyzed}/analyze"
        first = ok(http.post(path, json={"concepts": ["Wall"]}, headers=_key(auth, "a")))
        again = http.post(path, json={"concepts": ["Wall"]}, headers=_key(auth, "a"))
        assert ok(again) == first and again.headers[REPLAYED] == "true"
        # Without the key the retry would be refused: the analysis it started is still running.
        err(http.post(path, json={"concepts": ["Wall"]}, headers=auth), 400, "VALIDATION_ERROR")
        ok(http.post(f"/jobs/{analyzed}/cancel", headers=auth))

        job_id = _uploaded_job(http, auth)
        executed = ok(http.post(f"/jobs/{job_id}/execute", json=EXECUTE, headers=_key(auth, "e")))
        assert executed["status"] == "queued"
        again = http.post(f"/jobs/{job_id}/execute", json=EXECUTE, headers=_key(auth, "e"))
        assert ok(again) == executed and again.headers[REPLAYED] == "true"
        err(http.post(f"/jobs/{job_id}/execute", json=EXECUTE, headers=auth), 409, "INVALID_STATE")

        canceled = ok(http.post(f"/jobs/{job_id}/cancel", headers=_key(auth, "c")))
        again = http.post(f"/jobs/{job_id}/cancel", headers=_key(auth, "c"))
        assert ok(again) == canceled and again.headers[REPLAYED] == "true"
        assert canceled["status"] == "canceled"
        err(http.post(f"/jobs/{job_id}/cancel", headers=auth), 409, "INVALID_STATE")
        # The same cancel key for another job is another request.
        err(http.post(f"/jobs/{analyzed}/cancel", headers=_key(auth, "c")), 422, "IDEMPOTENCY_MISMATCH")
    assert _reservations(live, user_id) == 3  # two jobs and one analysis, each reserved once
    check_invariants(live.stack.db)


def test_create_rule_replays_and_uses_one_slot(live: LiveRest) -> None:
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        auth, user_id = sign_up(http)
        first = ok(http.post("/rules", json=RULE, headers=_key(auth, "r")), 201)
        for _ in range(3):
            again = http.post("/rules", json=RULE, headers=_key(auth, "r"))
            assert ok(again, 201) == first and again.headers[REPLAYED] == "true"
        listed = ok(http.get("/rules", headers=auth))
        assert (listed["rule_slots_used"], [r["rule_id"] for r in listed["rules"]]) == (1, [first["rule_id"]])
    assert _count(live, RuleRow, RuleRow.user_id == user_id) == 1


def test_grpc_clients_use_metadata(live: LiveRest) -> None:
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        auth, user_id = sign_up(http)
    with grpc.insecure_channel(live.grpc_target) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        metadata = (("authorization", auth["Authorization"]), ("idempotency-key", "g1"))
        request = jpb.CreateJobRequest(preset="interior", item_count=2)
        first, call = stub.CreateJob.with_call(request, metadata=metadata)
        again, call2 = stub.CreateJob.with_call(request, metadata=metadata)
        assert first == again
        assert ("idempotent-replayed", "true") not in tuple(call.initial_metadata())
        assert ("idempotent-replayed", "true") in tuple(call2.initial_metadata())
        with pytest.raises(grpc.RpcError) as caught:
            stub.CreateJob(jpb.CreateJobRequest(preset="interior", item_count=1), metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert trailers(caught.value)["s3-error-code"] == "IDEMPOTENCY_MISMATCH"
    assert _reservations(live, user_id) == 1


def test_keys_are_kept_a_day_then_swept(live: LiveRest) -> None:
    settings = live.stack.settings
    assert settings.idempotency.ttl_s >= 24 * 3600
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        auth, _ = sign_up(http)
        job_id = ok(http.post("/jobs", json=JOB, headers=_key(auth, "old")), 201)["job_id"]
        with live.stack.db.read() as s:
            row = s.scalars(select(IdempotencyKeyRow)).one()
        assert row.expires_at - datetime.now(UTC) > timedelta(hours=23, minutes=59)
        assert delete_expired_records(live.stack.db) == 0
        with live.stack.db.write() as s:
            s.execute(update(IdempotencyKeyRow).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        assert delete_expired_records(live.stack.db) == 1
        assert _count(live, IdempotencyKeyRow) == 0
        # Past its time the key is new again: it cancels the job instead of replaying the create.
        ok(http.post(f"/jobs/{job_id}/cancel", headers=_key(auth, "old")))


# -- the key's life in the service: in flight, crashed attempts, stale attempts ----------------------


def _claim(stack: Stack, idem: Idempotency, user_id: str, request: bytes = b"r") -> Claim:
    started = idem.begin(user_id, "k", operation="CreateJob", request=request)
    assert isinstance(started, Claim)
    return started


def test_a_key_in_flight_is_a_conflict_until_its_lease_ends(stack: Stack) -> None:
    user_id = stack.services.accounts.create_anonymous().user.user_id
    idem = Idempotency(stack.db, ttl_s=3600, lease_s=30)
    _claim(stack, idem, user_id)
    with pytest.raises(InvalidState, match="in progress"):
        idem.begin(user_id, "k", operation="CreateJob", request=b"r")
    # The attempt crashed (no release, no answer); its lease ends; a retry takes the key over.
    with stack.db.write() as s:
        s.execute(update(IdempotencyKeyRow).values(locked_until=datetime.now(UTC) - timedelta(seconds=1)))
    retry = _claim(stack, idem, user_id)
    with stack.db.write() as s:
        retry.complete(s, b"answer")
    assert idem.begin(user_id, "k", operation="CreateJob", request=b"r") == Replay(b"answer")


def test_a_stale_attempt_cannot_record_after_a_takeover(stack: Stack) -> None:
    """The slow first attempt finishes after its lease was taken over: its effect is rolled back
    with its answer, so the key's effect happens once, by the attempt that owns it."""
    user_id = stack.services.accounts.create_anonymous().user.user_id
    idem = Idempotency(stack.db, ttl_s=3600, lease_s=30)
    slow = _claim(stack, idem, user_id)
    with stack.db.write() as s:
        s.execute(update(IdempotencyKeyRow).values(locked_until=datetime.now(UTC) - timedelta(seconds=1)))
    _claim(stack, idem, user_id)
    with pytest.raises(InvalidState, match="took over"):
        stack.services.jobs.create(user_id, preset_id="interior", item_count=1, record=slow.recorder(lambda _: b"x"))
    with stack.db.read() as s:
        assert s.scalar(select(func.count()).select_from(JobRow)) == 0
    check_invariants(stack.db)
