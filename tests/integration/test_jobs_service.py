"""The job lifecycle on each database: limits, uploads, execute, cancel, callbacks, sweeper."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from server.clock import utcnow
from server.db.tables import JobRow
from server.errors import (
    BatchLimit,
    ConcurrencyLimit,
    Forbidden,
    InsufficientCredits,
    InvalidState,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
)
from server.service.callbacks import ItemReport
from server.service.concept_action import actions_from_stored
from server.service.instance_choices import InstanceChoice
from server.service.sweeper import expire_abandoned_uploads
from server.storage import keys
from server.work.queue import WorkQueue
from tests.support.invariants import check_invariants
from tests.support.stack import Stack, jpeg_bytes, make_stack

WALL = {"Wall": {"action": "recolor", "value": "white"}}


def _user(stack: Stack) -> str:
    return stack.services.accounts.create_anonymous().user.user_id


def _uploaded_job(stack: Stack, user: str, n: int = 2) -> str:
    created = stack.services.jobs.create(user, preset_id="interior", item_count=n)
    for target in created.uploads:
        stack.store.put(target.key, jpeg_bytes(seed=target.idx), content_type="image/jpeg")
    stack.services.jobs.confirm_upload(user, created.job.job_id)
    return created.job.job_id


def _secret(stack: Stack) -> str:
    assert stack.settings.auth.callback_secret
    return stack.settings.auth.callback_secret


def test_create_reserves_credits_and_signs_uploads(stack: Stack) -> None:
    user = _user(stack)
    created = stack.services.jobs.create(user, preset_id="interior", item_count=3)
    assert created.job.status == "created" and created.job.credits_reserved == 3
    assert [u.key for u in created.uploads] == [keys.input_key(user, created.job.job_id, i) for i in range(3)]
    assert all(u.request.method == "PUT" and u.request.url for u in created.uploads)
    me = stack.services.accounts.me(user)
    assert (me.credits_available, me.credits_reserved, me.active_jobs) == (97, 3, 1)
    check_invariants(stack.db)


def test_plan_limits(stack: Stack) -> None:
    user = _user(stack)
    with pytest.raises(BatchLimit):
        stack.services.jobs.create(user, preset_id="interior", item_count=11)
    with pytest.raises(ValidationFailed):
        stack.services.jobs.create(user, preset_id="interior", item_count=0)
    with pytest.raises(ValidationFailed):
        stack.services.jobs.create(user, preset_id="garden", item_count=1)
    stack.services.jobs.create(user, preset_id="interior", item_count=10)
    with pytest.raises(ConcurrencyLimit):
        stack.services.jobs.create(user, preset_id="seller", item_count=1)
    assert stack.services.accounts.me(user).credits_reserved == 10
    check_invariants(stack.db)


def test_insufficient_credits(database_url: str, tmp_path: Path) -> None:
    stack = make_stack(database_url, tmp_path / "data", starting_credits=4)
    try:
        user = _user(stack)
        with pytest.raises(InsufficientCredits):
            stack.services.jobs.create(user, preset_id="interior", item_count=5)
        assert stack.services.accounts.me(user).credits_available == 4
        assert stack.services.accounts.me(user).active_jobs == 0
        check_invariants(stack.db)
    finally:
        stack.db.dispose()


def test_confirm_upload_checks_every_object(stack: Stack) -> None:
    user = _user(stack)
    created = stack.services.jobs.create(user, preset_id="interior", item_count=3)
    job_id = created.job.job_id
    stack.store.put(created.uploads[0].key, jpeg_bytes(), content_type="image/jpeg")
    with pytest.raises(ValidationFailed, match="not uploaded yet: 1, 2"):
        stack.services.jobs.confirm_upload(user, job_id)
    stack.store.put(created.uploads[1].key, b"this is not an image", content_type="image/jpeg")
    stack.store.put(created.uploads[2].key, jpeg_bytes()[:200], content_type="image/jpeg")
    job = stack.services.jobs.confirm_upload(user, job_id)
    assert job.status == "uploaded"
    assert [i.status for i in job.items or ()] == ["uploaded", "failed", "failed"]
    assert all(i.error and i.error.startswith("VALIDATION_ERROR") for i in (job.items or ())[1:])
    assert stack.services.accounts.me(user).credits_available == 99
    with pytest.raises(InvalidState):
        stack.services.jobs.confirm_upload(user, job_id)
    check_invariants(stack.db)


def test_confirm_upload_with_no_usable_photo_changes_nothing(stack: Stack) -> None:
    user = _user(stack)
    created = stack.services.jobs.create(user, preset_id="interior", item_count=1)
    stack.store.put(created.uploads[0].key, b"\x00" * 100, content_type="image/jpeg")
    with pytest.raises(ValidationFailed, match="no usable photo"):
        stack.services.jobs.confirm_upload(user, created.job.job_id)
    assert stack.services.jobs.get(user, created.job.job_id).status == "created"
    stack.store.put(created.uploads[0].key, jpeg_bytes(), content_type="image/jpeg")
    assert stack.services.jobs.confirm_upload(user, created.job.job_id).status == "uploaded"
    check_invariants(stack.db)


def test_oversized_upload_is_payload_too_large(database_url: str, tmp_path: Path) -> None:
    stack = make_stack(database_url, tmp_path / "data", max_upload_bytes=1000)
    try:
        user = _user(stack)
        created = stack.services.jobs.create(user, preset_id="interior", item_count=1)
        stack.store.put(created.uploads[0].key, jpeg_bytes(200, 200), content_type="image/jpeg")
        with pytest.raises(PayloadTooLarge):
            stack.services.jobs.confirm_upload(user, created.job.job_id)
    finally:
        stack.db.dispose()


def test_execute_validates_and_queues(stack: Stack) -> None:
    user = _user(stack)
    other = _user(stack)
    job_id = _uploaded_job(stack, user)
    seller_rule = stack.services.rules.create(
        user,
        name="bg",
        preset_id="seller",
        concepts=actions_from_stored({"Background": {"action": "remove"}}),
        protect=[],
    )
    foreign_rule = stack.services.rules.create(
        other, name="x", preset_id="interior", concepts=actions_from_stored(WALL), protect=[]
    )

    def execute(**kw: object) -> object:
        args: dict[str, object] = {
            "concepts": actions_from_stored(WALL),
            "protect": None,
            "rule_id": None,
            "instances": None,
            "output_set": None,
        }
        args.update(kw)
        return stack.services.jobs.execute(user, job_id, **args)  # type: ignore[arg-type]

    cases: list[tuple[dict[str, object], type[Exception]]] = [
        ({"concepts": {}}, ValidationFailed),
        ({"concepts": actions_from_stored({"Sky": {"action": "keep"}})}, ValidationFailed),
        ({"rule_id": seller_rule.rule_id}, ValidationFailed),
        ({"rule_id": foreign_rule.rule_id}, NotFound),
        ({"output_set": "billboard"}, ValidationFailed),
        ({"instances": {7: {"Wall": InstanceChoice(exclude=(1,))}}}, ValidationFailed),
        ({"instances": {0: {"Wall": InstanceChoice(exclude=(1,), lock=(1,))}}}, ValidationFailed),
        ({"instances": {0: {"Wall": InstanceChoice(exclude=(0,))}}}, ValidationFailed),
    ]
    for kw, error in cases:
        with pytest.raises(error):
            execute(**kw)
    assert stack.services.jobs.get(user, job_id).status == "uploaded"
    job = execute(instances={1: {"Wall": InstanceChoice(exclude=(2,), lock=(1,))}})
    assert job.status == "queued"  # type: ignore[attr-defined]
    with pytest.raises(InvalidState):
        execute()
    with pytest.raises(NotFound):
        stack.services.jobs.get(other, job_id)
    check_invariants(stack.db)


def test_cancel_refunds_open_items(stack: Stack) -> None:
    user = _user(stack)
    job_id = _uploaded_job(stack, user, n=3)
    stack.services.jobs.execute(user, job_id, concepts=actions_from_stored(WALL))
    canceled = stack.services.jobs.cancel(user, job_id)
    assert canceled.status == "canceled" and canceled.credits_reserved == 0
    me = stack.services.accounts.me(user)
    assert (me.credits_available, me.credits_reserved, me.credits_spent, me.active_jobs) == (100, 0, 0, 0)
    with pytest.raises(InvalidState):
        stack.services.jobs.cancel(user, job_id)
    check_invariants(stack.db)


def test_callbacks_are_authenticated_checked_and_idempotent(stack: Stack) -> None:
    user = _user(stack)
    job_id = _uploaded_job(stack, user, n=2)
    stack.services.jobs.execute(user, job_id, concepts=actions_from_stored(WALL))
    callbacks = stack.services.callbacks
    ok = ItemReport("k-0", 0, "done", output_key=keys.output_key(user, job_id, 0))
    with pytest.raises(Forbidden):
        callbacks.report("wrong", job_id, ok)
    with pytest.raises(Forbidden):
        callbacks.report(None, job_id, ok)
    with pytest.raises(NotFound):
        callbacks.report(_secret(stack), job_id, dataclasses.replace(ok, idempotency_key="k-x", idx=9))
    with pytest.raises(ValidationFailed):
        callbacks.report(
            _secret(stack), job_id, dataclasses.replace(ok, output_key=f"outputs/{user}/someone-else/0_result.png")
        )
    first = callbacks.report(_secret(stack), job_id, ok)
    assert (first.item_status, first.job_status, first.duplicate) == ("done", "running", False)
    replay = callbacks.report(_secret(stack), job_id, ok)
    assert replay.duplicate and replay.item_status == "done"
    with pytest.raises(InvalidState):
        callbacks.report(_secret(stack), job_id, dataclasses.replace(ok, idempotency_key="k-0b"))
    last = callbacks.report(_secret(stack), job_id, ItemReport("k-1", 1, "failed", error="gpu fell over"))
    assert last.job_status == "running"  # the output set is still to be packaged
    me = stack.services.accounts.me(user)
    assert (me.credits_available, me.credits_reserved, me.credits_spent) == (99, 0, 1)
    check_invariants(stack.db)
    queue = WorkQueue(stack.db, stack.settings.queue)
    claim = queue.claim("packager")
    assert claim is not None and claim.stage == "package"
    assert queue.complete_package(claim, keys.set_key(user, job_id))
    assert stack.services.jobs.get(user, job_id).status == "done"
    with pytest.raises(InvalidState):
        callbacks.report(_secret(stack), job_id, dataclasses.replace(ok, idempotency_key="late", idx=1))
    check_invariants(stack.db)


def test_all_items_failed_fails_the_job(stack: Stack) -> None:
    user = _user(stack)
    job_id = _uploaded_job(stack, user, n=1)
    stack.services.jobs.execute(user, job_id, concepts=actions_from_stored(WALL))
    result = stack.services.callbacks.report(_secret(stack), job_id, ItemReport("k", 0, "failed", error="boom"))
    assert result.job_status == "failed"
    me = stack.services.accounts.me(user)
    assert (me.credits_available, me.active_jobs) == (100, 0)
    check_invariants(stack.db)


def test_sweeper_cancels_abandoned_uploads(stack: Stack) -> None:
    user = _user(stack)
    created = stack.services.jobs.create(user, preset_id="interior", item_count=4)
    assert expire_abandoned_uploads(stack.db) == 0
    with stack.db.write() as s:
        row = s.get(JobRow, created.job.job_id)
        assert row is not None
        row.upload_deadline_at = utcnow() - timedelta(seconds=1)
    assert expire_abandoned_uploads(stack.db) == 1
    assert stack.services.jobs.get(user, created.job.job_id).status == "canceled"
    assert stack.services.accounts.me(user).credits_available == 100
    check_invariants(stack.db)
