"""The REST shim in front of the real gRPC JobService, on real loopback sockets, for the reliability
and security tests: uvicorn + the gateway app + ``build_grpc_server`` over ``make_stack``, plus the
envelope assertions those tests share."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from gateway_rest.app import create_app
from gateway_rest.credentials import EdgeCredentials
from gateway_rest.errors import HTTP_STATUS
from gateway_rest.http_server import HttpLimits
from gateway_rest.objects import object_routes
from server.errors import ALL_CODES
from server.grpc_api.server import build_grpc_server
from server.ports import free_port
from server.storage.local import LocalObjectStore
from tests.support.stack import Stack, make_stack
from tests.unit.gateway.live import run_server


@dataclass
class LiveRest:
    base_url: str
    grpc_target: str
    stack: Stack


@contextmanager
def live_rest(
    database_url: str,
    data_dir: Path,
    *,
    grpc_workers: int = 16,
    limits: HttpLimits | None = None,
    app_options: Mapping[str, Any] | None = None,
    **overrides: object,
) -> Iterator[LiveRest]:
    """The whole API served on loopback; the local store's presigned URLs point at it.
    ``app_options`` go to ``create_app``, ``overrides`` to the settings."""
    port = free_port()
    stack = make_stack(database_url, data_dir, http_port=port, **overrides)
    grpc_server = build_grpc_server(stack.services, bind="127.0.0.1:0", max_workers=grpc_workers)
    grpc_server.start()
    try:
        target = f"127.0.0.1:{grpc_server.port}"
        routes = object_routes(stack.store) if isinstance(stack.store, LocalObjectStore) else []
        app = create_app(
            grpc_target=target,
            object_routes=routes,
            credentials=EdgeCredentials.from_config(stack.settings.auth),
            **dict(app_options or {}),
        )
        with run_server(app, port=port, limits=limits) as base:
            yield LiveRest(base, target, stack)
    finally:
        grpc_server.stop(1.0)
        stack.db.dispose()


def check_envelope(response: httpx.Response) -> dict[str, Any]:
    """Any answer of the API: the contract's envelope, and for an error a contract code whose HTTP
    status is the one the error table gives. Returns the body."""
    body: dict[str, Any] = response.json()
    assert set(body) == {"success", "data", "error", "meta"}, body
    assert body["meta"]["request_id"] and body["meta"]["timestamp"], body
    if body["success"]:
        assert body["error"] is None and response.status_code < 300, body
    else:
        code = body["error"]["code"]
        assert code in ALL_CODES, body
        assert HTTP_STATUS[code] == response.status_code, (response.status_code, body)
        assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    return body


def ok(response: httpx.Response, status: int = 200) -> Any:
    body = check_envelope(response)
    assert response.status_code == status and body["success"], (response.status_code, body)
    return body["data"]


def err(response: httpx.Response, status: int, code: str) -> str:
    body = check_envelope(response)
    assert (response.status_code, body["error"] and body["error"]["code"]) == (status, code), body
    message: str = body["error"]["message"]
    return message


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_up(http: httpx.Client) -> tuple[dict[str, str], str]:
    """A new anonymous user: ``(auth headers, user_id)``."""
    data = ok(http.post("/auth/anon"), 201)
    return bearer(data["token"]), str(data["user_id"])


def upload_all(http: httpx.Client, created: dict[str, Any], photos: list[bytes]) -> None:
    """PUT each photo to its presigned URL, exactly as the app does (the URL is the credential)."""
    for target, data in zip(created["upload_urls"], photos, strict=True):
        ok(http.request(target["method"], target["url"], content=data, headers=target["headers"]))
