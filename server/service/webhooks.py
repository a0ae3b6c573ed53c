"""Job webhooks: which events exist, the subscription execute records, and the durable outbox.

An event is a ``webhook_deliveries`` row added in the same transaction as the state change it
reports (``enqueue`` takes the caller's session), so a committed change always has its event and a
rolled-back one never does. ``server.work.webhook_sender`` posts the rows; this module never does I/O
beyond the database.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server import contract
from server.clock import rfc3339, utcnow
from server.db.tables import JobRow, WebhookDeliveryRow
from server.errors import ValidationFailed
from server.service.webhook_signature import new_secret
from server.service.webhook_targets import AddressPolicy
from server.wire_enums import WebhookDeliveryState

EVENT_TYPES: tuple[str, ...] = contract.WEBHOOK_EVENTS
"""Every event a webhook may post, as ``protos/s3/v1/types.proto`` (``WebhookEvent``) declares them."""


JOB_EVENTS: Mapping[str, str] = {"done": "job.done", "failed": "job.failed", "canceled": "job.canceled"}
"""Terminal job status -> its event."""


@dataclass(frozen=True)
class Subscription:
    url: str
    events: list[str]
    secret: str


def subscription(
    policy: AddressPolicy, url: str | None, events: Sequence[str] | None, *, secret: str | None = None
) -> Subscription | None:
    """Validate execute's ``webhook_url`` / ``webhook_events``; None when no URL was given."""
    if not url:
        if events:
            raise ValidationFailed("webhook_events: given without a webhook_url", field="webhook_events")
        return None
    clean_url = policy.check_url(url)
    chosen: list[str] = []
    for i, event in enumerate(events or EVENT_TYPES):
        if event not in EVENT_TYPES:
            raise ValidationFailed(
                f"webhook_events[{i}]: unknown event {event!r}; known: {', '.join(EVENT_TYPES)}",
                field=f"webhook_events[{i}]",
            )
        if event not in chosen:
            chosen.append(event)
    return Subscription(clean_url, chosen, secret or new_secret())


def subscribe(job: JobRow, sub: Subscription | None) -> None:
    job.webhook_url = sub.url if sub else None
    job.webhook_events = sub.events if sub else None
    job.webhook_secret = sub.secret if sub else None


def _job_data(job: JobRow) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "status": job.status,
        "total_items": job.total_items,
        "done_items": job.done_items,
        "failed_items": job.failed_items,
    }


def enqueue(session: Session, job: JobRow, event: str, data: Mapping[str, Any]) -> WebhookDeliveryRow | None:
    """Add ``event`` to the job's outbox if the job subscribed to it. The caller holds the job's row
    lock (every state change does), which makes ``seq`` the job's next number without a race."""
    if event not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event {event!r}")
    if not job.webhook_url or event not in (job.webhook_events or ()):
        return None
    last = session.scalar(select(func.max(WebhookDeliveryRow.seq)).where(WebhookDeliveryRow.job_id == job.id))
    now = utcnow()
    msg_id = f"msg_{uuid.uuid4().hex}"
    row = WebhookDeliveryRow(
        id=msg_id,
        job_id=job.id,
        seq=(last or 0) + 1,
        event=event,
        payload={"type": event, "timestamp": rfc3339(now), "data": dict(data)},
        url=job.webhook_url,
        state=WebhookDeliveryState.PENDING,
        attempts=0,
        next_attempt_at=now,
        log=[],
        created_at=now,
    )
    session.add(row)
    session.flush()  # the next enqueue in this transaction must see this seq
    return row


def item_finished(session: Session, job: JobRow, idx: int, status: str, error: str | None) -> None:
    if status in ("done", "failed"):
        enqueue(session, job, f"item.{status}", {"job_id": job.id, "idx": idx, "status": status, "error": error})


def job_ended(session: Session, job: JobRow) -> None:
    event = JOB_EVENTS.get(job.status)
    if event is not None:
        enqueue(session, job, event, {**_job_data(job), "error": job.error})


@dataclass(frozen=True)
class DeliveryView:
    id: str
    seq: int
    event: str
    url: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime | None
    log: tuple[Mapping[str, Any], ...]


def deliveries(session: Session, job_id: str) -> list[DeliveryView]:
    rows = session.scalars(
        select(WebhookDeliveryRow).where(WebhookDeliveryRow.job_id == job_id).order_by(WebhookDeliveryRow.seq)
    )
    return [
        DeliveryView(
            id=r.id,
            seq=r.seq,
            event=r.event,
            url=r.url,
            state=r.state,
            attempts=r.attempts,
            last_status=r.last_status,
            last_error=r.last_error,
            created_at=r.created_at,
            delivered_at=r.delivered_at,
            next_attempt_at=r.next_attempt_at if r.state == WebhookDeliveryState.PENDING else None,
            log=tuple(r.log or ()),
        )
        for r in rows
    ]
