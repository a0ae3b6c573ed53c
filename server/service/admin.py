"""Operator actions (the AdminService, ``s3ctl``): inspect users and jobs, grant credits, change
plans, requeue dead-lettered items, cancel any job.

Each action is one transaction that also writes an ``audit_log`` row naming the operator and what
was done; money moves only through ``ledger`` (``billing_events`` rows), so the balance invariant
holds after every action. Lock order is the queue's: job row, item rows, then the user row.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from server.clock import utcnow
from server.db.engine import Database
from server.db.tables import AuditRow, BillingEventRow, JobItemRow, JobRow, UserRow
from server.errors import Forbidden, InvalidState, NotFound, ValidationFailed
from server.plans import PLANS
from server.service import item_state, job_state, ledger, webhooks
from server.service.admin_views import (
    AdminJobView,
    AdminUserView,
    DeadLetterPage,
    DeadLetterView,
    admin_job_view,
    admin_user_view,
    dead_letter_clause,
    decode_page_token,
    encode_page_token,
)
from server.service.ids import canonical_id, resource_id
from server.service.locking import lock_user
from server.service.seals import seal_inputs
from server.service.settle import cancel_open_items, lock_job
from server.storage.port import ObjectStore
from server.wire_enums import ItemStatus, JobStatus

log = logging.getLogger(__name__)

DEFAULT_ACTOR = "admin"
MAX_ACTOR_CHARS = 64
MAX_REASON_CHARS = 500
MAX_IDEMPOTENCY_KEY_CHARS = 64
MAX_GRANT = 1_000_000
"""Largest single grant: a typo of a few extra digits must not overflow the 32-bit balances."""
DEFAULT_EVENTS = 20
MAX_EVENTS = 200
DEFAULT_DEAD_LETTER_PAGE = 50
MAX_DEAD_LETTER_PAGE = 200
REQUEUEABLE_JOB_STATES = (JobStatus.QUEUED, JobStatus.RUNNING)


@dataclass(frozen=True)
class GrantResult:
    user: AdminUserView
    duplicate: bool
    """The idempotency key was used before for this user: nothing was granted this time."""


def clean_actor(raw: str | None) -> str:
    """The operator's self-declared name (the token is the credential; this is for the record)."""
    if raw is None or raw == "":
        return DEFAULT_ACTOR
    if len(raw) > MAX_ACTOR_CHARS or not raw.isprintable():
        raise ValidationFailed(f"actor: must be at most {MAX_ACTOR_CHARS} printable characters", field="actor")
    return raw


def _text(value: str, name: str, *, required: bool = False, limit: int = MAX_REASON_CHARS) -> str:
    value = value.strip()
    if required and not value:
        raise ValidationFailed(f"{name}: is required", field=name)
    if len(value) > limit or not value.isprintable():
        raise ValidationFailed(f"{name}: must be at most {limit} printable characters", field=name)
    return value


