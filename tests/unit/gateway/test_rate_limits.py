"""Rate limits at the shim's edge, in front of the fake JobService: buckets, headers, 429s.

The socket peer of each request is set by a thin ASGI wrapper (``X-Test-Peer``), so that one app, and
so one limiter, sees several client addresses; the real-socket and Redis tests are in
``tests/integration/test_rate_limits.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import jwt
import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway_rest import routes
from gateway_rest.app import create_app, verified_user
from gateway_rest.client_address import TrustedProxies
from gateway_rest.rate_limits import RateLimitConfig
from server.config import RateLimit
from server.config.sections import RateLimitsConfig
from server.errors import AuthRequired, ConcurrencyLimit, Internal
from server.ports import free_port
from server.service.tokens import TokenService
from tests.support.rate_windows import clear_of_window_edges
from tests.support.stack import TEST_SECRET
from tests.unit.gateway.conftest import client_factory
from tests.unit.gateway.fake_service import Script

TOKENS = TokenService(TEST_SECRET, 3600)
ROOMY = RateLimit(1000, 60)
HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


def limits(storage_url: str = "memory://", **tight: RateLimit) -> RateLimitConfig:
    roomy = RateLimitsConfig(
        storage_url=storage_url, address=ROOMY, user=ROOMY, signup_address=ROOMY, signup_global=ROOMY
    )
    return RateLimitConfig(replace(roomy, **tight))  # type: ignore[arg-type]


class PeerFromHeader:
    """Sets the request's socket peer from ``X-Test-Peer`` (what a real socket would give)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"x-test-peer":
                    scope = {**scope, "client": (value.decode(), 40000)}
        await self.app(scope, receive, send)


Factory = Callable[..., TestClient]


WINDOWS_S = (30, 60, 600)
"""Every window these tests set (``ROOMY`` and the tight ones)."""


@pytest.fixture(autouse=True)
def _clear_of_window_edges() -> None:
    clear_of_window_edges(WINDOWS_S, margin_s=3.0)


@pytest.fixture
def shim(target: str) -> Iterator[Factory]:
    def build(config: RateLimitConfig | None, **options: object) -> PeerFromHeader:
        app = create_app(grpc_target=target, rate_limits=config, user_of=verified_user(TOKENS), **options)  # type: ignore[arg-type]
        return PeerFromHeader(app)

    with client_factory(build) as make:
        yield make


def peer(address: str, token: str | None = None) -> dict[str, str]:
    headers = {"X-Test-Peer": address}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def token(user_id: str) -> str:
    return TOKENS.issue(user_id).token


def assert_rate_headers(response: object) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    missing = [h for h in HEADERS if h not in headers]
    assert not missing, (response.status_code, missing, dict(headers))  # type: ignore[attr-defined]
    assert int(headers["ratelimit-limit"]) >= 1
    assert 0 <= int(headers["ratelimit-remaining"]) <= int(headers["ratelimit-limit"])
    assert int(headers["ratelimit-reset"]) >= 0


def assert_rate_limited(response: object) -> int:
    assert response.status_code == 429, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["success"] is False and body["error"]["code"] == "RATE_LIMITED", body
    assert body["meta"]["request_id"] == response.headers["x-request-id"]  # type: ignore[attr-defined]
    assert_rate_headers(response)
    assert response.headers["ratelimit-remaining"] == "0"  # type: ignore[attr-defined]
    retry_after = int(response.headers["retry-after"])  # type: ignore[attr-defined]
    assert retry_after >= 1
    return retry_after


def test_sign_up_past_its_limit_is_429_with_retry_after_and_never_reaches_the_service(
    shim: Factory, script: Script
) -> None:
    client = shim(limits(signup_address=RateLimit(3, 600)))
    for _ in range(3):
        assert client.post("/auth/anon", headers=peer("203.0.113.5")).status_code == 201
    refused = client.post("/auth/anon", headers=peer("203.0.113.5"))
    assert assert_rate_limited(refused) <= 600
    assert refused.headers["ratelimit-limit"] == "3"
    assert [c.method for c in script.calls] == ["CreateAnonUser"] * 3
    # Only sign-up is that tight: the same address may go on using the API.
    assert client.get("/jobs", headers=peer("203.0.113.5")).status_code == 200
    # And another address may still sign up.
    assert client.post("/auth/anon", headers=peer("198.51.100.9")).status_code == 201


