"""Webhook deliveries survive ``kill -9`` of the worker process that was posting one, and a receiver
that answers 500 three times to every event: each event is acknowledged exactly once, in order per
job. The figures of docs/reliability.md ("Webhooks") come from this test (run with ``-s``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from server.service.concept_action import actions_from_stored
from server.storage import keys
from tests.support.invariants import check_invariants
from tests.support.pipeline import WALL_WHITE, job_statuses, link_tiny_model, photo_jpeg
from tests.support.processes import child, service_env, wait_for
from tests.support.stack import make_stack
from tests.support.webhook_receiver import webhook_receiver

pytestmark = pytest.mark.integration

ITEMS = 3


def test_deliveries_survive_kill_9_and_three_500s(database_url: str, tmp_path: Path) -> None:
    stack = make_stack(
        database_url,
        link_tiny_model(tmp_path / "data"),
        inference="onnx",
        lease_s=2.0,
        webhook_allow_networks=("127.0.0.0/8",),
    )
    env = service_env(
        stack.settings,
        S3_WEBHOOK_ALLOW_NETWORKS="127.0.0.0/8",
        S3_WEBHOOK_BACKOFF_S="0.2",
        S3_WEBHOOK_TIMEOUT_S="2",
    )
    try:
        with webhook_receiver(fail_first=3, hold=True) as receiver:
            user = stack.services.accounts.create_anonymous().user.user_id
            created = stack.services.jobs.create(user, preset_id="interior", item_count=ITEMS)
            for target in created.uploads:
                stack.store.put(target.key, photo_jpeg(96, 72, seed=target.idx), content_type="image/jpeg")
            job_id = created.job.job_id
            stack.services.jobs.confirm_upload(user, job_id)
            stack.services.jobs.execute(
                user, job_id, concepts=actions_from_stored(WALL_WHITE),
                webhook_url=receiver.url,
            )  # fmt: skip
            with child("stack.worker", env, tmp_path / "logs", name="first") as first:
                # The first event's first attempt is held open by the receiver: kill the sender mid-request.
                wait_for(lambda: receiver.in_flight >= 1, timeout_s=90, what="the first webhook attempt", poll_s=0.01)
                first.kill_hard()
                killed_at = time.monotonic()
            receiver.release.set()
            with child("stack.worker", env, tmp_path / "logs", name="second") as second:
                # Acknowledged by the receiver, then recorded by the sender: wait for both.
                def settled() -> bool:
                    log = stack.services.jobs.webhook_deliveries(user, job_id)
                    recorded = len(log) == ITEMS + 1 and all(d.state != "pending" for d in log)
                    return len(receiver.acknowledged) == ITEMS + 1 and recorded

                wait_for(
                    lambda: settled() or not second.alive(),
                    timeout_s=120,
                    what="every event to be acknowledged and recorded",
                    poll_s=0.05,
                )
                recovered_s = time.monotonic() - killed_at
                assert second.alive(), second.output()[-3000:]
            log = stack.services.jobs.webhook_deliveries(user, job_id)
        assert job_statuses(stack.db, [job_id])[job_id] == "done"
        assert stack.store.head(keys.set_key(user, job_id)) is not None
        check_invariants(stack.db)
    finally:
        stack.db.dispose()

    assert [d.event for d in log] == ["item.done"] * ITEMS + ["job.done"]
    assert all(d.state == "delivered" for d in log)
    # Exactly once acknowledged, each; no duplicate acknowledgement.
    assert sorted(receiver.acknowledged) == sorted(d.id for d in log) and receiver.duplicates == []
    for d in log:
        assert receiver.attempts(d.id) == [500, 500, 500, 200], (d.id, receiver.attempts(d.id))
    # In order per job: each event's first attempt came after the previous one was acknowledged.
    first_seen: list[str] = []
    for r in receiver.requests:
        if r.headers["webhook-id"] not in first_seen:
            first_seen.append(r.headers["webhook-id"])
    assert first_seen == [d.id for d in log]
    # The attempt cut by the kill is counted (claimed) but was never recorded: 4 attempts, 3 logged.
    assert log[0].attempts == 4 and len(log[0].log) == 3
    print(
        json.dumps(
            {
                "database": database_url.split(":", 1)[0],
                "events": len(log),
                "requests": len(receiver.requests),
                "acknowledged": len(receiver.acknowledged),
                "duplicates": len(receiver.duplicates),
                "attempts_per_event": [d.attempts for d in log],
                "kill_to_all_acknowledged_s": round(recovered_s, 1),
            }
        )
    )
