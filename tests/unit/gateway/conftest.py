"""Fixtures: the fake JobService on a loopback port and the shim in front of it (lifespan run)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway_rest.app import create_app
from tests.unit.gateway.fake_service import Script, serve_fake

ClientFactory = Callable[..., TestClient]


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def target(script: Script) -> Iterator[str]:
    with serve_fake(script) as address:
        yield address


@pytest.fixture
def make_client(target: str) -> Iterator[ClientFactory]:
    """Build a client for an app with the given ``create_app`` options; all are closed at the end."""
    opened: list[TestClient] = []

    def make(**options: Any) -> TestClient:
        options.setdefault("grpc_target", target)
        # Server exceptions become responses, as a real server would send them.
        client = TestClient(create_app(**options), raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client()


AUTH = {"Authorization": "Bearer token-1"}