def test_the_global_sign_up_limit_holds_across_addresses(shim: Factory) -> None:
    client = shim(limits(signup_global=RateLimit(4, 60)))
    for n in range(4):
        assert client.post("/auth/anon", headers=peer(f"198.51.100.{n + 1}")).status_code == 201
    assert_rate_limited(client.post("/auth/anon", headers=peer("198.51.100.77")))


def test_every_answer_carries_the_rate_limit_headers(shim: Factory, script: Script) -> None:
    client = shim(limits(), max_body_bytes=64)
    me = token("u1")
    answers = {
        "200": client.get("/me", headers=peer("203.0.113.5", me)),
        "201": client.post("/auth/anon", headers=peer("203.0.113.5")),
        "400": client.post("/rules", content=b"{not json", headers=peer("203.0.113.5", me)),
        "404": client.get("/nowhere", headers=peer("203.0.113.5")),
        "405": client.delete("/me", headers=peer("203.0.113.5", me)),
        "413": client.post("/rules", content=b"{" + b" " * 100 + b"}", headers=peer("203.0.113.5", me)),
        "openapi": client.get("/openapi.json", headers=peer("203.0.113.5")),
    }
    script.error = AuthRequired("authentication required")
    answers["401"] = client.get("/me", headers=peer("203.0.113.5"))
    script.error = Internal("boom")
    answers["500"] = client.get("/me", headers=peer("203.0.113.5", me))
    for name, response in answers.items():
        expected = name if name.isdigit() else "200"
        assert str(response.status_code) == expected, (name, response.text)
        assert_rate_headers(response)
    assert all(int(r.headers["ratelimit-limit"]) == ROOMY.requests for r in answers.values())
    remaining = [int(r.headers["ratelimit-remaining"]) for r in answers.values()]
    assert remaining == sorted(remaining, reverse=True) and remaining[0] > remaining[-1], remaining


