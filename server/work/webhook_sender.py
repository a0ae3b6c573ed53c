"""Posting the webhook outbox: claim due events with a lease, POST them signed, record the answer.

Runs next to the pipeline workers (``stack.runtime``) as its own task with its own HTTP client, so a
slow or dead receiver costs a delivery slot, never a pipeline worker. Per job, events go out in
``seq`` order: an event is due only once every earlier event of its job is delivered or failed.
Delivery is at least once: a sender killed after the receiver answered but before the answer was
recorded sends the event again when its lease runs out, with the same ``webhook-id``, so a receiver
that deduplicates by it acknowledges every event exactly once. Failures back off exponentially (5 s,
10 s, ... at most 1 h) up to ``webhook_max_attempts``; then the event is ``failed`` and the next one
of its job goes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import and_, exists, select
from sqlalchemy.orm import aliased

from server.clock import rfc3339, utcnow
from server.config.sections import WebhookConfig
from server.db.engine import Database, DatabaseUnavailable
from server.db.tables import JobRow, WebhookDeliveryRow
from server.service import webhook_signature
from server.service.webhook_targets import AddressPolicy, TargetRefused
from server.wire_enums import WebhookDeliveryState

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 3600.0
LEASE_MARGIN_S = 5.0
MAX_LOGGED_ERROR_CHARS = 300


@dataclass(frozen=True)
class Due:
    """One claimed event, with what posting it needs."""

    id: str
    url: str
    body: bytes
    secret: str
    attempt: int


@dataclass(frozen=True)
class Outcome:
    status: int
    """The receiver's HTTP status; 0 when none came (refused, timed out, connection failed)."""
    error: str | None
    ms: int
    permanent: bool = False
    """Never worth retrying (the address is not allowed)."""

    @property
    def acknowledged(self) -> bool:
        return 200 <= self.status < 300


class Outbox:
    """The database side: claim due events, record outcomes (each its own short transaction)."""

    def __init__(self, db: Database, config: WebhookConfig) -> None:
        self._db = db
        self._max_attempts = config.max_attempts
        self._backoff_s = config.backoff_s
        # A claim outlives one attempt (bounded by the timeout) and its recording; a sender that
        # dies leaves it to expire, and another sender takes the event over.
        self._lease = timedelta(seconds=config.timeout_s + LEASE_MARGIN_S)

    def claim(self, owner: str, limit: int) -> list[Due]:
        now = utcnow()
        earlier = aliased(WebhookDeliveryRow)
        blocked = exists().where(
            and_(earlier.job_id == WebhookDeliveryRow.job_id, earlier.seq < WebhookDeliveryRow.seq),
            earlier.state == WebhookDeliveryState.PENDING,
        )
        with self._db.write() as s:
            stmt = (
                select(WebhookDeliveryRow, JobRow.webhook_secret)
                .join(JobRow, JobRow.id == WebhookDeliveryRow.job_id)
                .where(
                    WebhookDeliveryRow.state == WebhookDeliveryState.PENDING,
                    WebhookDeliveryRow.next_attempt_at <= now,
                    (WebhookDeliveryRow.lease_expires_at.is_(None)) | (WebhookDeliveryRow.lease_expires_at < now),
                    ~blocked,
                )
                .order_by(WebhookDeliveryRow.next_attempt_at, WebhookDeliveryRow.id)
                .limit(limit)
            )
            if self._db.is_postgres:
                stmt = stmt.with_for_update(skip_locked=True, of=WebhookDeliveryRow)
            claimed: list[Due] = []
            for row, secret in s.execute(stmt).all():
                row.attempts += 1  # counted when claimed: an attempt cut short by a crash counts too
                row.lease_owner = owner
                row.lease_expires_at = now + self._lease
                body = json.dumps(row.payload, separators=(",", ":"), sort_keys=True).encode()
                claimed.append(Due(row.id, row.url, body, secret or "", row.attempts))
            return claimed

    def record(self, due: Due, owner: str, outcome: Outcome) -> None:
        with self._db.write() as s:
            row = s.get(WebhookDeliveryRow, due.id, with_for_update=True)
            if row is None or row.lease_owner != owner or row.state != WebhookDeliveryState.PENDING:
                return  # the lease was lost and another sender owns the event now
            now = utcnow()
            entry: dict[str, Any] = {"at": rfc3339(now), "status": outcome.status, "error": outcome.error}
            entry["ms"] = outcome.ms
            row.log = [*(row.log or []), entry]
            row.last_status = outcome.status or None
            row.last_error = outcome.error
            row.lease_owner = None
            row.lease_expires_at = None
            if outcome.acknowledged:
                row.state = WebhookDeliveryState.DELIVERED
                row.delivered_at = now
            elif outcome.permanent or row.attempts >= self._max_attempts:
                row.state = WebhookDeliveryState.FAILED
            else:
                delay = min(self._backoff_s * 2 ** (row.attempts - 1), MAX_BACKOFF_S)
                row.next_attempt_at = now + timedelta(seconds=delay)


