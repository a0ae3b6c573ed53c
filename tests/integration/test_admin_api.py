"""The AdminService over a real socket on SQLite and PostgreSQL: every RPC, the admin token, the
audit trail, and the money of requeueing a dead-lettered item, with the ledger checked after each
step."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import select

from protos.s3.v1 import admin_pb2 as apb
from protos.s3.v1 import admin_pb2_grpc, jobs_pb2_grpc
from protos.s3.v1 import jobs_pb2 as jpb
from server.db.tables import AuditRow, BillingEventRow
from server.errors import Forbidden
from server.grpc_api.server import ADMIN_SERVICE_NAME, build_grpc_server
from server.grpc_api.status import ERROR_CODE_METADATA_KEY
from server.service.settle import ItemOutputs
from server.storage.local import LocalObjectStore
from server.work.queue import WorkQueue
from tests.support.grpc_calls import trailers
from tests.support.invariants import check_invariants
from tests.support.stack import Stack, jpeg_bytes, make_stack

pytestmark = pytest.mark.integration

ZERO_ID = "00000000-0000-0000-0000-000000000000"


@dataclass
class Admin:
    stack: Stack
    admin: admin_pb2_grpc.AdminServiceStub
    jobs: jobs_pb2_grpc.JobServiceStub
    queue: WorkQueue

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        token = self.stack.settings.auth.admin_token
        assert token is not None
        return (("x-admin-token", token), ("x-admin-actor", "ops@test"))


def _serve(stack: Stack) -> Iterator[Admin]:
    server = build_grpc_server(stack.services, bind="127.0.0.1:0", max_workers=8)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Admin(
            stack,
            admin_pb2_grpc.AdminServiceStub(channel),
            jobs_pb2_grpc.JobServiceStub(channel),
            WorkQueue(stack.db, stack.settings.queue),
        )
    finally:
        channel.close()
        server.stop(1.0)
        stack.db.dispose()


@pytest.fixture
def ops(database_url: str, tmp_path: Path) -> Iterator[Admin]:
    # One attempt per item: a failed attempt dead-letters at once, without waiting out backoffs.
    yield from _serve(make_stack(database_url, tmp_path / "data", max_attempts=1, starting_credits=2))


def _code(err: grpc.RpcError) -> str:
    return str(trailers(err).get(ERROR_CODE_METADATA_KEY))


def _fails(call: Callable[[], Any], code: str) -> str:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert _code(err.value) == code, err.value
    return str(err.value.details())


def _user_md(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _queued_job(ops: Admin, token: str, items: int) -> str:
    """A job of the user's, uploaded and executed: its items wait in the queue."""
    md = _user_md(token)
    created = ops.jobs.CreateJob(jpb.CreateJobRequest(preset="interior", item_count=items), metadata=md)
    for u in created.upload_urls:
        ops.stack.store.put(u.key, jpeg_bytes(seed=u.idx), content_type="image/jpeg")
    ops.jobs.ConfirmUpload(jpb.JobRef(job_id=created.job_id), metadata=md)
    execute = jpb.ExecuteJobRequest(job_id=created.job_id)
    execute.concepts["Wall"].action = "recolor"
    execute.concepts["Wall"].params.update({"value": "white"})
    assert ops.jobs.ExecuteJob(execute, metadata=md).status == "queued"
    return created.job_id


def _audit(ops: Admin, action: str) -> list[AuditRow]:
    with ops.stack.db.read() as s:
        return list(s.scalars(select(AuditRow).where(AuditRow.action == action).order_by(AuditRow.id)))


def _refs(ops: Admin, job_id: str, kind: str) -> list[str]:
    with ops.stack.db.read() as s:
        stmt = select(BillingEventRow.ref).where(BillingEventRow.job_id == job_id, BillingEventRow.type == kind)
        return sorted(s.scalars(stmt))


def test_every_rpc_of_the_admin_proto_is_implemented() -> None:
    from server.grpc_api.admin_servicer import AdminService

    methods = apb.DESCRIPTOR.services_by_name["AdminService"].methods_by_name
    base = admin_pb2_grpc.AdminServiceServicer
    assert [m for m in methods if getattr(AdminService, m) is getattr(base, m)] == []
    assert ADMIN_SERVICE_NAME == "s3.v1.AdminService"


