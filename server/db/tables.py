"""The schema. Alembic migrations (server/db/migrations) are the only way it is created; a test
checks that the migrations and these declarations agree.

Counters that can be derived (active jobs, rule slots used) are counted, never stored, so they
cannot drift. Credits are stored on the user row (checked and moved under the row lock) and every
movement is also a ``billing_events`` row; the unique key on (job, type, ref) makes a second spend
or refund of the same item impossible at the database level.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from server.item_records import StoredInstance, StoredRendition, decode_all, encode_all

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone: store naive UTC there)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored: use datetime.now(UTC)")
        return value.astimezone(UTC).replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class RecordList(TypeDecorator[list[Any]]):
    """A JSON list of typed records (``server.item_records``): written with their ``to_json``, read
    back with their ``from_json``, so no row is read or written as loose dicts."""

    impl = JSON
    cache_ok = True

    def __init__(self, record: type[StoredInstance] | type[StoredRendition]) -> None:
        super().__init__()
        self.record = record

    def process_bind_param(self, value: list[Any] | None, dialect: Dialect) -> list[Any] | None:
        if value is None:
            return None
        wrong = next((r for r in value if not isinstance(r, self.record)), None)
        if wrong is not None:
            raise TypeError(f"{self.record.__name__} records only, not {type(wrong).__name__}")
        return encode_all(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> list[Any] | None:
        if value is None:
            return None
        return decode_all(self.record, value, what=f"stored {self.record.__name__}")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        list[Any]: JSON,
        datetime: UTCDateTime,
    }


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    plan: Mapped[str] = mapped_column(String(16))
    auth_provider: Mapped[str] = mapped_column(String(16), default="anon")
    email: Mapped[str | None] = mapped_column(String(320))
    device_hash: Mapped[str | None] = mapped_column(String(128))
    credits_granted: Mapped[int] = mapped_column(Integer)
    credits_available: Mapped[int] = mapped_column(Integer)
    credits_reserved: Mapped[int] = mapped_column(Integer, default=0)
    credits_spent: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint(
            "credits_granted = credits_available + credits_reserved + credits_spent", name="credits_balance"
        ),
        CheckConstraint(
            "credits_available >= 0 AND credits_reserved >= 0 AND credits_spent >= 0", name="credits_nonneg"
        ),
    )


class RuleRow(Base):
    __tablename__ = "rules"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    preset_id: Mapped[str] = mapped_column(String(32))
    concepts: Mapped[dict[str, Any]]
    protect: Mapped[list[Any]]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    preset_id: Mapped[str] = mapped_column(String(32))
    rule_id: Mapped[str | None] = mapped_column(String(36))
    concepts: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    protect: Mapped[list[Any] | None] = mapped_column(JSON)
    instance_choices: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    output_set: Mapped[str | None] = mapped_column(String(32))
    total_items: Mapped[int] = mapped_column(Integer)
    done_items: Mapped[int] = mapped_column(Integer, default=0)
    failed_items: Mapped[int] = mapped_column(Integer, default=0)
    cost_per_item: Mapped[int] = mapped_column(Integer)
    credits_reserved: Mapped[int] = mapped_column(Integer)
    credits_spent: Mapped[int] = mapped_column(Integer, default=0)
    analyzed_concepts: Mapped[list[Any] | None] = mapped_column(JSON)
    set_key: Mapped[str | None] = mapped_column(String(300))
    package_state: Mapped[str] = mapped_column(String(16), default="none")
    """Output-set packaging once every item is finished: none | pending | done | failed."""
    package_attempts: Mapped[int] = mapped_column(Integer, default=0)
    package_lease_owner: Mapped[str | None] = mapped_column(String(64))
    package_lease_expires_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    upload_deadline_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """What the job's objects hold, for the user's storage quota: while ``created``, every upload URL
    at the upload size limit; from confirm-upload the confirmed inputs plus what workers stored."""
    purged_at: Mapped[datetime | None]
    """When the sweeper deleted the job's objects; a purged job no longer counts against quotas."""
    analysis_passes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Analyses requested so far (bounded per job)."""
    analysis_credits_reserved: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Credits reserved by the analysis under way; settled when its last item is finished."""
    analysis_credits_spent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    analysis_pass_items: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Items the analysis under way was charged for."""
    analysis_pass_done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Of those, the ones analysed so far."""
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    """Where this job's events are posted (set by execute), or None."""
    webhook_events: Mapped[list[Any] | None] = mapped_column(JSON)
    """The event types to post (``server.service.webhooks.EVENT_TYPES``)."""
    webhook_secret: Mapped[str | None] = mapped_column(String(64))
    """``whsec_...``: the Standard Webhooks signing secret of this job."""

    __table_args__ = (
        Index("ix_jobs_user_created", "user_id", "created_at"),
        Index("ix_jobs_status_deadline", "status", "upload_deadline_at"),
        Index("ix_jobs_package", "package_state"),
        Index("ix_jobs_purge", "purged_at", "status", "finished_at"),
    )