def _audit(session: Session, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
    session.add(AuditRow(actor=actor, action=action, target=target, detail=detail, created_at=utcnow()))


class Admin:
    def __init__(self, db: Database, *, admin_token: str, max_attempts: int, store: ObjectStore | None = None) -> None:
        if len(admin_token) < 32:
            raise ValueError("the admin token must be at least 32 characters")
        self._db = db
        # Where a canceled job's upload URLs are closed; None in tools that only read.
        self._store = store
        self._token = admin_token.encode()
        self._max_attempts = max_attempts

    def authorize(self, token: str | None) -> None:
        """``Forbidden`` unless ``token`` is the admin token (compared in constant time)."""
        if token is None or not hmac.compare_digest(token.encode(), self._token):
            raise Forbidden("a valid admin token is required")

    # -- users ----------------------------------------------------------------------------------
    def _user(self, session: Session, user_id: str, *, lock: bool) -> UserRow:
        row = (
            session.scalars(select(UserRow).where(UserRow.id == user_id).with_for_update()).one_or_none()
            if lock
            else session.get(UserRow, user_id)
        )
        if row is None:
            raise NotFound("user not found")
        return row

    def user(self, user_id: str, *, events_limit: int = 0) -> AdminUserView:
        if events_limit < 0 or events_limit > MAX_EVENTS:
            raise ValidationFailed(f"events_limit: must be between 1 and {MAX_EVENTS}", field="events_limit")
        with self._db.read() as s:
            row = self._user(s, user_id, lock=False)
            return admin_user_view(s, row, events_limit=events_limit or DEFAULT_EVENTS)

    def grant(self, actor: str, user_id: str, amount: int, reason: str, idempotency_key: str = "") -> GrantResult:
        if not 1 <= amount <= MAX_GRANT:
            raise ValidationFailed(f"amount: must be between 1 and {MAX_GRANT}", field="amount")
        why = _text(reason, "reason", required=True)
        key = _text(idempotency_key, "idempotency_key", limit=MAX_IDEMPOTENCY_KEY_CHARS) or str(uuid.uuid4())
        ref = f"admin:{key}"
        with self._db.write() as s:
            user = self._user(s, user_id, lock=True)
            # The user row lock serialises grants to one user, so a replay sees the first one.
            seen = s.scalars(
                select(BillingEventRow.id).where(
                    BillingEventRow.user_id == user.id,
                    BillingEventRow.type == "admin_grant",
                    BillingEventRow.ref == ref,
                )
            ).first()
            if seen is None:
                ledger.grant(s, user, amount, ref, kind="admin_grant")
                _audit(
                    s,
                    actor,
                    "grant_credits",
                    user.id,
                    {"amount": amount, "reason": why, "ref": ref, "credits_available": user.credits_available},
                )
                s.flush()
                log.info("%s granted %d credits to %s: %s", actor, amount, user.id, why)
            return GrantResult(admin_user_view(s, user, events_limit=DEFAULT_EVENTS), duplicate=seen is not None)

    def set_plan(self, actor: str, user_id: str, plan: str, reason: str = "") -> AdminUserView:
        if plan not in PLANS:
            raise ValidationFailed(f"plan: must be one of {', '.join(PLANS)}", field="plan")
        why = _text(reason, "reason")
        with self._db.write() as s:
            user = self._user(s, user_id, lock=True)
            previous = user.plan
            user.plan = plan
            _audit(s, actor, "set_plan", user.id, {"from": previous, "to": plan, "reason": why})
            s.flush()
            log.info("%s set the plan of %s: %s -> %s", actor, user.id, previous, plan)
            return admin_user_view(s, user, events_limit=DEFAULT_EVENTS)

    # -- jobs -----------------------------------------------------------------------------------
    def job(self, job_id: str) -> AdminJobView:
        with self._db.read() as s:
            job = s.get(JobRow, resource_id(job_id, "job"))
            if job is None:
                raise NotFound("job not found")
            return admin_job_view(s, job, max_attempts=self._max_attempts)

    def webhook_deliveries(self, job_id: str) -> tuple[str | None, list[webhooks.DeliveryView]]:
        """Any job's webhook URL and its deliveries in event order."""
        with self._db.read() as s:
            job = s.get(JobRow, resource_id(job_id, "job"))
            if job is None:
                raise NotFound("job not found")
            return job.webhook_url, webhooks.deliveries(s, job.id)

    def dead_letters(self, *, page_size: int = 0, page_token: str = "", job_id: str = "") -> DeadLetterPage:
        if page_size < 0 or page_size > MAX_DEAD_LETTER_PAGE:
            raise ValidationFailed(f"page_size: must be between 1 and {MAX_DEAD_LETTER_PAGE}", field="page_size")
        size = page_size or DEFAULT_DEAD_LETTER_PAGE
        stmt = (
            select(JobItemRow, JobRow.user_id, JobRow.status)
            .join(JobRow, JobRow.id == JobItemRow.job_id)
            .where(dead_letter_clause(self._max_attempts))
        )
        if job_id:
            parsed = canonical_id(job_id)
            if parsed is None:
                raise ValidationFailed("job_id: must be a job id", field="job_id")
            stmt = stmt.where(JobItemRow.job_id == parsed)
        if page_token:
            stamp, last_id = decode_page_token(page_token)
            stmt = stmt.where(
                or_(JobItemRow.updated_at < stamp, and_(JobItemRow.updated_at == stamp, JobItemRow.id < last_id))
            )
        stmt = stmt.order_by(JobItemRow.updated_at.desc(), JobItemRow.id.desc()).limit(size + 1)
        with self._db.read() as s:
            rows = list(s.execute(stmt).all())
        more = len(rows) > size
        rows = rows[:size]
        token = encode_page_token(rows[-1][0].updated_at, rows[-1][0].id) if more and rows else ""
        return DeadLetterPage(
            [
                DeadLetterView(
                    job_id=item.job_id,
                    user_id=user_id,
                    idx=item.idx,
                    attempts=item.attempts,
                    error=item.error,
                    failed_at=item.updated_at,
                    job_status=status,
                )
                for item, user_id, status in rows
            ],
            token,
        )

    def _locked_job(self, session: Session, job_id: str) -> JobRow:
        job = lock_job(session, resource_id(job_id, "job"))
        if job is None:
            raise NotFound("job not found")
        return job

    def requeue(self, actor: str, job_id: str, idx: int, reason: str = "") -> AdminJobView:
        """A failed item back to the execute queue, its credits reserved again (see the proto)."""
        why = _text(reason, "reason")
        with self._db.write() as s:
            job = self._locked_job(s, job_id)
            if job.status not in REQUEUEABLE_JOB_STATES:
                raise InvalidState(
                    f"cannot requeue an item of a job that is {job.status} (needs queued or running); "
                    "a finished job is never resurrected"
                )
            item = s.scalars(
                select(JobItemRow).where(JobItemRow.job_id == job.id, JobItemRow.idx == idx).with_for_update()
            ).one_or_none()
            if item is None:
                raise NotFound(f"the job has no item {idx}")
            if item.status != ItemStatus.FAILED:
                raise InvalidState(f"item {idx} is {item.status}; only a failed item can be requeued")
            if item.attempts == 0:
                raise InvalidState(f"item {idx} was rejected at upload ({item.error}); requeueing cannot help")
            user = lock_user(s, job.user_id)
            round_no = item.requeues + 1
            ledger.reserve_item(s, user, job, item.idx, requeues=round_no)
            now = utcnow()
            previous = {"error": item.error, "attempts": item.attempts}
            item_state.requeue(item, now)
            job.failed_items -= 1
            job.updated_at = now
            if job.package_state != "none":
                # Every item had finished and the set was waiting or being packaged without this
                # one: drop that packaging (its lease owner can no longer record it) and package
                # again once the item finishes.
                job.package_state = "none"
                job.package_lease_owner = None
                job.package_lease_expires_at = None
            _audit(
                s,
                actor,
                "requeue_item",
                f"{job.id}/{idx}",
                {
                    "idx": idx,
                    "round": round_no,
                    "previous": previous,
                    "credits_reserved": job.cost_per_item,
                    "ref": ledger.item_ref(idx, round_no),
                    "reason": why,
                },
            )
            s.flush()
            log.info("%s requeued %s/%d (round %d)", actor, job.id, idx, round_no)
            return admin_job_view(s, job, max_attempts=self._max_attempts)

    def cancel(self, actor: str, job_id: str, reason: str = "") -> AdminJobView:
        why = _text(reason, "reason")
        with self._db.write() as s:
            job = self._locked_job(s, job_id)
            if job.status in job_state.TERMINAL:
                raise InvalidState(f"the job is already {job.status}")
            previous = job.status
            canceled = cancel_open_items(
                s, job, f"canceled by an operator: {why}" if why else "canceled by an operator"
            )
            job_state.move(job, JobStatus.CANCELED)
            _audit(
                s,
                actor,
                "cancel_job",
                job.id,
                {
                    "from": previous,
                    "items_canceled": canceled,
                    "credits_refunded": canceled * job.cost_per_item,
                    "reason": why,
                },
            )
            s.flush()
            log.info("%s canceled job %s (%d items refunded)", actor, job.id, canceled)
            view = admin_job_view(s, job, max_attempts=self._max_attempts)
            input_keys = [i.input_key for i in s.scalars(select(JobItemRow).where(JobItemRow.job_id == job.id))]
        if self._store is not None:
            seal_inputs(self._store, job.id, input_keys)
        return view