def test_every_rpc_is_forbidden_without_the_admin_token(ops: Admin) -> None:
    user = ops.jobs.CreateAnonUser(jpb.CreateAnonUserRequest())
    calls: dict[str, Callable[[Any], Any]] = {
        "GetUser": lambda md: ops.admin.GetUser(apb.GetUserRequest(user_id=user.user_id), metadata=md),
        "GetJob": lambda md: ops.admin.GetJob(apb.AdminJobRef(job_id=ZERO_ID), metadata=md),
        "GrantCredits": lambda md: ops.admin.GrantCredits(
            apb.GrantCreditsRequest(user_id=user.user_id, amount=5, reason="x"), metadata=md
        ),
        "SetPlan": lambda md: ops.admin.SetPlan(apb.SetPlanRequest(user_id=user.user_id, plan="pro"), metadata=md),
        "ListDeadLetters": lambda md: ops.admin.ListDeadLetters(apb.ListDeadLettersRequest(), metadata=md),
        "RequeueItem": lambda md: ops.admin.RequeueItem(apb.RequeueItemRequest(job_id=ZERO_ID), metadata=md),
        "CancelJob": lambda md: ops.admin.CancelJob(apb.AdminCancelJobRequest(job_id=ZERO_ID), metadata=md),
        "ListWebhookDeliveries": lambda md: ops.admin.ListWebhookDeliveries(
            apb.AdminJobRef(job_id=ZERO_ID), metadata=md
        ),
    }
    assert set(calls) == set(apb.DESCRIPTOR.services_by_name["AdminService"].methods_by_name)
    token = ops.stack.settings.auth.admin_token
    assert token is not None
    wrong = [
        (),  # no token at all
        (("x-admin-token", token[:-1] + ("b" if token[-1] != "b" else "c")),),  # one character off
        (("x-admin-token", ""),),
        # A user's JWT is not an admin credential.
        (("authorization", f"Bearer {user.token}"), ("x-admin-token", user.token)),
    ]
    for name, call in calls.items():
        for md in wrong:
            with pytest.raises(grpc.RpcError) as err:
                call(md)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, (name, md)
            assert _code(err.value) == "FORBIDDEN", (name, md)
    me = ops.jobs.GetMe(jpb.GetMeRequest(), metadata=_user_md(user.token))
    assert (me.plan, me.credits) == ("free", 2)  # nothing changed
    assert _audit(ops, "grant_credits") == [] and _audit(ops, "set_plan") == []