class JobItemRow(Base):
    """One photo of a job, and its place in the durable work queue (lease columns)."""

    __tablename__ = "job_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    idx: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    stage: Mapped[str] = mapped_column(String(16), default="none")
    """What the queue should do with it: none | analyze | execute."""
    input_key: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str | None] = mapped_column(String(32))
    output_key: Mapped[str | None] = mapped_column(String(300))
    preview_key: Mapped[str | None] = mapped_column(String(300))
    instances: Mapped[list[StoredInstance] | None] = mapped_column(RecordList(StoredInstance))
    renditions: Mapped[list[StoredRendition] | None] = mapped_column(RecordList(StoredRendition))
    protect_check: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    requeues: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Times an operator put the failed item back in the queue; each round has its own ledger refs."""
    available_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime]
    input_bytes: Mapped[int | None] = mapped_column(BigInteger)
    input_sha256: Mapped[str | None] = mapped_column(String(64))
    """The photo confirm-upload accepted; a worker refuses any other bytes under the input key."""
    analyzed_concepts: Mapped[list[Any] | None] = mapped_column(JSON)
    """Concepts whose instances are stored for this item (an analysis of them again costs nothing)."""
    analysis_state: Mapped[str] = mapped_column(String(16), default="none", server_default="none")
    """none | pending | done | failed (``server.wire_enums.AnalysisState``)."""

    __table_args__ = (
        UniqueConstraint("job_id", "idx"),
        Index("ix_job_items_queue", "stage", "available_at"),
        # A job's claimable items in claim order (``available_at`` is set exactly while an item
        # is on the queue): the claim finds each open job's oldest one without reading the rest.
        Index("ix_job_items_job_queue", "job_id", "available_at", "id"),
    )


class QueueTurnRow(Base):
    """When each user's work was last claimed: the queue serves the user waiting longest first.

    Its own table so a claim locks nothing the money paths lock (user, job rows)."""

    __tablename__ = "queue_turns"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    served_at: Mapped[datetime]


class WebhookDeliveryRow(Base):
    """The webhook outbox: one event of one job, written in the transaction that changed the state,
    then posted by a sender until the receiver acknowledges it (2xx) or the attempts run out."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    """``msg_<hex>``: the ``webhook-id`` header, the same on every attempt (receivers dedupe by it)."""
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    """Order of the job's events; an event is sent only once every earlier one is settled."""
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    url: Mapped[str] = mapped_column(String(2048))
    state: Mapped[str] = mapped_column(String(16))
    """pending | delivered | failed (attempts exhausted or the address is not allowed)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    log: Mapped[list[Any]] = mapped_column(JSON)
    """One entry per attempt: ``{at, status, error, ms}``."""
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("job_id", "seq"),
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
    )


class BillingEventRow(Base):
    __tablename__ = "billing_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str | None] = mapped_column(String(36))
    type: Mapped[str] = mapped_column(String(16))
    """grant | reserve | spend | refund | admin_grant."""
    amount: Mapped[int] = mapped_column(Integer)
    ref: Mapped[str] = mapped_column(String(128))
    """What the movement is for (``job``, ``item:3``, an admin action id): unique per job and type."""
    created_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("user_id", "job_id", "type", "ref"),)


class CallbackReceiptRow(Base):
    """First answer to each callback idempotency key: a replay returns it and changes nothing."""

    __tablename__ = "callback_receipts"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    response: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class AuditRow(Base):
    """Operator actions that are not money movements (plan changes, requeues, forced cancels)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class SessionFamilyRow(Base):
    """One signed-in app install: the chain of refresh tokens rotated from one sign-up. Revoking the
    family ends every token of the chain, the one in the attacker's hands and the legitimate one."""

    __tablename__ = "session_families"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    refreshed_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(64))


class RefreshTokenRow(Base):
    """A refresh token, by the SHA-256 of its value (the value itself is never stored). Spent once:
    a second use of a spent token revokes its family."""

    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[str] = mapped_column(ForeignKey("session_families.id", ondelete="CASCADE"), index=True)
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    spent_at: Mapped[datetime | None]


class DeviceGrantRow(Base):
    """The device (client ``device_hash``) that has had its sign-up credits, and the account that got
    them. Not a foreign key: the grant outlives a deleted account, or deleting it would re-arm it."""

    __tablename__ = "device_grants"

    device_hash: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36))
    granted_at: Mapped[datetime]


class IdempotencyKeyRow(Base):
    """A client's ``Idempotency-Key`` per user: the request it came with (``fingerprint``) and, once
    the effect committed (in the same transaction), the answer to replay. ``pending`` rows belong to
    the attempt ``owner`` until ``locked_until``; a crashed attempt's row is taken over after that."""

    __tablename__ = "idempotency_keys"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    operation: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    """pending | done."""
    owner: Mapped[str] = mapped_column(String(36))
    locked_until: Mapped[datetime]
    response: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
