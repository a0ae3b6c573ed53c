"""The gateway's side of the JobService: one channel per app, and the metadata each call carries.

Routes call ``await unary(request, backend(request).stub.GetMe, message)``. Errors are not caught
here: a ``grpc.aio.AioRpcError`` propagates to the app's exception handler, which translates it once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar, cast

import grpc
from google.protobuf.message import Message
from starlette.requests import HTTPConnection

from gateway_rest.envelope import request_id_of
from gateway_rest.errors import ApiError
from protos.s3.v1 import jobs_pb2_grpc
from server.grpc_api import metadata_keys

if TYPE_CHECKING:
    from protos.s3.v1.jobs_pb2_grpc import JobServiceAsyncStub

RequestT = TypeVar("RequestT", bound=Message)
ResponseT = TypeVar("ResponseT", bound=Message)

# The JobService accepts 8 MiB messages; a job of 100 items with instances and URLs is well below,
# but gRPC's default of 4 MiB for received messages is not a limit the REST API should have.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
MAX_FORWARDED_HEADER_CHARS = 8192

Metadata = tuple[tuple[str, str], ...]

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"


@dataclass(frozen=True)
class Backend:
    stub: JobServiceAsyncStub
    timeout_s: float
    """Deadline of one unary call; the stream of job events has none."""


@asynccontextmanager
async def open_backend(target: str, *, timeout_s: float) -> AsyncIterator[Backend]:
    """One ``grpc.aio`` channel for the app's lifetime; closed (in-flight calls cancelled) on exit."""
    channel = grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    try:
        yield Backend(jobs_pb2_grpc.JobServiceStub(channel), timeout_s)
    finally:
        await channel.close(grace=None)


def backend(conn: HTTPConnection) -> Backend:
    """The backend the lifespan put in the request state."""
    found = conn.state.backend
    assert isinstance(found, Backend), "the app's lifespan did not run"
    return found


def _forwardable(value: str, header: str, code: str) -> str:
    # gRPC metadata values must be printable ASCII; anything else cannot be a valid credential anyway.
    if len(value) > MAX_FORWARDED_HEADER_CHARS or not (value.isascii() and value.isprintable()):
        raise ApiError(code, f"the {header} header is not valid")
    return value


def call_metadata(
    conn: HTTPConnection, *, callback_secret: bool = False, idempotency_key: bool = False, stream_token: bool = False
) -> Metadata:
    """``x-request-id`` always; ``authorization`` when sent; ``x-callback-secret`` for the callback;
    ``idempotency-key`` for the routes that take one (the JobService checks and keeps it);
    ``x-stream-token`` from the ``token`` query parameter of an event stream."""
    metadata: list[tuple[str, str]] = [("x-request-id", request_id_of(conn))]
    authorization = conn.headers.get("authorization")
    if authorization:
        metadata.append(("authorization", _forwardable(authorization, "Authorization", "INVALID_TOKEN")))
    if stream_token:
        token = conn.query_params.get("token")
        if token:
            metadata.append((metadata_keys.STREAM_TOKEN_KEY, _forwardable(token, "token", "INVALID_TOKEN")))
    if callback_secret:
        secret = conn.headers.get("x-callback-secret")
        if secret:
            metadata.append(("x-callback-secret", _forwardable(secret, "X-Callback-Secret", "FORBIDDEN")))
    if idempotency_key:
        key = conn.headers.get(IDEMPOTENCY_KEY_HEADER)
        if key is not None:
            value = _forwardable(key, IDEMPOTENCY_KEY_HEADER, "VALIDATION_ERROR")
            metadata.append((metadata_keys.IDEMPOTENCY_KEY, value))
    return tuple(metadata)


async def unary(
    conn: HTTPConnection,
    method: grpc.aio.UnaryUnaryMultiCallable[RequestT, ResponseT],
    message: RequestT,
    *,
    callback_secret: bool = False,
) -> ResponseT:
    """Call one unary RPC with the request's metadata and the backend's deadline."""
    response: ResponseT = await method(
        message,
        metadata=call_metadata(conn, callback_secret=callback_secret),
        timeout=backend(conn).timeout_s,
    )
    return response


async def unary_once(
    conn: HTTPConnection,
    method: grpc.aio.UnaryUnaryMultiCallable[RequestT, ResponseT],
    message: RequestT,
) -> tuple[ResponseT, dict[str, str]]:
    """:func:`unary` for a route that takes ``Idempotency-Key``: the answer, and the headers to add
    to it (``Idempotent-Replayed: true`` when the JobService answered from a kept first answer)."""
    call = method(message, metadata=call_metadata(conn, idempotency_key=True), timeout=backend(conn).timeout_s)
    response: ResponseT = await call
    initial = cast("Iterable[tuple[str, str | bytes]]", await call.initial_metadata() or ())
    replayed = any(k == metadata_keys.REPLAYED and v == "true" for k, v in initial)
    return response, ({REPLAYED_HEADER: "true"} if replayed else {})
