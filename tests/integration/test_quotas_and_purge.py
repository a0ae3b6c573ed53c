"""Storage quotas and the sweeper's purge, on SQLite and PostgreSQL.

The attack: create a job, upload ten photos, cancel it (full refund), repeat: without a quota that is
free disk at the upload bandwidth. With one the loop is refused (``QUOTA_EXCEEDED``) before anything
is reserved, and once the sweeper has purged the canceled jobs (every object deleted) it may go on.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from server.clock import utcnow
from server.config.sections import PhotoLimits
from server.db.tables import JobRow
from server.errors import QuotaExceeded
from server.plans import limits_for
from server.service.concept_action import actions_from_stored
from server.service.settle import ItemOutputs
from server.service.sweeper import expire_abandoned_uploads, purge_expired_jobs
from server.storage import keys
from server.work.queue import WorkQueue
from tests.support.invariants import check_invariants
from tests.support.stack import Stack, jpeg_bytes, make_stack

pytestmark = pytest.mark.integration

WALL = {"Wall": {"action": "recolor", "value": "white"}}
UPLOAD_LIMIT = PhotoLimits.max_upload_bytes
"""The default per-photo upload limit: what each upload URL of a created job counts for."""


@pytest.fixture
def quota_stack(database_url: str, tmp_path: Path) -> Stack:
    return make_stack(database_url, tmp_path / "data", max_upload_bytes=UPLOAD_LIMIT, starting_credits=1000)


def _age(stack: Stack, job_id: str, *, days: int = 400) -> None:
    """Move a job's timestamps into the past, past every retention and URL lifetime."""
    with stack.db.write() as s:
        row = s.get(JobRow, job_id)
        assert row is not None
        past = utcnow() - timedelta(days=days)
        row.created_at = past
        if row.finished_at is not None:
            row.finished_at = past


def _job_objects(stack: Stack, user: str, job_id: str) -> list[Path]:
    root = stack.settings.objects_dir
    return [p for prefix in keys.job_prefixes(user, job_id) for p in (root / prefix).rglob("*") if p.is_file()]


