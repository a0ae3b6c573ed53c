"""A small run of the load generator (``bench/loadgen.py``) against ``python -m stack.serve`` as a
real process (SQLite, two in-process workers, the tiny SAM3 on onnxruntime): concurrent users through
the whole flow, then the end checks, including the ledger invariants read from the database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.loadgen import check_database, passed, run_load
from server.ports import free_port
from server.service.callbacks import ItemReport
from server.work.queue import WorkQueue
from tests.support.pipeline import job_statuses, link_tiny_model, queued_job
from tests.support.processes import child, service_env, wait_http_ready
from tests.support.stack import Stack, make_settings

pytestmark = pytest.mark.integration

USERS = 6
PHOTOS = 2


def test_concurrent_users_through_the_whole_flow(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 's3.db'}"
    settings = make_settings(
        link_tiny_model(tmp_path / "data"),
        database_url=db_url,
        http_port=free_port(),
        grpc_port=free_port(),
        inference="onnx",
        workers=2,
    )
    base = f"http://127.0.0.1:{settings.http.port}"
    with child("stack.serve", service_env(settings), tmp_path / "logs") as serve:
        wait_http_ready(base, serve)
        report = asyncio.run(run_load(base, users=USERS, photos=PHOTOS, size=(320, 240), poll_s=0.1, timeout_s=180))
    report["checks"]["database_invariants"] = check_database(db_url)
    print(report)
    assert passed(report), report
    checks = report["checks"]
    assert checks["items_done"] == USERS * PHOTOS and checks["jobs_by_status"] == {"done": USERS}
    assert report["endpoints"]["POST /jobs"]["count"] == USERS
    assert report["endpoints"]["PUT upload URL"]["count"] == USERS * PHOTOS


def test_the_load_generator_refuses_other_hosts_and_unbounded_runs() -> None:
    for target, users in (("http://example.com", 1), ("http://10.0.0.1:8080", 1), ("http://127.0.0.1:1", 10_000)):
        with pytest.raises(ValueError):
            asyncio.run(run_load(target, users=users, photos=1))


def test_a_finished_album_is_packaged_before_the_queue_drains(stack: Stack) -> None:
    """Under load the queue always holds items; the album whose items are all finished must still be
    packaged (and so end, freeing its user's slot) next, not after every queued item."""
    user_a, album_a = queued_job(stack, 1)
    _, album_b = queued_job(stack, 3)
    secret = stack.settings.auth.callback_secret
    report = ItemReport("remote-0", 0, "done", output_key=f"outputs/{user_a}/{album_a}/0_result.png")
    stack.services.callbacks.report(secret, album_a, report)
    claim = WorkQueue(stack.db, stack.settings.queue).claim("w")
    assert claim is not None and (claim.stage, claim.job_id) == ("package", album_a)
    assert job_statuses(stack.db, [album_b])[album_b] == "queued"
