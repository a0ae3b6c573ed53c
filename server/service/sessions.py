"""Sessions of the mobile app: a short-lived access token (a JWT, see ``tokens``) and a rotating
refresh token that renews it.

A refresh token is 256 random bits, opaque to the client and stored only as its SHA-256: with that
much entropy a fast hash is enough, and a leak of the table reveals no usable token. Every refresh
spends the token it was given and issues the next one of the same family (one family per sign-up).
A spent token coming back means two parties hold the chain (a stolen copy, or a client replaying an
old one), and the service cannot tell which is the owner: the whole family is revoked, so the new
token stops working too and the account can only be reached again by whoever still has nothing to
lose. Access tokens already issued stay valid until they expire (minutes), as they are checked
without the database.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from server.clock import utcnow
from server.db.engine import Database
from server.db.tables import RefreshTokenRow, SessionFamilyRow
from server.errors import InvalidToken
from server.service.tokens import IssuedToken, TokenService

log = logging.getLogger(__name__)

# Lets secret scanners recognise a leaked token; the rest is token_urlsafe(32) (43 characters).
REFRESH_PREFIX = "s3r_"
MAX_REFRESH_TOKEN_CHARS = 128


@dataclass(frozen=True)
class IssuedRefresh:
    token: str
    expires_at: datetime


@dataclass(frozen=True)
class IssuedSession:
    user_id: str
    access: IssuedToken
    refresh: IssuedRefresh


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(self, db: Database, tokens: TokenService, refresh_ttl_s: int) -> None:
        self._db = db
        self._tokens = tokens
        self._refresh_ttl = timedelta(seconds=refresh_ttl_s)

    def _new_refresh(self, session: Session, family_id: str, now: datetime) -> IssuedRefresh:
        token = REFRESH_PREFIX + secrets.token_urlsafe(32)
        expires = now + self._refresh_ttl
        session.add(RefreshTokenRow(token_hash=_digest(token), family_id=family_id, issued_at=now, expires_at=expires))
        return IssuedRefresh(token, expires)

    def start(self, session: Session, user_id: str) -> IssuedSession:
        """A new family for a user just created in ``session``'s transaction (committed with it)."""
        now = utcnow()
        family_id = str(uuid.uuid4())
        session.add(SessionFamilyRow(id=family_id, user_id=user_id, created_at=now))
        session.flush()  # the family row first: the token row references it
        refresh = self._new_refresh(session, family_id, now)
        return IssuedSession(user_id, self._tokens.issue(user_id), refresh)

    def refresh(self, refresh_token: str) -> IssuedSession:
        """Spend ``refresh_token`` and issue a new access token and refresh token of its family."""
        if (
            not refresh_token
            or len(refresh_token) > MAX_REFRESH_TOKEN_CHARS
            or not refresh_token.startswith(REFRESH_PREFIX)
        ):
            raise InvalidToken("the refresh token is not valid")
        now = utcnow()
        reused_family: str | None = None
        issued: IssuedRefresh | None = None
        user_id = ""
        with self._db.write() as s:
            row = s.scalars(
                select(RefreshTokenRow).where(RefreshTokenRow.token_hash == _digest(refresh_token)).with_for_update()
            ).one_or_none()
            if row is None:
                raise InvalidToken("the refresh token is not valid")
            family = s.scalars(
                select(SessionFamilyRow).where(SessionFamilyRow.id == row.family_id).with_for_update()
            ).one()
            if family.revoked_at is not None:
                raise InvalidToken("this session was revoked; sign in again")
            if row.spent_at is not None:
                # Committed before answering: the revocation must hold even though the call fails.
                family.revoked_at = now
                family.revoked_reason = "refresh token reused"
                reused_family = family.id
            elif row.expires_at <= now:
                raise InvalidToken("the refresh token has expired; sign in again")
            else:
                row.spent_at = now
                family.refreshed_at = now
                issued = self._new_refresh(s, family.id, now)
                user_id = family.user_id
        if reused_family is not None:
            log.warning("session family %s revoked: a spent refresh token was used again", reused_family)
            raise InvalidToken("this refresh token was already used; the session is revoked, sign in again")
        assert issued is not None
        return IssuedSession(user_id, self._tokens.issue(user_id), issued)


def sweep_refresh_tokens(db: Database, *, limit: int = 1000) -> int:
    """Delete up to ``limit`` expired refresh tokens (spent or not); returns the count. A family
    with no token left cannot be refreshed again, so its row goes too."""
    now = utcnow()
    with db.write() as s:
        hashes = list(
            s.scalars(select(RefreshTokenRow.token_hash).where(RefreshTokenRow.expires_at < now).limit(limit))
        )
        if hashes:
            s.execute(delete(RefreshTokenRow).where(RefreshTokenRow.token_hash.in_(hashes)))
            live = select(RefreshTokenRow.family_id).distinct()
            s.execute(delete(SessionFamilyRow).where(SessionFamilyRow.id.not_in(live)))
    return len(hashes)
