"""Packaging a job's set when what it was made with is gone: a permanent failure, never a retry loop."""

from __future__ import annotations

from server.db.tables import JobRow
from tests.support.pipeline import process_jobs, queued_job
from tests.support.stack import Stack


def _repackage_with_preset(stack: Stack, job_id: str, preset_id: str) -> None:
    """Send a finished job back to packaging, as if its preset had been renamed since it ran."""
    with stack.db.write() as s:
        job = s.get(JobRow, job_id)
        assert job is not None
        job.preset_id = preset_id
        job.status = "running"
        job.package_state = "pending"
        job.set_key = None
        job.error = None


def test_a_removed_preset_fails_the_packaging_once_with_a_clear_error(stack: Stack) -> None:
    _, job_id = queued_job(stack, 1)
    process_jobs(stack, [job_id], workers=1)
    with stack.db.read() as s:
        job = s.get(JobRow, job_id)
        assert job is not None and job.status == "done" and job.set_key is not None
        attempts = job.package_attempts
    _repackage_with_preset(stack, job_id, "retired")
    # Before the fix a KeyError was retried with a backoff and the job never finished.
    process_jobs(stack, [job_id], workers=1, timeout_s=30.0)
    with stack.db.read() as s:
        job = s.get(JobRow, job_id)
        assert job is not None
        assert (job.status, job.package_state, job.set_key) == ("done", "failed", None)
        assert job.package_attempts == attempts + 1
        assert job.error is not None and "unknown preset 'retired'" in job.error
