"""Anonymous sign-up and the user's state (/auth/anon, /me).

Sign-up credits are granted once per device: the first account a ``device_hash`` signs up gets them,
and every later sign-up from that device gets a new, empty account (no credits; rules and jobs of
its own). The account of a device is never handed out again from its hash, which any client can
send: an install gets its account back only with that account's refresh token (``/auth/refresh``).
A sign-up without a ``device_hash`` is granted as before; the sign-up rate limit bounds those.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from server.clock import utcnow
from server.config.sections import CreditsConfig
from server.db.engine import Database
from server.db.tables import BillingEventRow, DeviceGrantRow, UserRow
from server.errors import ValidationFailed
from server.plans import DEFAULT_PLAN, limits_for
from server.service import quotas
from server.service.locking import count_active_jobs, count_rules, get_user
from server.service.sessions import IssuedRefresh, Sessions
from server.service.tokens import IssuedToken
from server.service.views import UserView

MAX_DEVICE_HASH_CHARS = 128


@dataclass(frozen=True)
class NewUser:
    user: UserView
    token: IssuedToken
    """The access token."""
    refresh: IssuedRefresh
    signup_credits: bool
    """Whether this sign-up was granted the starting credits (false for a device seen before)."""


def user_view(
    session: Session, row: UserRow, *, analyze_items_per_credit: int = CreditsConfig.analyze_items_per_credit
) -> UserView:
    limits = limits_for(row.plan)
    return UserView(
        user_id=row.id,
        plan=row.plan,
        credits_available=row.credits_available,
        credits_reserved=row.credits_reserved,
        credits_spent=row.credits_spent,
        active_jobs=count_active_jobs(session, row.id),
        max_concurrency=limits.max_concurrency,
        rule_slots_used=count_rules(session, row.id),
        rule_slots_max=limits.rule_slots,
        max_batch=limits.max_batch,
        stored_bytes=quotas.stored_bytes(session, row.id),
        stored_bytes_max=limits.max_stored_bytes,
        live_jobs=quotas.live_jobs(session, row.id),
        live_jobs_max=limits.max_live_jobs,
        analyze_items_per_credit=analyze_items_per_credit,
    )


class Accounts:
    def __init__(
        self,
        db: Database,
        sessions: Sessions,
        starting_credits: int,
        *,
        analyze_items_per_credit: int = CreditsConfig.analyze_items_per_credit,
    ) -> None:
        self._db = db
        self._sessions = sessions
        self._starting_credits = starting_credits
        self._analyze_items_per_credit = analyze_items_per_credit

    def _first_of_device(self, session: Session, device_hash: str, user_id: str) -> bool:
        """Record ``user_id`` as the device's granted account unless one is recorded already.

        One statement that cannot race: a concurrent sign-up of the same device waits for this
        transaction (PostgreSQL's unique index) or for the write lock (SQLite) and then inserts nothing.
        """
        insert = postgresql.insert if self._db.is_postgres else sqlite.insert
        row = {"device_hash": device_hash, "user_id": user_id, "granted_at": utcnow()}
        stmt = insert(DeviceGrantRow).values(row).on_conflict_do_nothing(index_elements=["device_hash"])
        return session.execute(stmt.returning(DeviceGrantRow.device_hash)).scalar_one_or_none() is not None

    def create_anonymous(self, device_hash: str | None = None) -> NewUser:
        device_hash = device_hash or None
        if device_hash is not None and (len(device_hash) > MAX_DEVICE_HASH_CHARS or not device_hash.isprintable()):
            raise ValidationFailed(
                f"device_hash: must be at most {MAX_DEVICE_HASH_CHARS} printable characters",
                field="device_hash",
            )
        now = utcnow()
        user_id = str(uuid.uuid4())
        with self._db.write() as s:
            granted = device_hash is None or self._first_of_device(s, device_hash, user_id)
            credits = self._starting_credits if granted else 0
            row = UserRow(
                id=user_id,
                plan=DEFAULT_PLAN,
                auth_provider="anon",
                device_hash=device_hash or None,
                credits_granted=credits,
                credits_available=credits,
                credits_reserved=0,
                credits_spent=0,
                created_at=now,
            )
            s.add(row)
            s.flush()  # the user row first: the ledger row references it
            if credits:
                s.add(BillingEventRow(user_id=user_id, type="grant", amount=credits, ref="signup", created_at=now))
            started = self._sessions.start(s, user_id)
            s.flush()
            view = self._view(s, row)
        return NewUser(view, started.access, started.refresh, granted)

    def me(self, user_id: str) -> UserView:
        with self._db.read() as s:
            return self._view(s, get_user(s, user_id))

    def _view(self, session: Session, row: UserRow) -> UserView:
        return user_view(session, row, analyze_items_per_credit=self._analyze_items_per_credit)
