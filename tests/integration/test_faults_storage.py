"""The object store going away under queued work: the S3 adapter against a private moto server
(a real process) that is stopped after the album was uploaded, confirmed and queued.

Real workers (the pipeline with the tiny SAM3 on onnxruntime) retry every item with backoff; once out
of attempts each item fails with the storage error, the job fails, every credit is refunded, and
health reports the store down. Nothing is charged for work that could not be done.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from server.db.tables import UserRow
from tests.servers.s3server import run_s3_server
from tests.support.invariants import check_invariants
from tests.support.pipeline import job_items, link_tiny_model, process_jobs, queued_job
from tests.support.stack import make_stack

pytestmark = pytest.mark.integration

ITEMS = 3


def test_store_down_under_queued_work_fails_cleanly_and_refunds(tmp_path: Path) -> None:
    with contextlib.ExitStack() as moto:
        endpoint = moto.enter_context(run_s3_server())
        stack = make_stack(
            f"sqlite:///{tmp_path / 's3.db'}",
            link_tiny_model(tmp_path / "data"),
            inference="onnx",
            storage="s3",
            s3_endpoint_url=endpoint.url,
            s3_access_key_id=endpoint.access_key_id,
            s3_secret_access_key=endpoint.secret_access_key,
            s3_region=endpoint.region,
            s3_bucket="faults",
            max_attempts=3,
            retry_backoff_s=0.1,
        )
        user_id, job_id = queued_job(stack, ITEMS)
        assert stack.services.health.report().ok
    # moto is stopped here: the bucket, the photos and the endpoint are gone.
    try:
        report = stack.services.health.report()
        assert not report.ok
        assert [c.name for c in report.components if not c.ok] == ["storage"]

        started = time.monotonic()
        stats = process_jobs(stack, [job_id], workers=2, timeout_s=120)
        print(f"store down: {ITEMS} items failed after {time.monotonic() - started:.1f}s, stats {stats}")
        items = job_items(stack.db, job_id)
        assert [i.status for i in items] == ["failed"] * ITEMS
        assert all(i.attempts == 3 and i.error for i in items), [(i.attempts, i.error) for i in items]
        assert sum(s.failed for s in stats) == 3 * ITEMS  # every attempt was made, none was skipped
        with stack.db.read() as s:
            user = s.get(UserRow, user_id)
            assert user is not None
            assert (user.credits_available, user.credits_reserved, user.credits_spent) == (100, 0, 0)
        check_invariants(stack.db)
    finally:
        stack.db.dispose()
