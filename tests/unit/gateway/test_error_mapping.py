"""Every contract code through the real gRPC boundary to its HTTP status, and the fallbacks."""

from __future__ import annotations

import grpc
import pytest
from starlette.testclient import TestClient

from gateway_rest.errors import _CODE_OF_STATUS, HTTP_STATUS
from server import errors as domain
from server.errors import ALL_CODES, S3Error
from server.grpc_api.status import GRPC_STATUS
from server.ports import free_port
from tests.unit.gateway.conftest import AUTH, ClientFactory
from tests.unit.gateway.fake_service import Script

EXPECTED_HTTP = {
    "AUTH_REQUIRED": 401,
    "INVALID_TOKEN": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "VALIDATION_ERROR": 400,
    "INVALID_STATE": 409,
    "INSUFFICIENT_CREDITS": 402,
    "CONCURRENCY_LIMIT": 429,
    "RATE_LIMITED": 429,
    "STREAM_LIMIT": 429,
    "RULE_SLOT_LIMIT": 409,
    "BATCH_LIMIT": 400,
    "PAYLOAD_TOO_LARGE": 413,
    "QUOTA_EXCEEDED": 507,
    "INFERENCE_UNAVAILABLE": 503,
    "INTERNAL": 500,
    "IDEMPOTENCY_MISMATCH": 422,
}


class RateLimited(S3Error):
    """What a JobService would raise for ``RATE_LIMITED``. None does (the REST shim's limiter answers
    429 itself, ``gateway_rest.rate_limit_middleware``), but the edge still maps the code."""

    code = "RATE_LIMITED"


EDGE_ONLY_CODES = {"RATE_LIMITED"}
"""Codes the REST shim answers itself: no domain error carries them."""

DOMAIN_CLASS = {
    cls.code: cls
    for cls in vars(domain).values()
    if isinstance(cls, type) and issubclass(cls, S3Error) and cls is not domain.StorageUnavailable
}
ERROR_CLASS: dict[str, type[S3Error]] = {**DOMAIN_CLASS, "RATE_LIMITED": RateLimited}


def test_table_is_the_contract() -> None:
    assert dict(HTTP_STATUS) == EXPECTED_HTTP
    assert set(EXPECTED_HTTP) == set(ALL_CODES) == set(ERROR_CLASS)
    # Every other code is one the service raises: a domain error class carries it.
    assert set(DOMAIN_CLASS) == set(ALL_CODES) - EDGE_ONLY_CODES


@pytest.mark.parametrize("code", ALL_CODES)
def test_every_domain_code_maps_to_its_status(client: TestClient, script: Script, code: str) -> None:
    script.error = ERROR_CLASS[code](f"the {code} message")
    r = client.get("/me", headers=AUTH)
    assert r.status_code == EXPECTED_HTTP[code]
    assert r.json()["error"] == {"code": code, "message": f"the {code} message"}


def test_retry_after_of_a_limit_becomes_the_header(client: TestClient, script: Script) -> None:
    # The service's own retry time (the s3-retry-after-s trailer) is what the client is told.
    script.error = domain.StreamLimit("too many open streams", retry_after_s=7)
    r = client.get("/jobs/j1/events", headers=AUTH)
    assert (r.status_code, r.json()["error"]["code"], r.headers["Retry-After"]) == (429, "STREAM_LIMIT", "7")


@pytest.mark.parametrize(
    ("status", "code", "http"),
    [
        (grpc.StatusCode.NOT_FOUND, "NOT_FOUND", 404),
        (grpc.StatusCode.UNAUTHENTICATED, "AUTH_REQUIRED", 401),
        (grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION_ERROR", 400),
        (grpc.StatusCode.FAILED_PRECONDITION, "INVALID_STATE", 409),
        (grpc.StatusCode.PERMISSION_DENIED, "FORBIDDEN", 403),
        (grpc.StatusCode.UNAVAILABLE, "INTERNAL", 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "INTERNAL", 503),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "INTERNAL", 500),
        (grpc.StatusCode.UNKNOWN, "INTERNAL", 500),
        (grpc.StatusCode.INTERNAL, "INTERNAL", 500),
    ],
)
def test_status_without_metadata_falls_back(
    client: TestClient, script: Script, status: grpc.StatusCode, code: str, http: int
) -> None:
    script.abort = (status, "library detail")
    r = client.get("/me", headers=AUTH)
    assert (r.status_code, r.json()["error"]["code"]) == (http, code)
    if code == "INTERNAL":
        # Details of a non-domain failure stay in the log.
        assert "library detail" not in r.text


def test_fallback_agrees_with_the_server_table() -> None:
    # Each status the server uses for exactly one code maps back to that code.
    for code, status in GRPC_STATUS.items():
        if list(GRPC_STATUS.values()).count(status) == 1 and status not in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.INTERNAL,
        ):
            assert _CODE_OF_STATUS[status] == code


def test_job_service_down_is_503(make_client: ClientFactory) -> None:
    client = make_client(grpc_target=f"127.0.0.1:{free_port()}")
    r = client.get("/me", headers=AUTH)
    assert r.status_code == 503
    body = r.json()
    assert body["error"]["code"] == "INTERNAL" and "unavailable" in body["error"]["message"]
    r = client.get("/health")
    assert r.status_code == 503 and r.json()["error"]["code"] == "INTERNAL"