class WebhookSender:
    """Claims due events and posts up to ``webhook_concurrency`` of them at once."""

    def __init__(
        self,
        db: Database,
        config: WebhookConfig,
        *,
        name: str,
        poll_s: float = 0.25,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._outbox = Outbox(db, config)
        self._policy = AddressPolicy.from_cidrs(config.allow_networks)
        self._timeout_s = config.timeout_s
        self._slots = config.concurrency
        self._poll_s = poll_s
        self._client = client
        self.name = name

    async def run(self, stopping: asyncio.Event) -> None:
        timeout = httpx.Timeout(self._timeout_s)
        async with contextlib.AsyncExitStack() as stack:
            client = self._client
            if client is None:
                # No redirects (a receiver must not bounce us into a private address), no proxies
                # from the environment.
                client = await stack.enter_async_context(
                    httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False)
                )
            in_flight: set[asyncio.Task[None]] = set()
            while not stopping.is_set():
                free = self._slots - len(in_flight)
                claimed: list[Due] = []
                if free > 0:
                    try:
                        claimed = await asyncio.to_thread(self._outbox.claim, self.name, free)
                    except DatabaseUnavailable as e:
                        log.warning("webhooks %s: database unavailable: %s", self.name, e)
                for due in claimed:
                    task = asyncio.create_task(self._deliver(client, due))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                if not claimed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stopping.wait(), self._poll_s)
            # Attempts under way get the HTTP timeout to finish; the rest expire their lease.
            if in_flight:
                await asyncio.wait(in_flight, timeout=self._timeout_s)
                for task in in_flight:
                    task.cancel()

    async def _deliver(self, client: httpx.AsyncClient, due: Due) -> None:
        outcome = await self.post(client, due)
        try:
            await asyncio.to_thread(self._outbox.record, due, self.name, outcome)
        except DatabaseUnavailable as e:
            log.warning("webhooks %s: %s not recorded (the lease will expire): %s", self.name, due.id, e)
        except Exception:
            log.exception("webhooks %s: recording %s failed", self.name, due.id)

    async def post(self, client: httpx.AsyncClient, due: Due) -> Outcome:
        started = time.monotonic()

        def took() -> int:
            return round((time.monotonic() - started) * 1000)

        try:
            await self._policy.resolve(due.url)
        except TargetRefused as e:
            return Outcome(0, str(e)[:MAX_LOGGED_ERROR_CHARS], took(), permanent=True)
        stamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": "s3-webhooks/1",
            **webhook_signature.headers(due.secret, due.id, stamp, due.body),
        }
        try:
            async with asyncio.timeout(self._timeout_s):
                answer = await client.post(due.url, content=due.body, headers=headers)
        except (httpx.HTTPError, TimeoutError, OSError) as e:
            return Outcome(0, f"{type(e).__name__}: {e}"[:MAX_LOGGED_ERROR_CHARS], took())
        error = None if answer.is_success else f"HTTP {answer.status_code}"
        return Outcome(answer.status_code, error, took())
