"""The app factory: one channel opened by the lifespan and closed at shutdown, never at import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from starlette.testclient import TestClient

from gateway_rest import routes
from gateway_rest.app import create_app, create_app_from_settings
from gateway_rest.objects import object_routes
from server.config import Settings
from server.storage.local import LocalObjectStore
from server.storage.signing import UrlSigner
from tests.unit.gateway.conftest import AUTH, EDGE_CALLBACK_SECRET, EDGE_JWT_SECRET, SIGNED_AUTH, ClientFactory


def test_channel_lives_exactly_as_long_as_the_lifespan(target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[Any] = []
    closed: list[Any] = []
    real_open = grpc.aio.insecure_channel

    def recording_open(*args: Any, **kwargs: Any) -> Any:
        channel = real_open(*args, **kwargs)
        opened.append(channel)
        real_close = channel.close

        async def close(grace: float | None = None) -> None:
            closed.append(channel)
            await real_close(grace)

        channel.close = close  # type: ignore[method-assign]
        return channel

    monkeypatch.setattr(grpc.aio, "insecure_channel", recording_open)
    app = create_app(grpc_target=target)
    assert opened == []
    with TestClient(app) as client:
        assert len(opened) == 1 and closed == []
        for _ in range(3):
            assert client.get("/me", headers=AUTH).status_code == 200
        assert len(opened) == 1
    assert closed == opened


def test_settings_reach_the_app(target: str) -> None:
    settings = Settings().changed(
        grpc_target=target,
        cors_origins=("https://app.example",),
        max_body_bytes=10,
        jwt_secret=EDGE_JWT_SECRET,
        callback_secret=EDGE_CALLBACK_SECRET,
    )
    with TestClient(create_app_from_settings(settings)) as client:
        r = client.post("/rules", content=b"x" * 11, headers={**SIGNED_AUTH, "Origin": "https://app.example"})
        assert r.status_code == 413
        assert r.headers["access-control-allow-origin"] == "https://app.example"


def test_500_keeps_cors_and_request_id(make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_: object) -> dict[str, object]:
        raise RuntimeError("boom")

    monkeypatch.setattr(routes, "encode", broken)
    client = make_client(cors_origins=["https://app.example"])
    r = client.get("/me", headers={**AUTH, "Origin": "https://app.example", "X-Request-Id": "rid-500"})
    assert r.status_code == 500 and r.json()["error"]["code"] == "INTERNAL"
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert r.headers["x-request-id"] == "rid-500" == r.json()["meta"]["request_id"]


def test_mounted_object_routes_answer_in_the_shared_envelope(make_client: ClientFactory, tmp_path: Path) -> None:
    store = LocalObjectStore(
        tmp_path,
        signer=UrlSigner.from_master_secret("k" * 40),
        public_base_url="http://testserver",
        max_upload_bytes=1024,
    )
    store.ensure_root()
    client = make_client(object_routes=object_routes(store))
    r = client.put("/objects/inputs/u/j/0.jpg?sig=forged", content=b"x", headers={"X-Request-Id": "rid-obj"})
    body = r.json()
    assert r.status_code == 403 and body["error"]["code"] == "FORBIDDEN"
    assert body["meta"]["request_id"] == "rid-obj" == r.headers["x-request-id"]
