"""Idempotency keys on the calls that create or move money (Stripe's semantics, kept in the database
so they hold across every shim and JobService replica, and for gRPC clients too).

A call with a key runs in three steps:

1. :meth:`Idempotency.begin`, one short transaction, claims the key for this attempt (a ``pending``
   row with a lease), or finds the stored answer to replay, or refuses: the key came with another
   request (IDEMPOTENCY_MISMATCH) or another attempt with it is still running (INVALID_STATE). The
   primary key (user, key) lets only one of two concurrent first attempts insert the row.
2. The effect runs in its own transaction, and the service calls the :class:`Record` it was given
   inside that transaction: the answer is stored and the row marked ``done`` only if this attempt
   still owns the key, so effect and answer commit together or not at all.
3. An error releases the key (its row is deleted; the effect rolled back, so nothing happened) and a
   retry runs again. Unlike Stripe, error answers are not replayed: they have no effect to protect,
   and a retry after e.g. a finished job frees a concurrency slot should be allowed to succeed.

A crash between 1 and 2 leaves a ``pending`` row; after its lease a retry takes it over. Rows are
kept ``ttl_s`` after the answer (24 hours by default) and then swept.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.clock import utcnow
from server.db.engine import Database, DatabaseUnavailable
from server.db.tables import IdempotencyKeyRow
from server.errors import IdempotencyMismatch, InvalidState, ValidationFailed
from server.service.locking import get_user

log = logging.getLogger(__name__)

MAX_KEY_CHARS = 255
KEY_FIELD = "Idempotency-Key"

T = TypeVar("T")

Record = Callable[[Session, T], None]
"""Given to a service call: stores the call's answer in the transaction of its effect."""


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_CHARS or not (key.isascii() and key.isprintable()):
        raise ValidationFailed(f"{KEY_FIELD}: 1 to {MAX_KEY_CHARS} printable ASCII characters", field=KEY_FIELD)
    return key


def fingerprint(operation: str, request: bytes) -> str:
    """What "the same request" means: the same operation with the same encoded request."""
    return hashlib.sha256(operation.encode() + b"\0" + request).hexdigest()


@dataclass(frozen=True)
class Replay:
    """The stored answer of the first attempt with this key."""

    response: bytes


@dataclass
class Claim:
    """This attempt owns the key; :meth:`recorder` stores its answer with its effect."""

    user_id: str
    key: str
    owner: str
    ttl: timedelta
    response: bytes | None = field(default=None, init=False)

    def recorder(self, encode: Callable[[T], bytes]) -> Record[T]:
        def record(session: Session, result: T) -> None:
            self.complete(session, encode(result))

        return record

    def complete(self, session: Session, response: bytes) -> None:
        row = session.scalars(
            select(IdempotencyKeyRow)
            .where(IdempotencyKeyRow.user_id == self.user_id, IdempotencyKeyRow.key == self.key)
            .with_for_update()
        ).one_or_none()
        if row is None or row.owner != self.owner or row.state != "pending":
            # Our lease ran out and a retry took the key: raising rolls our effect back.
            raise InvalidState("a retry with this Idempotency-Key took over this request; its answer is the one kept")
        now = utcnow()
        row.state = "done"
        row.response = response
        row.expires_at = now + self.ttl
        self.response = response


class Idempotency:
    def __init__(self, db: Database, *, ttl_s: int, lease_s: float) -> None:
        self._db = db
        self._ttl = timedelta(seconds=ttl_s)
        self._lease = timedelta(seconds=lease_s)

    def begin(self, user_id: str, key: str, *, operation: str, request: bytes) -> Claim | Replay:
        check_key(key)
        digest = fingerprint(operation, request)
        try:
            with self._db.write() as s:
                return self._claim(s, user_id, key, operation, digest)
        except IntegrityError:
            # PostgreSQL: a concurrent first attempt inserted the key and committed before us.
            with self._db.write() as s:
                return self._claim(s, user_id, key, operation, digest)

    def _claim(self, s: Session, user_id: str, key: str, operation: str, digest: str) -> Claim | Replay:
        now = utcnow()
        row = s.scalars(
            select(IdempotencyKeyRow)
            .where(IdempotencyKeyRow.user_id == user_id, IdempotencyKeyRow.key == key)
            .with_for_update()
        ).one_or_none()
        owner = str(uuid.uuid4())
        if row is None:
            get_user(s, user_id)  # the key belongs to a user row; a deleted user's token is refused here
            s.add(self._fresh(IdempotencyKeyRow(user_id=user_id, key=key), operation, digest, owner, now))
            s.flush()
            return Claim(user_id, key, owner, self._ttl)
        if row.expires_at <= now:
            self._fresh(row, operation, digest, owner, now)  # kept past its time: the key is new again
            return Claim(user_id, key, owner, self._ttl)
        if row.fingerprint != digest:
            raise IdempotencyMismatch(
                f"this Idempotency-Key was first sent with another request ({row.operation}); "
                "use a new key for a new request"
            )
        if row.state == "done" and row.response is not None:
            return Replay(row.response)
        if row.locked_until > now:
            raise InvalidState("a request with this Idempotency-Key is still in progress; retry in a moment")
        # The attempt that held the key stopped (crashed) before its effect committed: take it over.
        row.owner = owner
        row.locked_until = now + self._lease
        return Claim(user_id, key, owner, self._ttl)

    def _fresh(
        self, row: IdempotencyKeyRow, operation: str, digest: str, owner: str, now: datetime
    ) -> IdempotencyKeyRow:
        row.operation = operation
        row.fingerprint = digest
        row.state = "pending"
        row.owner = owner
        row.locked_until = now + self._lease
        row.response = None
        row.created_at = now
        row.expires_at = now + self._ttl
        return row

    def release(self, claim: Claim) -> None:
        """The attempt failed before its effect committed: free the key for a retry."""
        try:
            with self._db.write() as s:
                s.execute(
                    delete(IdempotencyKeyRow).where(
                        IdempotencyKeyRow.user_id == claim.user_id,
                        IdempotencyKeyRow.key == claim.key,
                        IdempotencyKeyRow.owner == claim.owner,
                        IdempotencyKeyRow.state == "pending",
                    )
                )
        except DatabaseUnavailable as e:
            # The lease still frees the key, a little later.
            log.warning("idempotency key not released (%s); its lease will expire", e)


def sweep_idempotency_keys(db: Database, *, limit: int = 1000) -> int:
    """Delete up to ``limit`` keys past their time; returns the count."""
    with db.write() as s:
        expired = s.execute(
            select(IdempotencyKeyRow.user_id, IdempotencyKeyRow.key)
            .where(IdempotencyKeyRow.expires_at < utcnow())
            .limit(limit)
        ).all()
        for user_id, key in expired:
            s.execute(
                delete(IdempotencyKeyRow).where(IdempotencyKeyRow.user_id == user_id, IdempotencyKeyRow.key == key)
            )
    return len(expired)