def test_create_upload_cancel_loop_hits_quota_exceeded(quota_stack: Stack) -> None:
    stack = quota_stack
    jobs = stack.services.jobs
    user = stack.services.accounts.create_anonymous().user.user_id
    limits = limits_for("free")
    allowance = limits.max_batch * UPLOAD_LIMIT
    expected_rounds = min(limits.max_stored_bytes // allowance, limits.max_live_jobs)
    canceled: list[str] = []
    photo = jpeg_bytes(320, 240)
    refused = None
    for _ in range(expected_rounds + 1):
        before = stack.services.accounts.me(user)
        try:
            created = jobs.create(user, preset_id="interior", item_count=limits.max_batch)
        except QuotaExceeded as e:
            refused = e
            # Refused before anything moved: the same credits, no new job.
            after = stack.services.accounts.me(user)
            assert (after.credits_available, after.credits_reserved, after.live_jobs) == (
                before.credits_available,
                before.credits_reserved,
                before.live_jobs,
            )
            break
        for target in created.uploads:
            stack.store.put(target.key, photo, content_type="image/jpeg")
        jobs.cancel(user, created.job.job_id)
        canceled.append(created.job.job_id)
    assert refused is not None and refused.code == "QUOTA_EXCEEDED", "the loop was never refused"
    assert len(canceled) == expected_rounds
    me = stack.services.accounts.me(user)
    assert me.stored_bytes == expected_rounds * allowance and me.stored_bytes_max == limits.max_stored_bytes
    assert me.credits_reserved == 0  # every cancel refunded in full
    check_invariants(stack.db)

    # The canceled jobs' retention ends: the sweeper deletes every object and the quota frees up.
    for job_id in canceled:
        assert _job_objects(stack, user, job_id)
        _age(stack, job_id)
    assert purge_expired_jobs(stack.db, stack.store, stack.settings) == len(canceled)
    for job_id in canceled:
        assert _job_objects(stack, user, job_id) == []
        for idx in range(limits.max_batch):
            assert stack.store.head(keys.input_key(user, job_id, idx)) is None
    me = stack.services.accounts.me(user)
    assert (me.stored_bytes, me.live_jobs) == (0, 0)
    assert jobs.create(user, preset_id="interior", item_count=limits.max_batch).job.status == "created"
    check_invariants(stack.db)


def test_live_jobs_quota(database_url: str, tmp_path: Path) -> None:
    stack = make_stack(database_url, tmp_path / "data", max_upload_bytes=1024)
    user = stack.services.accounts.create_anonymous().user.user_id
    for _ in range(limits_for("free").max_live_jobs):
        created = stack.services.jobs.create(user, preset_id="interior", item_count=1)
        stack.services.jobs.cancel(user, created.job.job_id)
    with pytest.raises(QuotaExceeded, match="keeps 50 jobs"):
        stack.services.jobs.create(user, preset_id="interior", item_count=1)
    check_invariants(stack.db)


def test_canceled_and_expired_jobs_objects_are_gone_after_a_sweep(quota_stack: Stack) -> None:
    """Inputs, masks and outputs of a canceled job and of an expired upload are deleted by the
    sweeper, and a canceled job no longer hands out URLs to them."""
    stack = quota_stack
    jobs = stack.services.jobs
    queue = WorkQueue(stack.db, stack.settings.queue)
    user = stack.services.accounts.create_anonymous().user.user_id

    # A job canceled while running, with one item already processed (output, preview, mask).
    created = jobs.create(user, preset_id="interior", item_count=2)
    running = created.job.job_id
    for target in created.uploads:
        stack.store.put(target.key, jpeg_bytes(seed=target.idx), content_type="image/jpeg")
    jobs.confirm_upload(user, running)
    jobs.execute(user, running, concepts=actions_from_stored(WALL))
    claim = queue.claim("w")
    assert claim is not None and claim.job_id == running
    written = {
        keys.output_key(user, running, claim.idx): b"png",
        keys.preview_key(user, running, claim.idx): b"jpg",
        keys.mask_key(user, running, claim.idx, "Wall"): b"mask",
    }
    for key, data in written.items():
        stack.store.put(key, data, content_type="application/octet-stream")
    outputs = ItemOutputs(
        output_key=keys.output_key(user, running, claim.idx),
        preview_key=keys.preview_key(user, running, claim.idx),
        stored_bytes=sum(map(len, written.values())),
    )
    assert queue.complete_item(claim, outputs)
    view = jobs.cancel(user, running)
    assert view.status == "canceled" and view.items is not None
    assert all(i.input_key == "" and i.output_key is None and i.preview_key is None for i in view.items)
    assert jobs.get(user, running).set_key is None

    # Retention not over yet: nothing is deleted.
    assert purge_expired_jobs(stack.db, stack.store, stack.settings) == 0
    assert stack.store.head(keys.output_key(user, running, claim.idx)) is not None

    # Done with that one first (one live job at a time on the free plan), then an abandoned upload.
    _age(stack, running)
    assert purge_expired_jobs(stack.db, stack.store, stack.settings) == 1
    abandoned = jobs.create(user, preset_id="interior", item_count=1)
    stack.store.put(abandoned.uploads[0].key, jpeg_bytes(), content_type="image/jpeg")
    with stack.db.write() as s:
        row = s.get(JobRow, abandoned.job.job_id)
        assert row is not None
        row.upload_deadline_at = utcnow() - timedelta(seconds=1)
    assert expire_abandoned_uploads(stack.db) == 1
    _age(stack, abandoned.job.job_id)
    assert purge_expired_jobs(stack.db, stack.store, stack.settings) == 1

    for job_id in (running, abandoned.job.job_id):
        assert _job_objects(stack, user, job_id) == []
        with stack.db.read() as s:
            row = s.get(JobRow, job_id)
            assert row is not None and row.purged_at is not None and row.stored_bytes == 0
    for key in written:
        assert stack.store.head(key) is None
    # A second sweep finds nothing more to do.
    assert purge_expired_jobs(stack.db, stack.store, stack.settings) == 0
    check_invariants(stack.db)


def test_canceled_job_is_kept_until_its_upload_urls_expired(database_url: str, tmp_path: Path) -> None:
    """Purged before its URLs expire, an S3 presigned PUT could write the object again after the
    purge, with no job left to account for it: the canceled retention waits for the URL lifetime."""
    stack = make_stack(database_url, tmp_path / "data", canceled_retention_s=0, upload_url_ttl_s=3600)
    user = stack.services.accounts.create_anonymous().user.user_id
    created = stack.services.jobs.create(user, preset_id="interior", item_count=1)
    stack.store.put(created.uploads[0].key, jpeg_bytes(), content_type="image/jpeg")
    stack.services.jobs.cancel(user, created.job.job_id)
    assert purge_expired_jobs(stack.db, stack.store, stack.settings) == 0
    assert stack.store.head(created.uploads[0].key) is not None
    with stack.db.write() as s:
        row = s.get(JobRow, created.job.job_id)
        assert row is not None
        row.created_at = utcnow() - timedelta(seconds=3601)
    assert purge_expired_jobs(stack.db, stack.store, stack.settings) == 1
    assert stack.store.head(created.uploads[0].key) is None


def test_finished_jobs_are_purged_after_their_retention(database_url: str, tmp_path: Path) -> None:
    stack = make_stack(database_url, tmp_path / "data", finished_retention_s=3600)
    queue = WorkQueue(stack.db, stack.settings.queue)
    user = stack.services.accounts.create_anonymous().user.user_id
    created = stack.services.jobs.create(user, preset_id="interior", item_count=1)
    job_id = created.job.job_id
    stack.store.put(created.uploads[0].key, jpeg_bytes(), content_type="image/jpeg")
    stack.services.jobs.confirm_upload(user, job_id)
    stack.services.jobs.execute(user, job_id, concepts=actions_from_stored(WALL))
    claim = queue.claim("w")
    assert claim is not None
    stack.store.put(keys.output_key(user, job_id, 0), b"out", content_type="image/png")
    assert queue.complete_item(claim, ItemOutputs(output_key=keys.output_key(user, job_id, 0), stored_bytes=3))
    package = queue.claim("w")
    assert package is not None and package.stage == "package"
    stack.store.put(keys.set_key(user, job_id), b"zip", content_type="application/zip")
    assert queue.complete_package(package, keys.set_key(user, job_id), stored_bytes=3)
    me = stack.services.accounts.me(user)
    assert me.stored_bytes == len(jpeg_bytes()) + 6 and me.live_jobs == 1
    assert purge_expired_jobs(stack.db, stack.store, stack.settings) == 0  # still within retention
    with stack.db.write() as s:
        row = s.get(JobRow, job_id)
        assert row is not None and row.finished_at is not None
        row.finished_at -= timedelta(seconds=3601)
    assert purge_expired_jobs(stack.db, stack.store, stack.settings) == 1
    assert _job_objects(stack, user, job_id) == []
    view = stack.services.jobs.get(user, job_id)
    assert view.status == "done" and view.set_key is None and view.items is not None
    assert all(i.output_key is None and i.input_key == "" for i in view.items)
    me = stack.services.accounts.me(user)
    assert (me.stored_bytes, me.live_jobs) == (0, 0)
    check_invariants(stack.db)