def test_user_grant_and_plan(ops: Admin) -> None:
    user = ops.jobs.CreateAnonUser(jpb.CreateAnonUserRequest())
    shown = ops.admin.GetUser(apb.GetUserRequest(user_id=user.user_id), metadata=ops.md)
    assert (shown.state.plan, shown.state.credits, shown.credits_granted) == ("free", 2, 2)
    assert [(e.type, e.amount, e.ref) for e in shown.recent_events] == [("grant", 2, "signup")]

    request = apb.GrantCreditsRequest(
        user_id=user.user_id, amount=50, reason="support ticket 42", idempotency_key="t42"
    )
    granted = ops.admin.GrantCredits(request, metadata=ops.md)
    assert not granted.duplicate
    assert (granted.user.state.credits, granted.user.credits_granted) == (52, 52)
    newest = granted.user.recent_events[0]
    assert (newest.type, newest.amount, newest.ref) == ("admin_grant", 50, "admin:t42")
    again = ops.admin.GrantCredits(request, metadata=ops.md)  # a retried call grants nothing
    assert again.duplicate and again.user.state.credits == 52
    (audit,) = _audit(ops, "grant_credits")
    assert (audit.actor, audit.target) == ("ops@test", user.user_id)
    assert audit.detail == {"amount": 50, "reason": "support ticket 42", "ref": "admin:t42", "credits_available": 52}
    assert ops.jobs.GetMe(jpb.GetMeRequest(), metadata=_user_md(user.token)).credits == 52

    def grant(**fields: Any) -> None:
        ops.admin.GrantCredits(apb.GrantCreditsRequest(user_id=user.user_id, **fields), metadata=ops.md)

    _fails(lambda: grant(amount=0, reason="r"), "VALIDATION_ERROR")
    _fails(lambda: grant(amount=-5, reason="r"), "VALIDATION_ERROR")
    _fails(lambda: grant(amount=1_000_001, reason="r"), "VALIDATION_ERROR")
    assert "reason" in _fails(lambda: grant(amount=5, reason="  "), "VALIDATION_ERROR")
    _fails(
        lambda: ops.admin.GrantCredits(apb.GrantCreditsRequest(user_id=ZERO_ID, amount=5, reason="r"), metadata=ops.md),
        "NOT_FOUND",
    )
    _fails(lambda: ops.admin.GetUser(apb.GetUserRequest(user_id="nobody"), metadata=ops.md), "NOT_FOUND")

    pro = ops.admin.SetPlan(apb.SetPlanRequest(user_id=user.user_id, plan="pro", reason="paid"), metadata=ops.md)
    assert (pro.state.plan, pro.state.max_concurrency, pro.state.rule_slots_max, pro.state.max_batch) == (
        "pro",
        3,
        20,
        100,
    )
    assert ops.jobs.GetMe(jpb.GetMeRequest(), metadata=_user_md(user.token)).max_concurrency == 3
    (plan_audit,) = _audit(ops, "set_plan")
    assert plan_audit.detail == {"from": "free", "to": "pro", "reason": "paid"}
    _fails(
        lambda: ops.admin.SetPlan(apb.SetPlanRequest(user_id=user.user_id, plan="gold"), metadata=ops.md),
        "VALIDATION_ERROR",
    )
    _fails(
        lambda: ops.admin.GrantCredits(
            apb.GrantCreditsRequest(user_id=user.user_id, amount=1, reason="r"),
            metadata=(*ops.md[:1], ("x-admin-actor", "x" * 65)),
        ),
        "VALIDATION_ERROR",
    )
    check_invariants(ops.stack.db)