def test_the_last_resort_500_carries_the_headers_too(shim: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug's 500 is rendered by the request-context middleware, inside the limiter."""

    def broken(_: object) -> dict[str, object]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(routes, "encode", broken)
    r = shim(limits()).get("/me", headers=peer("203.0.113.5", token("u1")))
    assert r.status_code == 500 and r.json()["error"]["code"] == "INTERNAL"
    assert_rate_headers(r)


def test_remaining_counts_down_and_reset_is_set_once_the_bucket_is_full(shim: Factory) -> None:
    client = shim(limits(address=RateLimit(3, 30)))
    seen = [client.get("/jobs", headers=peer("203.0.113.5")) for _ in range(3)]
    assert [r.headers["ratelimit-remaining"] for r in seen] == ["2", "1", "0"]
    assert [r.headers["ratelimit-reset"] for r in seen[:2]] == ["0", "0"]
    assert 1 <= int(seen[2].headers["ratelimit-reset"]) <= 30
    assert seen[0].headers["ratelimit-policy"] == "3;w=30"
    retry_after = assert_rate_limited(client.get("/jobs", headers=peer("203.0.113.5")))
    assert retry_after <= 30


def test_user_and_address_buckets_are_independent(shim: Factory) -> None:
    client = shim(limits(address=RateLimit(5, 60), user=RateLimit(2, 60)))
    alice, bob = token("alice"), token("bob")
    # Alice spends her user budget from one address...
    for _ in range(2):
        assert client.get("/me", headers=peer("203.0.113.5", alice)).status_code == 200
    assert_rate_limited(client.get("/me", headers=peer("203.0.113.5", alice)))
    # ...which follows her to any other address,
    assert_rate_limited(client.get("/me", headers=peer("198.51.100.9", alice)))
    # while Bob, behind the same address, still has his own (2 of the address's 5 are left).
    assert client.get("/me", headers=peer("203.0.113.5", bob)).status_code == 200
    assert client.get("/me", headers=peer("203.0.113.5", bob)).status_code == 200
    # The address is now full for everyone behind it, Bob's next request included...
    assert_rate_limited(client.get("/jobs", headers=peer("203.0.113.5")))
    # ...and for no one behind another address.
    assert client.get("/jobs", headers=peer("198.51.100.10")).status_code == 200


def test_a_token_that_does_not_verify_cannot_spend_its_named_users_budget(shim: Factory) -> None:
    client = shim(limits(user=RateLimit(2, 60)))
    forged = jwt.encode({"sub": "alice", "exp": 4102444800, "iat": 0, "iss": "s3"}, "w" * 40, algorithm="HS256")
    for _ in range(5):
        client.get("/me", headers=peer("203.0.113.5", forged))
    real = client.get("/me", headers=peer("198.51.100.9", token("alice")))
    assert real.status_code == 200 and real.headers["ratelimit-remaining"] == "1", real.headers


def test_ipv6_clients_are_limited_by_their_64(shim: Factory) -> None:
    client = shim(limits(address=RateLimit(2, 60)))
    assert client.get("/jobs", headers=peer("2001:db8:1:2::1")).status_code == 200
    assert client.get("/jobs", headers=peer("2001:db8:1:2:ffff::9")).status_code == 200
    assert_rate_limited(client.get("/jobs", headers=peer("2001:db8:1:2::abcd")))
    assert client.get("/jobs", headers=peer("2001:db8:1:3::1")).status_code == 200


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(shim: Factory) -> None:
    proxies = TrustedProxies.parse(["10.0.0.0/8"])
    client = shim(replace(limits(address=RateLimit(2, 60)), trusted_proxies=proxies))
    # From an untrusted peer, a made-up header per request does not give a fresh bucket.
    spoofed = [
        client.get("/jobs", headers={**peer("203.0.113.5"), "X-Forwarded-For": f"192.0.2.{n}"}) for n in range(3)
    ]
    assert [r.status_code for r in spoofed] == [200, 200, 429]
    # Through the trusted proxy each client behind it has its own bucket; the proxy none of its own.
    for client_address in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        for _ in range(2):
            via_proxy = {**peer("10.1.2.3"), "X-Forwarded-For": client_address}
            assert client.get("/jobs", headers=via_proxy).status_code == 200
    assert_rate_limited(client.get("/jobs", headers={**peer("10.1.2.3"), "X-Forwarded-For": "192.0.2.1"}))
    # What the client wrote left of the proxy's entry is not believed either.
    forged_chain = {**peer("10.1.2.3"), "X-Forwarded-For": "198.51.100.200, 192.0.2.2"}
    assert_rate_limited(client.get("/jobs", headers=forged_chain))


def test_every_429_has_retry_after_the_concurrency_limit_too(shim: Factory, script: Script) -> None:
    script.error = ConcurrencyLimit("the free plan runs one job at a time")
    for config in (limits(), None):
        r = shim(config).post("/jobs", json={"preset": "interior", "item_count": 1}, headers=peer("203.0.113.5"))
        assert r.status_code == 429 and r.json()["error"]["code"] == "CONCURRENCY_LIMIT"
        assert int(r.headers["retry-after"]) >= 1


def test_limits_off_means_no_headers_and_no_429(shim: Factory) -> None:
    client = shim(None)
    answers = [client.post("/auth/anon", headers=peer("203.0.113.5")) for _ in range(40)]
    assert {r.status_code for r in answers} == {201}
    assert not any(h in answers[-1].headers for h in HEADERS)


def test_an_unreachable_store_lets_requests_through(shim: Factory) -> None:
    """Fail open: a Redis outage must not take the API down with it (the limiter logs it)."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    client = shim(limits(dead, address=RateLimit(1, 60)))
    answers = [client.get("/jobs", headers=peer("203.0.113.5")) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert not any(h in answers[0].headers for h in HEADERS)


def test_the_openapi_document_names_the_headers_on_every_answer(shim: Factory) -> None:
    paths = shim(limits()).get("/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for method, op in operations.items():
            for status, response in op["responses"].items():
                names = set(response.get("headers", {}))
                assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= names, (method, path, status)
                assert ("Retry-After" in names) == (status == "429"), (method, path, status)
            assert "RATE_LIMITED" in op["responses"].get("429", {}).get("description", ""), (method, path)
