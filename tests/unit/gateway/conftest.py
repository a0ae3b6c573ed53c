"""Fixtures: the fake JobService on a loopback port and the shim in front of it (lifespan run)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp

from gateway_rest.app import create_app
from gateway_rest.credentials import EdgeCredentials
from gateway_rest.metrics import HttpMetrics
from gateway_rest.operator import create_operator_app
from server.service.tokens import TokenService
from tests.unit.gateway.fake_service import Script, serve_fake

ClientFactory = Callable[..., TestClient]


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def target(script: Script) -> Iterator[str]:
    with serve_fake(script) as address:
        yield address


@contextmanager
def client_factory(build: Callable[..., ASGIApp]) -> Iterator[ClientFactory]:
    """``make(*args, **options)``: an entered client (lifespan run) for the app ``build(*args, **options)``;
    every client made is closed when the block ends."""
    opened: list[TestClient] = []

    def make(*args: Any, **options: Any) -> TestClient:
        # Server exceptions become responses, as a real server would send them.
        client = TestClient(build(*args, **options), raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return client

    try:
        yield make
    finally:
        for client in opened:
            client.__exit__(None, None, None)


@pytest.fixture
def make_client(target: str) -> Iterator[ClientFactory]:
    """Build a client for an app with the given ``create_app`` options; all are closed at the end."""
    with client_factory(lambda **options: create_app(**{"grpc_target": target, **options})) as make:
        yield make


@pytest.fixture
def metrics() -> HttpMetrics:
    return HttpMetrics()


@pytest.fixture
def client(make_client: ClientFactory, metrics: HttpMetrics) -> TestClient:
    return make_client(metrics=metrics)


@pytest.fixture
def operator(target: str, metrics: HttpMetrics) -> Iterator[TestClient]:
    """The operator surface of ``client``'s app (its metrics, the detailed health)."""
    app = create_operator_app(grpc_target=target, metrics=metrics, rpc_timeout_s=10.0)
    with TestClient(app, raise_server_exceptions=False) as operator_client:
        yield operator_client


AUTH = {"Authorization": "Bearer token-1"}
"""Good enough for an app without edge credentials: the fake JobService takes any token."""

EDGE_JWT_SECRET = "edge-jwt-" + "j" * 40
EDGE_CALLBACK_SECRET = "edge-callback-" + "c" * 40
SIGNED_AUTH = {"Authorization": f"Bearer {TokenService(EDGE_JWT_SECRET, 3600).issue('user-1').token}"}
"""A token the edge check of ``edge_credentials()`` accepts."""


def edge_credentials() -> EdgeCredentials:
    return EdgeCredentials(TokenService(EDGE_JWT_SECRET, 3600), EDGE_CALLBACK_SECRET)
