"""Exception handlers at the edge, keyed by exception class: every failure becomes an error envelope.

Routes never catch: a decoding problem raises ``ApiError``, the JobService's answer raises
``grpc.aio.AioRpcError``, routing raises ``HTTPException`` (404, 405), and anything else is a bug,
answered 500 INTERNAL with the request id and no detail (the traceback goes to the log only).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import grpc
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway_rest import envelope
from gateway_rest.errors import ApiError, ApiFailure, from_domain_error, from_http_exception, from_rpc_error
from server.errors import S3Error

log = logging.getLogger("s3.rest")

# Every 429 says when to try again. The rate limiter's own carry the exact wait; the others
# (CONCURRENCY_LIMIT: a job of the user's must end first) get an interval as polite as the app's own
# progress polling.
BUSY_RETRY_AFTER_S = 5


def _respond(request: Request, failure: ApiFailure, headers: Mapping[str, str] | None = None) -> Response:
    if failure.retry_after_s is not None:
        headers = {**(headers or {}), "Retry-After": str(failure.retry_after_s)}
    elif failure.status_code == 429 and not any(name.lower() == "retry-after" for name in headers or {}):
        headers = {**(headers or {}), "Retry-After": str(BUSY_RETRY_AFTER_S)}
    return envelope.failure(
        request,
        code=failure.code,
        message=failure.message,
        status_code=failure.status_code,
        headers=headers,
    )


async def on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _respond(request, exc.failure)


async def on_rpc_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, grpc.aio.AioRpcError)
    failure = from_rpc_error(exc)
    if failure.status_code >= 500:
        log.warning(
            "JobService call failed: %s %s",
            exc.code().name,
            exc.details(),
            extra={"request_id": envelope.request_id_of(request)},
        )
    return _respond(request, failure)


async def on_domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, S3Error)
    return _respond(request, from_domain_error(exc))


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    failure = from_http_exception(exc, method=request.method, path=request.url.path)
    return _respond(request, failure, headers=exc.headers)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.error(
        "unhandled error in %s %s",
        request.method,
        request.url.path,
        exc_info=exc,
        extra={"request_id": envelope.request_id_of(request)},
    )
    return _respond(request, ApiFailure("INTERNAL", "internal error", 500))


EXCEPTION_HANDLERS: Mapping[Any, Any] = {
    ApiError: on_api_error,
    grpc.aio.AioRpcError: on_rpc_error,
    S3Error: on_domain_error,
    HTTPException: on_http_exception,
    Exception: on_unexpected,
}