def test_requeue_money_path(ops: Admin) -> None:
    """Two items, 2 credits: the user's whole balance is reserved. Item 0 dead-letters (refunded),
    is requeued (reserved again), dead-letters again, cannot be requeued while another job holds
    the credit, is requeued once that job is canceled, and finally succeeds."""
    user = ops.jobs.CreateAnonUser(jpb.CreateAnonUserRequest())
    job_id = _queued_job(ops, user.token, items=2)
    md = ops.md

    def credits() -> tuple[int, int, int]:
        state = ops.admin.GetUser(apb.GetUserRequest(user_id=user.user_id), metadata=md).state
        return state.credits, state.credits_reserved, state.credits_spent

    def requeue(idx: int = 0) -> apb.AdminJob:
        return ops.admin.RequeueItem(apb.RequeueItemRequest(job_id=job_id, idx=idx, reason="model fixed"), metadata=md)

    claim = ops.queue.claim("worker-a")
    assert claim is not None and (claim.job_id, claim.idx) == (job_id, 0)
    leased = ops.admin.GetJob(apb.AdminJobRef(job_id=job_id), metadata=md)  # any user's job, lease visible
    assert (leased.user_id, leased.queue[0].lease_owner, leased.job.items[0].status) == (
        user.user_id,
        "worker-a",
        "running",
    )
    assert leased.queue[0].lease_expires_at and leased.queue[1].lease_owner == ""
    _fails(lambda: requeue(), "INVALID_STATE")  # running, not failed
    ops.queue.fail(claim, "Triton: model not loaded", retryable=True)
    assert credits() == (1, 1, 0)
    check_invariants(ops.stack.db)

    dead = ops.admin.ListDeadLetters(apb.ListDeadLettersRequest(), metadata=md)
    assert [(d.job_id, d.idx, d.attempts, d.error, d.job_status, d.requeueable) for d in dead.items] == [
        (job_id, 0, 1, "Triton: model not loaded", "running", True)
    ]
    shown = ops.admin.GetJob(apb.AdminJobRef(job_id=job_id), metadata=md)
    assert shown.queue[0].dead_lettered and shown.job.failed_items == 1 and shown.max_attempts == 1

    requeued = requeue()
    assert (requeued.job.failed_items, requeued.job.items[0].status, requeued.job.items[0].attempts) == (0, "queued", 0)
    assert (requeued.queue[0].stage, requeued.queue[0].requeues, requeued.job.credits_reserved) == ("execute", 1, 2)
    assert credits() == (0, 2, 0)
    assert _refs(ops, job_id, "reserve") == ["item:0/r1", "job"]
    assert ops.admin.ListDeadLetters(apb.ListDeadLettersRequest(), metadata=md).items == []
    (audit,) = _audit(ops, "requeue_item")
    assert (audit.actor, audit.target) == ("ops@test", f"{job_id}/0")
    assert audit.detail["previous"] == {"error": "Triton: model not loaded", "attempts": 1}
    check_invariants(ops.stack.db)
    _fails(lambda: requeue(), "INVALID_STATE")  # queued now
    _fails(lambda: requeue(idx=7), "NOT_FOUND")

    # Item 1 succeeds; item 0 fails again: every item finished, so the set waits to be packaged.
    first = ops.queue.claim("worker-a")
    assert first is not None and first.idx == 1
    assert ops.queue.complete_item(first, ItemOutputs(output_key="outputs/x/1_result.png"))
    second = ops.queue.claim("worker-b")
    assert second is not None and second.idx == 0
    ops.queue.fail(second, "Triton: model not loaded", retryable=True)
    assert credits() == (1, 0, 1)
    assert ops.admin.GetJob(apb.AdminJobRef(job_id=job_id), metadata=md).package_state == "pending"
    check_invariants(ops.stack.db)

    # The user's last credit goes to another job: the requeue is refused and changes nothing.
    ops.admin.SetPlan(apb.SetPlanRequest(user_id=user.user_id, plan="pro"), metadata=md)
    other = ops.jobs.CreateJob(jpb.CreateJobRequest(preset="seller", item_count=1), metadata=_user_md(user.token))
    assert credits() == (0, 1, 1)
    _fails(lambda: requeue(), "INSUFFICIENT_CREDITS")
    assert ops.admin.GetJob(apb.AdminJobRef(job_id=job_id), metadata=md).job.items[0].status == "failed"
    check_invariants(ops.stack.db)

    # An operator cancels that job (any user's); the refund pays for the second requeue.
    canceled = ops.admin.CancelJob(apb.AdminCancelJobRequest(job_id=other.job_id, reason="stuck"), metadata=md)
    assert canceled.job.status == "canceled" and canceled.job.items[0].error == "canceled by an operator: stuck"
    assert credits() == (1, 0, 1)
    again = requeue()
    assert (again.queue[0].requeues, again.package_state, again.job.status) == (2, "none", "running")
    assert _refs(ops, job_id, "reserve") == ["item:0/r1", "item:0/r2", "job"]
    assert _refs(ops, job_id, "refund") == ["item:0", "item:0/r1"]
    check_invariants(ops.stack.db)

    third = ops.queue.claim("worker-a")
    assert third is not None and (third.stage, third.idx) == ("execute", 0)
    assert ops.queue.complete_item(third, ItemOutputs(output_key="outputs/x/0_result.png"))
    package = ops.queue.claim("worker-a")
    assert package is not None and package.stage == "package"
    assert ops.queue.complete_package(package, "sets/x/set.zip")
    assert credits() == (0, 0, 2)
    assert _refs(ops, job_id, "spend") == ["item:0/r2", "item:1"]
    check_invariants(ops.stack.db)

    # A finished job is never resurrected, nor canceled.
    assert ops.jobs.GetJob(jpb.JobRef(job_id=job_id), metadata=_user_md(user.token)).status == "done"
    _fails(lambda: requeue(), "INVALID_STATE")
    _fails(lambda: ops.admin.CancelJob(apb.AdminCancelJobRequest(job_id=job_id), metadata=md), "INVALID_STATE")
    assert len(_audit(ops, "requeue_item")) == 2 and len(_audit(ops, "cancel_job")) == 1


