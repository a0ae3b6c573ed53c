"""Anonymous sign-up and the user's state (/auth/anon, /me)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from server.clock import utcnow
from server.config import Settings
from server.db.engine import Database
from server.db.tables import BillingEventRow, UserRow
from server.errors import ValidationFailed
from server.plans import DEFAULT_PLAN, limits_for
from server.service import quotas
from server.service.locking import count_active_jobs, count_rules, get_user
from server.service.tokens import IssuedToken, TokenService
from server.service.views import UserView

MAX_DEVICE_HASH_CHARS = 128


@dataclass(frozen=True)
class NewUser:
    user: UserView
    token: IssuedToken


def user_view(
    session: Session, row: UserRow, *, analyze_items_per_credit: int = Settings.analyze_items_per_credit
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
        tokens: TokenService,
        starting_credits: int,
        *,
        analyze_items_per_credit: int = Settings.analyze_items_per_credit,
    ) -> None:
        self._db = db
        self._tokens = tokens
        self._starting_credits = starting_credits
        self._analyze_items_per_credit = analyze_items_per_credit

    def create_anonymous(self, device_hash: str | None = None) -> NewUser:
        if device_hash is not None and (len(device_hash) > MAX_DEVICE_HASH_CHARS or not device_hash.isprintable()):
            raise ValidationFailed(
                f"device_hash: must be at most {MAX_DEVICE_HASH_CHARS} printable characters",
                field="device_hash",
            )
        now = utcnow()
        user_id = str(uuid.uuid4())
        credits = self._starting_credits
        with self._db.write() as s:
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
            s.add(BillingEventRow(user_id=user_id, type="grant", amount=credits, ref="signup", created_at=now))
            s.flush()
            view = self._view(s, row)
        return NewUser(view, self._tokens.issue(user_id))

    def me(self, user_id: str) -> UserView:
        with self._db.read() as s:
            return self._view(s, get_user(s, user_id))

    def _view(self, session: Session, row: UserRow) -> UserView:
        return user_view(session, row, analyze_items_per_credit=self._analyze_items_per_credit)
