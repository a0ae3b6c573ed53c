"""JWT attacks over HTTP against the real stack, beyond the ones ``test_rest_api.py`` already sends
(garbage, wrong secret, expired, alg none, one tampered character): every one is 401 INVALID_TOKEN on
every authenticated route, and nothing about the user leaks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.live_rest import LiveRest, bearer, err, live_rest, ok, sign_up
from tests.support.stack import TEST_SECRET

pytestmark = pytest.mark.integration

AUTHENTICATED_GETS = ["/me", "/presets", "/presets/interior", "/rules", "/jobs"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRest]:
    root: Path = tmp_path_factory.mktemp("tokens")
    with live_rest(f"sqlite:///{root / 's3.db'}", root / "data") as served:
        yield served


def _claims(subject: str, **changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {"sub": subject, "iat": now, "nbf": now, "exp": now + timedelta(hours=1), "iss": "s3"}
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def _rsa_pair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def _hand_signed(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    """HS256 over a header PyJWT would refuse to write (e.g. ``alg: RS256`` signed with HMAC)."""

    def part(value: dict[str, Any]) -> str:
        raw = json.dumps(value, default=lambda d: int(d.timestamp())).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = f"{part(header)}.{part(claims)}"
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


def _attacks(user_id: str) -> dict[str, str]:
    private, public = _rsa_pair()
    hour = timedelta(hours=1)
    now = datetime.now(UTC)
    return {
        "not yet valid (nbf in an hour)": jwt.encode(_claims(user_id, nbf=now + hour), TEST_SECRET, "HS256"),
        "issued in the future": jwt.encode(_claims(user_id, iat=now + hour, nbf=None), TEST_SECRET, "HS256"),
        "missing sub": jwt.encode(_claims(user_id, sub=None), TEST_SECRET, "HS256"),
        "empty sub": jwt.encode(_claims(""), TEST_SECRET, "HS256"),
        "numeric sub": _hand_signed({"alg": "HS256", "typ": "JWT"}, {**_claims("x"), "sub": 12}, TEST_SECRET.encode()),
        "missing exp": jwt.encode(_claims(user_id, exp=None), TEST_SECRET, "HS256"),
        "wrong issuer": jwt.encode(_claims(user_id, iss="someone-else"), TEST_SECRET, "HS256"),
        "HS512 with the right secret": jwt.encode(_claims(user_id), TEST_SECRET, "HS512"),
        "RS256 with an attacker's key": jwt.encode(_claims(user_id), private, "RS256"),
        "HS256 keyed with an RSA public key": _hand_signed({"alg": "HS256", "typ": "JWT"}, _claims(user_id), public),
        "alg RS256 header, HMAC signature": _hand_signed(
            {"alg": "RS256", "typ": "JWT"}, _claims(user_id), TEST_SECRET.encode()
        ),
        "alg None (capitalised), no signature": _hand_signed({"alg": "None"}, _claims(user_id), b"").rsplit(".", 1)[0]
        + ".",
        "signature stripped": jwt.encode(_claims(user_id), TEST_SECRET, "HS256").rsplit(".", 1)[0] + ".",
        "expired beyond the leeway": jwt.encode(
            _claims(user_id, exp=now - timedelta(seconds=30)), TEST_SECRET, "HS256"
        ),
    }


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # HS512 with our 52-byte key
def test_forged_tokens_are_refused_on_every_route(live: LiveRest) -> None:
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        auth, user_id = sign_up(http)
        job_id = ok(http.post("/jobs", json={"preset": "interior", "item_count": 1}, headers=auth), 201)["job_id"]
        routes = [*AUTHENTICATED_GETS, f"/jobs/{job_id}"]
        for name, token in _attacks(user_id).items():
            for path in routes:
                message = err(http.get(path, headers=bearer(token)), 401, "INVALID_TOKEN")
                assert user_id not in message and job_id not in message, (name, message)
            err(http.post(f"/jobs/{job_id}/cancel", headers=bearer(token)), 401, "INVALID_TOKEN")
        # The job the forgeries aimed at is untouched.
        assert ok(http.get(f"/jobs/{job_id}", headers=auth))["status"] == "created"


def test_a_valid_token_of_a_user_that_does_not_exist(live: LiveRest) -> None:
    """Signed by the service but for no user (e.g. a deleted one): refused as a token, never a 500."""
    token = jwt.encode(_claims(str(uuid.uuid4())), TEST_SECRET, "HS256")
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        response = http.get("/me", headers=bearer(token))
        assert response.status_code in (401, 404), response.text
        body = response.json()
        assert body["error"]["code"] in ("INVALID_TOKEN", "NOT_FOUND"), body
        listed = http.get("/jobs", headers=bearer(token))
        assert listed.status_code in (200, 401, 404) and listed.json()["success"] in (True, False)
        if listed.status_code == 200:
            assert listed.json()["data"]["jobs"] == []
