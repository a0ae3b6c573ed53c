"""Contract error codes to HTTP statuses (declared in the proto), and the translations into them.

The JobService puts the contract code in the trailing metadata key ``s3-error-code`` because several
codes share one gRPC status (AUTH_REQUIRED and INVALID_TOKEN are both UNAUTHENTICATED). When that key
is missing the error did not come from the domain (the service is down, a deadline passed, the gRPC
library refused a message), so the code is derived from the gRPC status alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import MappingProxyType
from typing import cast

import grpc
from starlette.exceptions import HTTPException

from server import contract
from server.errors import S3Error
from server.grpc_api.status import ERROR_CODE_METADATA_KEY, GRPC_STATUS, RETRY_AFTER_METADATA_KEY

HTTP_STATUS = contract.HTTP_STATUS
"""Contract code -> HTTP status: the ``(http_status)`` options of ``ErrorCode`` in the proto."""

# Statuses that mean "the JobService could not be reached or did not answer in time", not a fault in
# the request: answered with 503 so clients retry, under the code INTERNAL (no contract code fits).
_BACKEND_DOWN = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

# Statuses the gRPC library raises on its own (a message over the size limit is RESOURCE_EXHAUSTED):
# without the metadata key they say nothing about the request, so they are not mapped to a domain code.
_LIBRARY_STATUSES = _BACKEND_DOWN | {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL}

# Any other status without the metadata key maps to the first contract code the server's table gives
# it, so the two tables cannot drift apart.
_CODE_OF_STATUS: MappingProxyType[grpc.StatusCode, str] = MappingProxyType(
    {status: code for code, status in reversed(list(GRPC_STATUS.items())) if status not in _LIBRARY_STATUSES}
)


@dataclass(frozen=True)
class ApiFailure:
    """An error in contract terms, ready for the envelope."""

    code: str
    message: str
    status_code: int
    retry_after_s: int | None = None
    """Sent as ``Retry-After`` when the service said when a retry makes sense."""


class ApiError(Exception):
    """An error the shim itself detects while decoding a request (body too large, wrong JSON type)."""

    def __init__(self, code: str, message: str) -> None:
        if code not in HTTP_STATUS:
            raise ValueError(f"unknown contract code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def failure(self) -> ApiFailure:
        return ApiFailure(self.code, self.message, HTTP_STATUS[self.code])


def validation_error(message: str) -> ApiError:
    return ApiError("VALIDATION_ERROR", message)


def _trailer(error: grpc.aio.AioRpcError, wanted: str) -> str | None:
    # grpc.aio.Metadata iterates as (key, value) pairs; the type stubs do not say so.
    pairs = cast("Iterable[tuple[str, str | bytes]]", error.trailing_metadata() or ())
    for key, value in pairs:
        if key == wanted and isinstance(value, str):
            return value
    return None


def _metadata_code(error: grpc.aio.AioRpcError) -> str | None:
    value = _trailer(error, ERROR_CODE_METADATA_KEY)
    return value if value in HTTP_STATUS else None


def _retry_after_s(error: grpc.aio.AioRpcError) -> int | None:
    value = _trailer(error, RETRY_AFTER_METADATA_KEY)
    if value is None or not value.isdigit() or len(value) > 6:
        return None
    return int(value)


def from_rpc_error(error: grpc.aio.AioRpcError) -> ApiFailure:
    status = error.code()
    code = _metadata_code(error)
    if code is not None:
        return ApiFailure(code, error.details() or code, HTTP_STATUS[code], _retry_after_s(error))
    if status in _BACKEND_DOWN:
        return ApiFailure("INTERNAL", f"the job service is unavailable ({status.name}), try again", 503)
    code = _CODE_OF_STATUS.get(status)
    if code is None:
        # Details of a non-domain failure may describe internals: say only what kind it was.
        return ApiFailure("INTERNAL", f"the job service failed ({status.name})", 500)
    return ApiFailure(code, error.details() or code, HTTP_STATUS[code])


def from_domain_error(error: S3Error) -> ApiFailure:
    """For errors raised inside the gateway process itself (the local object routes)."""
    return ApiFailure(error.code, error.message, HTTP_STATUS.get(error.code, 500))


# Routing and Starlette's own HTTP errors, by status. 405 has no contract code of its own: it is a
# request the client must change, so VALIDATION_ERROR, with the HTTP status kept at 405 and Allow set.
_CODE_OF_HTTP: MappingProxyType[int, str] = MappingProxyType(
    {
        400: "VALIDATION_ERROR",
        401: "AUTH_REQUIRED",
        403: "FORBIDDEN",
        404: "NOT_FOUND",
        405: "VALIDATION_ERROR",
        409: "INVALID_STATE",
        413: "PAYLOAD_TOO_LARGE",
        429: "RATE_LIMITED",
        503: "INTERNAL",
    }
)


def from_http_exception(error: HTTPException, *, method: str, path: str) -> ApiFailure:
    status = error.status_code
    code = _CODE_OF_HTTP.get(status, "INTERNAL" if status >= 500 else "VALIDATION_ERROR")
    if status == 404:
        message = f"no such endpoint: {method} {path}"
    elif status == 405:
        message = f"method {method} is not allowed on {path}"
    else:
        message = error.detail
    return ApiFailure(code, message, status)
