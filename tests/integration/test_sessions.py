"""Sessions of the mobile app on each database: short access tokens renewed with rotating refresh
tokens, reuse of a spent refresh token revoking its family, and sign-up credits once per device."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from sqlalchemy import func, select, update

from server.db.tables import RefreshTokenRow, SessionFamilyRow
from server.errors import InvalidToken
from server.service.sweeper import delete_expired_records
from tests.support.invariants import check_invariants
from tests.support.live_rest import LiveRest, bearer, err, live_rest, ok
from tests.support.stack import TEST_SECRET, Stack

pytestmark = pytest.mark.integration

WALL_WHITE = {"Wall": {"action": "recolor", "value": "white"}}


@pytest.fixture
def live(database_url: str, tmp_path: Path) -> Iterator[LiveRest]:
    with live_rest(database_url, tmp_path / "data") as served:
        yield served


def _expired_access_token(user_id: str) -> str:
    """What the app holds after a night offline: a real token of the service, past its exp."""
    now = datetime.now(UTC)
    claims = {"sub": user_id, "iat": now - timedelta(hours=1), "exp": now - timedelta(minutes=30), "iss": "s3"}
    return jwt.encode(claims, TEST_SECRET, "HS256")


def test_refresh_renews_the_session_and_keeps_the_account(live: LiveRest) -> None:
    """An expired access token is refused; the refresh token gets a new one for the same account,
    with its rules and jobs, and the chain goes on refresh after refresh."""
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        anon = ok(http.post("/auth/anon"), 201)
        user_id, refresh = anon["user_id"], anon["refresh_token"]
        auth = bearer(anon["token"])
        rule_id = ok(
            http.post("/rules", json={"name": "w", "preset_id": "interior", "concepts": WALL_WHITE}, headers=auth), 201
        )["rule_id"]
        job_id = ok(http.post("/jobs", json={"preset": "interior", "item_count": 2}, headers=auth), 201)["job_id"]

        err(http.get("/me", headers=bearer(_expired_access_token(user_id))), 401, "INVALID_TOKEN")
        last_expiry = anon["refresh_expires_at"]
        for _ in range(3):
            renewed = ok(http.post("/auth/refresh", json={"refresh_token": refresh}))
            assert renewed["user_id"] == user_id
            assert renewed["refresh_token"] != refresh and renewed["token"]
            assert renewed["refresh_expires_at"] >= last_expiry  # sliding: each refresh extends the session
            refresh, last_expiry = renewed["refresh_token"], renewed["refresh_expires_at"]
            auth = bearer(renewed["token"])
            assert ok(http.get("/me", headers=auth))["user_id"] == user_id
        assert [r["rule_id"] for r in ok(http.get("/rules", headers=auth))["rules"]] == [rule_id]
        assert [j["job_id"] for j in ok(http.get("/jobs", headers=auth))["jobs"]] == [job_id]


def test_a_refresh_token_used_twice_revokes_the_session(live: LiveRest) -> None:
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        anon = ok(http.post("/auth/anon"), 201)
        first = anon["refresh_token"]
        second = ok(http.post("/auth/refresh", json={"refresh_token": first}))["refresh_token"]
        # The spent token again (a stolen copy, or a replay): refused, and the family is revoked ...
        message = err(http.post("/auth/refresh", json={"refresh_token": first}), 401, "INVALID_TOKEN")
        assert "revoked" in message
        # ... so the newest token, the one the owner (or the thief) holds, is dead too.
        err(http.post("/auth/refresh", json={"refresh_token": second}), 401, "INVALID_TOKEN")
        err(http.post("/auth/refresh", json={"refresh_token": first}), 401, "INVALID_TOKEN")
        # Another user's session is not touched.
        other = ok(http.post("/auth/anon"), 201)
        ok(http.post("/auth/refresh", json={"refresh_token": other["refresh_token"]}))
    with live.stack.db.read() as s:
        revoked = s.scalar(
            select(func.count()).select_from(SessionFamilyRow).where(SessionFamilyRow.revoked_at.is_not(None))
        )
    assert revoked == 1


@pytest.mark.parametrize(
    "body",
    [
        {"refresh_token": "s3r_not-a-token"},
        {"refresh_token": "x" * 5000},
        {"refresh_token": ""},
    ],
)
def test_unknown_refresh_tokens_are_invalid(live: LiveRest, body: dict[str, str]) -> None:
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        err(http.post("/auth/refresh", json=body), 401, "INVALID_TOKEN")
        err(http.post("/auth/refresh", json={}), 400, "VALIDATION_ERROR")
        anon = ok(http.post("/auth/anon"), 201)
        # An access token is no refresh token.
        err(http.post("/auth/refresh", json={"refresh_token": anon["token"]}), 401, "INVALID_TOKEN")


def test_two_concurrent_refreshes_with_one_token_revoke_the_family(stack: Stack) -> None:
    """Two holders racing with the same token: at most one wins, and the loser's reuse revokes all."""
    created = stack.services.accounts.create_anonymous()
    barrier = threading.Barrier(2)
    outcomes: list[str] = []
    renewed: list[str] = []

    def refresh() -> None:
        barrier.wait()
        try:
            renewed.append(stack.services.sessions.refresh(created.refresh.token).refresh.token)
            outcomes.append("ok")
        except InvalidToken:
            outcomes.append("invalid")

    threads = [threading.Thread(target=refresh) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["invalid", "ok"]
    with pytest.raises(InvalidToken):
        stack.services.sessions.refresh(renewed[0])


def test_expired_refresh_tokens_are_refused_and_swept(stack: Stack) -> None:
    created = stack.services.accounts.create_anonymous()
    kept = stack.services.accounts.create_anonymous()
    past = datetime.now(UTC) - timedelta(seconds=1)
    with stack.db.write() as s:
        s.execute(
            update(RefreshTokenRow)
            .where(
                RefreshTokenRow.family_id.in_(
                    select(SessionFamilyRow.id).where(SessionFamilyRow.user_id == created.user.user_id)
                )
            )
            .values(expires_at=past)
        )
    with pytest.raises(InvalidToken, match="expired"):
        stack.services.sessions.refresh(created.refresh.token)
    assert delete_expired_records(stack.db) == 1
    with stack.db.read() as s:
        families = list(s.scalars(select(SessionFamilyRow.user_id)))
    assert families == [kept.user.user_id]
    stack.services.sessions.refresh(kept.refresh.token)


def test_refresh_tokens_are_stored_hashed(stack: Stack) -> None:
    created = stack.services.accounts.create_anonymous()
    with stack.db.read() as s:
        stored = list(s.scalars(select(RefreshTokenRow.token_hash)))
    assert stored and created.refresh.token not in stored
    assert all(created.refresh.token[4:] not in h for h in stored)


def test_sign_up_credits_are_granted_once_per_device(live: LiveRest) -> None:
    """Re-signing up with the same device_hash (an app reinstall, or a farm of sign-ups) gets a new,
    empty account: never the old account, never new credits. The old account comes back only with
    its refresh token."""
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        first = ok(http.post("/auth/anon", json={"device_hash": "device-a"}), 201)
        assert (first["credits"], first["signup_credits"]) == (100, True)
        again = [ok(http.post("/auth/anon", json={"device_hash": "device-a"}), 201) for _ in range(3)]
        assert {a["user_id"] for a in again}.isdisjoint({first["user_id"]})
        assert len({a["user_id"] for a in again}) == 3
        assert all((a["credits"], a["signup_credits"]) == (0, False) for a in again)
        # The empty account works, but cannot buy anything with credits it was not given.
        auth = bearer(again[0]["token"])
        assert ok(http.get("/me", headers=auth))["credits"] == 0
        err(http.post("/jobs", json={"preset": "interior", "item_count": 1}, headers=auth), 402, "INSUFFICIENT_CREDITS")
        # Another device is granted; the first account is reached with its refresh token only.
        other = ok(http.post("/auth/anon", json={"device_hash": "device-b"}), 201)
        assert other["credits"] == 100
        back = ok(http.post("/auth/refresh", json={"refresh_token": first["refresh_token"]}))
        assert back["user_id"] == first["user_id"]
        assert ok(http.get("/me", headers=bearer(back["token"])))["credits"] == 100
    check_invariants(live.stack.db)


def test_concurrent_sign_ups_of_one_device_are_granted_once(stack: Stack) -> None:
    threads_n = 6
    barrier = threading.Barrier(threads_n)
    granted: list[bool] = []

    def sign_up() -> None:
        barrier.wait()
        granted.append(stack.services.accounts.create_anonymous("device-race").signup_credits)

    threads = [threading.Thread(target=sign_up) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(granted) == [False] * (threads_n - 1) + [True]
    check_invariants(stack.db)
