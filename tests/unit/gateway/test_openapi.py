"""The OpenAPI document matches the real routes, both ways, and its references resolve."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from gateway_rest.errors import HTTP_STATUS
from gateway_rest.objects import object_routes
from server.storage.local import LocalObjectStore
from server.storage.signing import UrlSigner
from tests.unit.gateway.conftest import ClientFactory

CONTRACT_PATHS = {
    ("GET", "/health"),
    ("POST", "/auth/anon"),
    ("GET", "/me"),
    ("GET", "/presets"),
    ("GET", "/presets/{preset_id}"),
    ("POST", "/rules"),
    ("GET", "/rules"),
    ("PUT", "/rules/{rule_id}"),
    ("DELETE", "/rules/{rule_id}"),
    ("GET", "/jobs"),
    ("POST", "/jobs"),
    ("POST", "/jobs/{job_id}/confirm-upload"),
    ("POST", "/jobs/{job_id}/analyze"),
    ("POST", "/jobs/{job_id}/execute"),
    ("GET", "/jobs/{job_id}"),
    ("POST", "/jobs/{job_id}/callback"),
    ("POST", "/jobs/{job_id}/cancel"),
    ("GET", "/jobs/{job_id}/events"),
}


def _real_operations(routes: list[Any]) -> set[tuple[str, str]]:
    ops = set()
    for route in routes:
        assert isinstance(route, Route)
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)  # {key:path} -> {key}
        ops |= {(m, path) for m in route.methods or () if m != "HEAD"}
    return ops


def _described_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m.upper(), path) for path, ops in document["paths"].items() for m in ops}


def _local_store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(
        tmp_path,
        signer=UrlSigner.from_master_secret("k" * 40),
        public_base_url="http://127.0.0.1:1",
        max_upload_bytes=1024,
    )


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


@pytest.mark.parametrize("with_objects", [False, True])
def test_every_route_is_described_and_every_description_is_a_route(
    make_client: ClientFactory, tmp_path: Path, with_objects: bool
) -> None:
    extra = object_routes(_local_store(tmp_path)) if with_objects else []
    client = make_client(object_routes=extra)
    document = client.get("/openapi.json").json()
    real = _real_operations(client.app.routes)  # type: ignore[attr-defined]
    assert real == _described_operations(document)
    assert real >= CONTRACT_PATHS
    assert (("PUT", "/objects/{key}") in real) is with_objects


def test_document_is_openapi_31_and_self_consistent(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["bearerJWT"]["scheme"] == "bearer"
    for ref in _refs(document):
        name = ref.removeprefix("#/components/schemas/")
        assert name in document["components"]["schemas"], ref
    for path, ops in document["paths"].items():
        declared = {p["name"] for op in ops.values() for p in op.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"\{(\w+)\}", path)), path
        for op in ops.values():
            assert "200" in op["responses"] or "201" in op["responses"], path
    assert document["components"]["schemas"]["Error"]["properties"]["code"]["enum"] == sorted(HTTP_STATUS)


def test_unauthenticated_routes_say_so(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert paths["/health"]["get"]["security"] == []
    assert paths["/auth/anon"]["post"]["security"] == []
    assert paths["/jobs/{job_id}/callback"]["post"]["security"] == [{"callbackSecret": []}]
    assert "security" not in paths["/me"]["get"]  # the document's default: bearer JWT
    assert "401" in paths["/me"]["get"]["responses"] and "401" not in paths["/health"]["get"]["responses"]
    assert "405" not in paths["/me"]["get"]["responses"]


def test_created_statuses_match_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/rules"]["post"]["responses"]) >= {"201", "409", "413"}
    assert set(paths["/jobs"]["post"]["responses"]) >= {"201", "402", "429"}


def test_body_caps_and_credentials_match_the_endpoint_table(make_client: ClientFactory) -> None:
    from gateway_rest.credentials import Credential
    from gateway_rest.routes import api_endpoints

    client = make_client(max_body_bytes=512 * 1024)
    paths = client.get("/openapi.json").json()["paths"]
    assert paths["/rules"]["post"]["x-max-body-bytes"] == 64 * 1024
    assert paths["/auth/anon"]["post"]["x-max-body-bytes"] == 1024
    assert paths["/jobs/{job_id}/callback"]["post"]["x-max-body-bytes"] == 512 * 1024  # the app-wide ceiling
    expected: dict[Credential, list[dict[str, list[str]]]] = {
        Credential.NONE: [],
        Credential.CALLBACK: [{"callbackSecret": []}],
    }
    for path, _, endpoints in api_endpoints():
        for method, endpoint in endpoints.items():
            op = paths[path][method.lower()]
            assert op.get("security", "bearer default") == expected.get(endpoint.credential, "bearer default"), (
                method,
                path,
            )
            if method in ("POST", "PUT"):
                assert op["x-max-body-bytes"] == min(endpoint.body_bytes, 512 * 1024)
