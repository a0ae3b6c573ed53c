"""Signed webhooks end to end: the real pipeline writes events into the outbox with its state
changes, the sender posts them to a real HTTP receiver on loopback, signed, in order, retried.
On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypedDict

import httpx
import pytest
from sqlalchemy import select

from server.db.tables import WebhookDeliveryRow
from server.errors import ValidationFailed
from server.service import webhook_signature
from server.service.concept_action import actions_from_stored
from server.service.webhook_targets import AddressPolicy, TargetRefused
from server.work.webhook_sender import WebhookSender
from stack import ctl
from tests.support.live_rest import bearer, err, live_rest, ok
from tests.support.pipeline import WALL_WHITE, link_tiny_model, photo_jpeg, process_jobs
from tests.support.stack import Stack, make_stack
from tests.support.webhook_receiver import Receiver, webhook_receiver

pytestmark = pytest.mark.integration


class WebhookOverrides(TypedDict):
    """Settings overrides for ``make_stack`` and ``live_rest``; typed, so each key is checked where they are spread."""

    webhook_allow_networks: tuple[str, ...]
    webhook_backoff_s: float
    webhook_timeout_s: float


LOOPBACK_ALLOWED: WebhookOverrides = {
    "webhook_allow_networks": ("127.0.0.0/8",),
    "webhook_backoff_s": 0.05,
    "webhook_timeout_s": 3.0,
}


@pytest.fixture
def hook_stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    stack = make_stack(database_url, link_tiny_model(tmp_path / "data"), inference="onnx", **LOOPBACK_ALLOWED)
    try:
        yield stack
    finally:
        stack.db.dispose()


def _uploaded(stack: Stack, n: int) -> tuple[str, str]:
    user = stack.services.accounts.create_anonymous().user.user_id
    created = stack.services.jobs.create(user, preset_id="interior", item_count=n)
    for target in created.uploads:
        stack.store.put(target.key, photo_jpeg(96, 72, seed=target.idx), content_type="image/jpeg")
    stack.services.jobs.confirm_upload(user, created.job.job_id)
    return user, created.job.job_id


def _execute(stack: Stack, user: str, job_id: str, url: str, events: list[str] | None = None) -> str:
    view = stack.services.jobs.execute(
        user,
        job_id,
        concepts=actions_from_stored(WALL_WHITE),
        webhook_url=url,
        webhook_events=events,
    )
    assert view.webhook_url == url and view.webhook_secret is not None
    assert view.webhook_secret.startswith("whsec_")
    return view.webhook_secret


class SenderThread:
    """A webhook sender on its own event loop, as it runs beside the workers in a service process."""

    def __init__(self, stack: Stack) -> None:
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        sender = WebhookSender(stack.db, stack.settings.webhooks, name="test-sender", poll_s=0.05)
        ready = threading.Event()

        async def main() -> None:
            self._stop = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            ready.set()
            await sender.run(self._stop)

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        self._thread.start()
        ready.wait(5)

    def stop(self) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        assert not self._thread.is_alive()


@pytest.fixture
def sender(hook_stack: Stack) -> Iterator[Callable[[], SenderThread]]:
    started: list[SenderThread] = []

    def start() -> SenderThread:
        started.append(SenderThread(hook_stack))
        return started[-1]

    yield start
    for s in started:
        s.stop()


def _rows(stack: Stack, job_id: str) -> list[WebhookDeliveryRow]:
    with stack.db.read() as s:
        stmt = select(WebhookDeliveryRow).where(WebhookDeliveryRow.job_id == job_id).order_by(WebhookDeliveryRow.seq)
        return list(s.scalars(stmt))


def _settled(stack: Stack, job_id: str, count: int, timeout_s: float = 60.0) -> list[WebhookDeliveryRow]:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = _rows(stack, job_id)
        if len(rows) == count and all(r.state != "pending" for r in rows):
            return rows
        assert time.monotonic() < deadline, [(r.seq, r.event, r.state, r.attempts) for r in rows]
        time.sleep(0.05)


def _first_arrivals(receiver: Receiver) -> list[str]:
    order: list[str] = []
    for r in receiver.requests:
        if r.headers["webhook-id"] not in order:
            order.append(r.headers["webhook-id"])
    return order


def test_events_are_signed_in_order_and_retried_until_acknowledged(
    hook_stack: Stack, sender: Callable[[], SenderThread]
) -> None:
    stack = hook_stack
    with webhook_receiver(fail_first=3) as receiver:
        user, job_id = _uploaded(stack, 2)
        secret = _execute(stack, user, job_id, receiver.url)
        sender()
        process_jobs(stack, [job_id], workers=2)
        rows = _settled(stack, job_id, 3)

        assert [r.event for r in rows] == ["item.done", "item.done", "job.done"]
        assert all(r.state == "delivered" and r.attempts == 4 for r in rows)
        # Three 500s, then the acknowledgement; the log holds each attempt.
        for r in rows:
            assert receiver.attempts(r.id) == [500, 500, 500, 200]
            assert [a["status"] for a in r.log] == [500, 500, 500, 200]
        assert sorted(receiver.acknowledged) == sorted(r.id for r in rows) and receiver.duplicates == []
        # In order per job: an event's first attempt only once the previous one was acknowledged.
        assert _first_arrivals(receiver) == [r.id for r in rows]
        for received in receiver.requests:
            webhook_signature.verify(secret, received.headers, received.body)
            assert received.headers["content-type"] == "application/json"
        last = json.loads(receiver.requests[-1].body)
        assert last["type"] == "job.done" and last["data"]["job_id"] == job_id
        assert last["data"]["done_items"] == 2 and last["data"]["status"] == "done"
        tampered = dict(receiver.requests[-1].headers)
        with pytest.raises(webhook_signature.SignatureError):
            webhook_signature.verify(secret, tampered, receiver.requests[-1].body + b" ")

        log = stack.services.jobs.webhook_deliveries(user, job_id)
        assert [d.event for d in log] == ["item.done", "item.done", "job.done"] and log[0].attempts == 4


def test_only_the_chosen_events_are_sent(hook_stack: Stack, sender: Callable[[], SenderThread]) -> None:
    stack = hook_stack
    with webhook_receiver() as receiver:
        user, job_id = _uploaded(stack, 2)
        _execute(stack, user, job_id, receiver.url, ["job.done", "job.failed"])
        sender()
        process_jobs(stack, [job_id], workers=1)
        rows = _settled(stack, job_id, 1)
        assert [r.event for r in rows] == ["job.done"] and receiver.acknowledged == [rows[0].id]


def test_a_canceled_job_reports_it(hook_stack: Stack, sender: Callable[[], SenderThread]) -> None:
    stack = hook_stack
    with webhook_receiver() as receiver:
        user, job_id = _uploaded(stack, 1)
        _execute(stack, user, job_id, receiver.url)
        stack.services.jobs.cancel(user, job_id)
        sender()
        [row] = _settled(stack, job_id, 1)
        assert row.event == "job.canceled" and row.state == "delivered"
        assert json.loads(receiver.requests[0].body)["data"]["status"] == "canceled"


def test_a_hanging_receiver_does_not_hold_the_pipeline(hook_stack: Stack, sender: Callable[[], SenderThread]) -> None:
    stack = hook_stack
    with webhook_receiver(hold=True) as receiver:
        user, job_id = _uploaded(stack, 2)
        _execute(stack, user, job_id, receiver.url)
        sender()
        process_jobs(stack, [job_id], workers=1)
        # The album finished while the first event's delivery was still waiting on the receiver.
        assert stack.services.jobs.get(user, job_id).status == "done"
        assert receiver.in_flight >= 1 or not receiver.acknowledged
        receiver.release.set()
        rows = _settled(stack, job_id, 3)
        assert all(r.state == "delivered" for r in rows)


def test_private_addresses_are_refused_unless_allowed(tmp_path: Path) -> None:
    stack = make_stack(f"sqlite:///{tmp_path / 's3.db'}", tmp_path / "data")
    try:
        user, job_id = _uploaded(stack, 1)
        for url in (
            "http://127.0.0.1:8080/hook",
            "http://localhost/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.7/hook",
            "http://[::1]/hook",
            "http://[::ffff:192.168.0.1]/hook",
            "ftp://example.com/hook",
            "https://user:pw@example.com/hook",
            "not a url",
        ):
            with pytest.raises(ValidationFailed, match="webhook_url"):
                _execute(stack, user, job_id, url)
        with pytest.raises(ValidationFailed, match="webhook_events"):
            _execute(stack, user, job_id, "https://example.com/hook", ["item.done", "job.exploded"])
        assert stack.services.jobs.get(user, job_id).status == "uploaded"  # nothing changed
    finally:
        stack.db.dispose()
    # At send time the name is resolved and every address checked (a name may point anywhere).
    with pytest.raises(TargetRefused):
        asyncio.run(AddressPolicy().resolve("http://localhost:9/hook"))
    asyncio.run(AddressPolicy.from_cidrs(["127.0.0.0/8", "::1/128"]).resolve("http://localhost:9/hook"))


def test_through_the_rest_api_and_s3ctl(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with (
        webhook_receiver() as receiver,
        live_rest(database_url, link_tiny_model(tmp_path / "data"), inference="onnx", **LOOPBACK_ALLOWED) as api,
        httpx.Client(base_url=api.base_url, timeout=30) as http,
    ):
        auth = bearer(ok(http.post("/auth/anon"), 201)["token"])
        created = ok(http.post("/jobs", json={"preset": "interior", "item_count": 1}, headers=auth), 201)
        job_id = created["job_id"]
        [upload] = created["upload_urls"]
        ok(http.put(upload["url"], content=photo_jpeg(96, 72), headers=upload["headers"]))
        ok(http.post(f"/jobs/{job_id}/confirm-upload", headers=auth))
        bad = {"concepts": WALL_WHITE, "webhook_url": receiver.url, "webhook_events": ["job.exploded"]}
        err(http.post(f"/jobs/{job_id}/execute", json=bad, headers=auth), 400, "VALIDATION_ERROR")
        body = {"concepts": WALL_WHITE, "webhook_url": receiver.url, "webhook_events": ["job.done"]}
        executed = ok(http.post(f"/jobs/{job_id}/execute", json=body, headers=auth))
        secret = executed["webhook"]["secret"]
        assert executed["webhook"] == {"url": receiver.url, "events": ["job.done"], "secret": secret}
        # The secret is shown once: reading the job again does not reveal it.
        assert ok(http.get(f"/jobs/{job_id}", headers=auth))["webhook"] == {"url": receiver.url, "events": ["job.done"]}

        sending = SenderThread(api.stack)
        try:
            process_jobs(api.stack, [job_id], workers=1)
            [row] = _settled(api.stack, job_id, 1)
        finally:
            sending.stop()
        webhook_signature.verify(secret, receiver.requests[0].headers, receiver.requests[0].body)
        [delivery] = ok(http.get(f"/jobs/{job_id}/webhooks", headers=auth))["deliveries"]
        assert delivery["id"] == row.id and delivery["state"] == "delivered" and delivery["event"] == "job.done"
        assert [a["status"] for a in delivery["log"]] == [200]
        stranger = bearer(ok(http.post("/auth/anon"), 201)["token"])
        err(http.get(f"/jobs/{job_id}/webhooks", headers=stranger), 404, "NOT_FOUND")

        monkeypatch.setenv("S3_ADMIN_TOKEN", str(api.stack.settings.auth.admin_token))
        out = io.StringIO()
        assert ctl.main(["--target", api.grpc_target, "webhooks", job_id], out=out) == 0
        text = out.getvalue()
        assert receiver.url in text and row.id in text and "delivered" in text and "job.done" in text
