"""Which flushes notify job watchers: progress does, lease bookkeeping (claims' heartbeats) does not."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from server.clock import utcnow
from server.db.notify import _changed_job_ids
from server.db.tables import JobItemRow, JobRow
from tests.support.pipeline import queued_job
from tests.support.stack import make_stack


def test_only_progress_marks_a_job_changed(tmp_path: Path) -> None:
    stack = make_stack(f"sqlite:///{tmp_path / 's3.db'}", tmp_path / "data")
    try:
        _, job_id = queued_job(stack, 2)
        with stack.db.write() as s:
            item = s.scalars(select(JobItemRow).where(JobItemRow.job_id == job_id, JobItemRow.idx == 0)).one()
            job = s.get(JobRow, job_id)
            assert job is not None
            assert _changed_job_ids(s) == set()

            item.lease_expires_at = utcnow() + timedelta(seconds=30)  # a heartbeat
            job.package_lease_expires_at = utcnow()
            assert _changed_job_ids(s) == set()

            item.error = "progress"  # anything else is progress
            assert _changed_job_ids(s) == {job_id}
            s.flush()
            assert _changed_job_ids(s) == set()

            job.done_items += 1
            assert _changed_job_ids(s) == {job_id}
            s.rollback()
    finally:
        stack.db.dispose()