def test_requeue_refuses_terminal_jobs_and_upload_rejects(ops: Admin) -> None:
    user = ops.jobs.CreateAnonUser(jpb.CreateAnonUserRequest())
    job_id = _queued_job(ops, user.token, items=1)
    claim = ops.queue.claim("w")
    assert claim is not None
    ops.queue.fail(claim, "boom", retryable=True)  # the only item failed: the job failed
    assert ops.admin.GetJob(apb.AdminJobRef(job_id=job_id), metadata=ops.md).job.status == "failed"
    dead = ops.admin.ListDeadLetters(apb.ListDeadLettersRequest(job_id=job_id), metadata=ops.md).items
    assert [(d.idx, d.job_status, d.requeueable) for d in dead] == [(0, "failed", False)]
    message = _fails(
        lambda: ops.admin.RequeueItem(apb.RequeueItemRequest(job_id=job_id, idx=0), metadata=ops.md), "INVALID_STATE"
    )
    assert "failed" in message and "resurrected" in message
    _fails(lambda: ops.admin.GetJob(apb.AdminJobRef(job_id="not-a-uuid"), metadata=ops.md), "NOT_FOUND")
    _fails(lambda: ops.admin.GetJob(apb.AdminJobRef(job_id=ZERO_ID), metadata=ops.md), "NOT_FOUND")
    _fails(
        lambda: ops.admin.ListDeadLetters(apb.ListDeadLettersRequest(job_id="x"), metadata=ops.md), "VALIDATION_ERROR"
    )
    _fails(
        lambda: ops.admin.ListDeadLetters(apb.ListDeadLettersRequest(page_token="%%"), metadata=ops.md),
        "VALIDATION_ERROR",
    )
    assert _audit(ops, "requeue_item") == []
    check_invariants(ops.stack.db)


def test_dead_letters_are_paginated_newest_first(ops: Admin) -> None:
    jobs: list[str] = []
    for _ in range(3):
        user = ops.jobs.CreateAnonUser(jpb.CreateAnonUserRequest())
        jobs.append(_queued_job(ops, user.token, items=1))
        claim = ops.queue.claim("w")
        assert claim is not None
        ops.queue.fail(claim, "boom", retryable=True)
    seen: list[str] = []
    token = ""
    for _ in range(3):
        page = ops.admin.ListDeadLetters(apb.ListDeadLettersRequest(page_size=2, page_token=token), metadata=ops.md)
        seen += [d.job_id for d in page.items]
        token = page.next_page_token
        if not token:
            break
    assert seen == jobs[::-1]
    _fails(
        lambda: ops.admin.ListDeadLetters(apb.ListDeadLettersRequest(page_size=201), metadata=ops.md),
        "VALIDATION_ERROR",
    )


def test_cancel_any_users_job(ops: Admin) -> None:
    user = ops.jobs.CreateAnonUser(jpb.CreateAnonUserRequest())
    created = ops.jobs.CreateJob(jpb.CreateJobRequest(preset="interior", item_count=2), metadata=_user_md(user.token))
    view = ops.admin.CancelJob(apb.AdminCancelJobRequest(job_id=created.job_id), metadata=ops.md)
    assert view.job.status == "canceled" and view.finished_at
    assert [i.status for i in view.job.items] == ["canceled", "canceled"]
    assert view.job.credits_reserved == 0
    assert ops.jobs.GetMe(jpb.GetMeRequest(), metadata=_user_md(user.token)).credits == 2
    (audit,) = _audit(ops, "cancel_job")
    assert audit.detail == {"from": "created", "items_canceled": 2, "credits_refunded": 2, "reason": ""}
    # The job's upload URLs died with it, as with a user's cancel.
    store = ops.stack.store
    assert isinstance(store, LocalObjectStore)
    for target in created.upload_urls:
        with pytest.raises(Forbidden), store.open_writer(target.key, content_type="image/jpeg", client_upload=True):
            pass
    _fails(
        lambda: ops.admin.CancelJob(apb.AdminCancelJobRequest(job_id=created.job_id), metadata=ops.md),
        "INVALID_STATE",
    )
    check_invariants(ops.stack.db)
