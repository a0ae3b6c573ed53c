"""JWT handling: every way a token can be wrong is a 401 with the right code."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from server import clock
from server.errors import AuthRequired, InvalidToken
from server.service.tokens import ISSUER, TokenService

SECRET = "s" * 64


def _claims(**overrides: object) -> dict[str, object]:
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": "user-1",
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(hours=1),
        "iss": ISSUER,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(doc: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc, default=str).encode()).rstrip(b"=").decode()


def test_issue_and_verify() -> None:
    tokens = TokenService(SECRET, 3600)
    issued = tokens.issue("user-1")
    assert tokens.verify(issued.token) == "user-1"
    assert tokens.user_from_authorization(f"Bearer {issued.token}") == "user-1"
    header = jwt.get_unverified_header(issued.token)
    assert header["alg"] == "HS256"


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        TokenService("short", 60)


@pytest.mark.parametrize(
    "token",
    [
        jwt.encode(_claims(exp=datetime.now(UTC) - timedelta(minutes=5)), SECRET, algorithm="HS256"),
        jwt.encode(_claims(nbf=datetime.now(UTC) + timedelta(days=1)), SECRET, algorithm="HS256"),
        jwt.encode(_claims(), "w" * 48, algorithm="HS256"),
        jwt.encode(_claims(sub=None), SECRET, algorithm="HS256"),
        jwt.encode(_claims(sub=""), SECRET, algorithm="HS256"),
        jwt.encode(_claims(exp=None), SECRET, algorithm="HS256"),
        jwt.encode(_claims(iss="someone-else"), SECRET, algorithm="HS256"),
        jwt.encode(_claims(), SECRET, algorithm="HS512"),
        _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(_claims()) + ".",
        "not.a.token",
        "",
    ],
    ids=[
        "expired",
        "not-yet-valid",
        "wrong-key",
        "no-sub",
        "empty-sub",
        "no-exp",
        "wrong-issuer",
        "hs512",
        "alg-none",
        "garbage",
        "empty",
    ],
)
def test_bad_tokens_are_invalid(token: str) -> None:
    with pytest.raises(InvalidToken):
        TokenService(SECRET, 3600).verify(token)


def test_tampered_payload_is_invalid() -> None:
    tokens = TokenService(SECRET, 3600)
    header, _, signature = tokens.issue("user-1").token.split(".")
    forged = f"{header}.{_b64(_claims(sub='admin'))}.{signature}"
    with pytest.raises(InvalidToken):
        tokens.verify(forged)


def test_rs256_token_signed_with_a_public_key_is_refused() -> None:
    """HS/RS confusion: a token 'signed' with HMAC over a public key, or a real RS256 one, never passes."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rs_token = jwt.encode(_claims(), key, algorithm="RS256")
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    tokens = TokenService(public_pem.decode(), 3600)
    with pytest.raises(InvalidToken):
        tokens.verify(rs_token)


@pytest.mark.parametrize(
    ("header", "error"),
    [(None, AuthRequired), ("", AuthRequired), ("Basic abc", InvalidToken), ("Bearer ", InvalidToken)],
)
def test_authorization_header_shapes(header: str | None, error: type[Exception]) -> None:
    with pytest.raises(error):
        TokenService(SECRET, 3600).user_from_authorization(header)


def test_stream_tokens_are_for_one_job_and_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    from server.service import tokens as module

    tokens = TokenService(SECRET, 3600, stream_ttl_s=60)
    issued = tokens.issue_stream("u1", "job-1")
    assert tokens.verify_stream(issued.token, "job-1").user_id == "u1"
    assert tokens.verify_stream(issued.token, None).expires_at == issued.expires_at.replace(microsecond=0)
    with pytest.raises(InvalidToken, match="another job"):
        tokens.verify_stream(issued.token, "job-2")
    with pytest.raises(InvalidToken):
        tokens.verify(issued.token)  # never an access token
    with pytest.raises(InvalidToken):
        tokens.verify_stream(tokens.issue("u1").token, "job-1")  # and an access token is no stream token
    real_now = clock.utcnow
    monkeypatch.setattr(module, "utcnow", lambda: real_now() - timedelta(seconds=120))
    stale = tokens.issue_stream("u1", "job-1")
    monkeypatch.setattr(module, "utcnow", real_now)
    with pytest.raises(InvalidToken, match="expired"):
        tokens.verify_stream(stale.token, "job-1")
