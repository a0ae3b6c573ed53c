"""Server interceptor: early refusals, request ids, access logs, and domain errors to statuses.

Errors are translated here and nowhere else on the gRPC side: servicer methods raise
``server.errors.S3Error`` and let it propagate.

The server is ``grpc.aio``: a handler is either a plain function (run in the server's bounded
migration thread pool, with a synchronous context) or a coroutine / async generator (run on the
event loop, with an awaitable ``abort``). Both kinds are wrapped here, the same way.

Before a message is decoded, ``guards.RequestGuard`` looks at the metadata: a call with wrong
credentials, or a message over its method's cap, gets a deserializer that does not decode, and its
handler answers the refusal.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from server.errors import PayloadTooLarge, S3Error
from server.grpc_api.guards import MethodRule, RequestGuard
from server.grpc_api.status import ERROR_CODE_METADATA_KEY, GRPC_STATUS, RETRY_AFTER_METADATA_KEY
from server.metrics.rpc import RpcMetrics

log = logging.getLogger("s3.grpc")

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

REQUEST_ID_KEY = "x-request-id"

# Status details travel in HTTP/2 trailers, which gRPC caps at 16 KiB; a message that echoes a huge
# user value would turn a clear error into RESOURCE_EXHAUSTED. Bound it well below the cap.
MAX_MESSAGE_CHARS = 1000

AnyContext = grpc.ServicerContext | grpc.aio.ServicerContext[Any, Any]


def _bounded(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 20] + f"... ({len(message)} chars)"


def _first(metadata: Iterable[tuple[str, str | bytes]] | None, key: str) -> str | None:
    for k, v in metadata or ():
        if k == key and isinstance(v, str):
            return v
    return None


def metadata_value(context: AnyContext, key: str) -> str | None:
    """The first value of a text metadata key of the call, or None."""
    return _first(context.invocation_metadata(), key)


def _request_id(context: AnyContext) -> str:
    value = metadata_value(context, REQUEST_ID_KEY)
    if value is not None and 0 < len(value) <= 128 and value.isprintable():
        return value
    return str(uuid.uuid4())


@dataclass(frozen=True)
class _Refused:
    """Stands in for a request that was not decoded."""

    error: S3Error


def _no_decode(error: S3Error) -> Callable[[bytes], _Refused]:
    return lambda _data: _Refused(error)


def _capped(decode: Callable[[bytes], Any] | None, rule: MethodRule) -> Callable[[bytes], Any] | None:
    if decode is None:
        return None
    limit = rule.max_request_bytes

    def decode_capped(data: bytes) -> Any:
        if len(data) > limit:
            return _Refused(PayloadTooLarge(f"the request is {len(data)} bytes; this method accepts {limit}"))
        return decode(data)

    return decode_capped


def _outcome(err: Exception) -> str:
    return err.code if isinstance(err, S3Error) else type(err).__name__


def _status_of(method: str, err: Exception) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]:
    """What to answer for ``err``: the status, its message, and the trailers naming the contract code."""
    if isinstance(err, S3Error):
        code, message = err.code, err.message
        if code == "INTERNAL":
            log.error("%s failed: %s", method, err, exc_info=err)
    else:
        log.error("%s failed unexpectedly", method, exc_info=err)
        code, message = "INTERNAL", "internal error"
    trailers = [(ERROR_CODE_METADATA_KEY, code), (REQUEST_ID_KEY, request_id_var.get())]
    retry_after = err.retry_after_s if isinstance(err, S3Error) else None
    if retry_after is not None:
        trailers.append((RETRY_AFTER_METADATA_KEY, str(retry_after)))
    return GRPC_STATUS[code], _bounded(message), tuple(trailers)


def _abort(context: grpc.ServicerContext, method: str, err: Exception) -> None:
    status, message, trailers = _status_of(method, err)
    context.set_trailing_metadata(trailers)
    context.abort(status, message)


def _end_stream(context: grpc.ServicerContext, method: str, err: Exception) -> None:
    """End a plain streaming handler with the error's status by returning, not by ``abort``: on the
    aio server a plain generator's messages are sent from the event loop while the generator runs in
    the thread pool, so an ``abort`` right after a ``yield`` can meet that message's send still in
    flight (``GRPC_CALL_ERROR_TOO_MANY_OPERATIONS``), fail, and leave the client waiting forever.
    A status set before returning is sent after the last message."""
    status, message, trailers = _status_of(method, err)
    context.set_trailing_metadata(trailers)
    context.set_code(status)
    context.set_details(message)


async def _abort_async(context: grpc.aio.ServicerContext[Any, Any], method: str, err: Exception) -> None:
    status, message, trailers = _status_of(method, err)
    context.set_trailing_metadata(trailers)
    await context.abort(status, message)


def _unwrap(request: Any) -> Any:
    if isinstance(request, _Refused):
        raise request.error
    return request


if TYPE_CHECKING:
    # Generic only in the type stubs; at run time the class takes no parameters.
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _ServerInterceptor = grpc.aio.ServerInterceptor


class DomainErrorInterceptor(_ServerInterceptor):
    def __init__(self, metrics: RpcMetrics | None = None, guard: RequestGuard | None = None) -> None:
        self._metrics = metrics
        self._guard = guard

    def _observe(self, method: str, outcome: str, started: float) -> None:
        if self._metrics is not None:
            # Unexpected exceptions are answered INTERNAL: count them so, not by class name.
            code = outcome if outcome in GRPC_STATUS or outcome == "OK" else "INTERNAL"
            self._metrics.observe(method, code, time.perf_counter() - started)

    def _finish(self, method: str, outcome: str, started: float) -> None:
        self._observe(method, outcome, started)
        log.info(
            "%s %s %.1fms",
            method,
            outcome,
            (time.perf_counter() - started) * 1000,
            extra={"request_id": request_id_var.get()},
        )

    def _deserializer(
        self, handler: grpc.RpcMethodHandler[Any, Any], details: grpc.HandlerCallDetails
    ) -> Callable[[bytes], Any] | None:
        if self._guard is None:
            return handler.request_deserializer
        rule = self._guard.rule(details.method)
        refusal = self._guard.refusal(rule, details.invocation_metadata or ())
        if refusal is not None:
            return _no_decode(refusal)
        return _capped(handler.request_deserializer, rule)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # unknown method: gRPC answers UNIMPLEMENTED
        method: str = handler_call_details.method
        deserializer = self._deserializer(handler, handler_call_details)
        if handler.unary_unary is not None:
            inner = handler.unary_unary
            behavior = self._unary_async(method, inner) if _is_async(inner) else self._unary_sync(method, inner)
            return grpc.unary_unary_rpc_method_handler(
                behavior, request_deserializer=deserializer, response_serializer=handler.response_serializer
            )
        if handler.unary_stream is not None:
            streamer: Callable[[Any, Any], Any] = handler.unary_stream
            behavior = (
                self._stream_async(method, streamer) if _is_async(streamer) else self._stream_sync(method, streamer)
            )
            return grpc.unary_stream_rpc_method_handler(
                behavior, request_deserializer=deserializer, response_serializer=handler.response_serializer
            )
        return handler

    def _unary_sync(self, method: str, inner: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
            token = request_id_var.set(_request_id(context))
            started = time.perf_counter()
            outcome = "OK"
            try:
                return inner(_unwrap(request), context)
            except Exception as err:
                outcome = _outcome(err)
                _abort(context, method, err)
                raise  # unreachable: abort raises
            finally:
                self._finish(method, outcome, started)
                request_id_var.reset(token)

        return unary_unary

    def _unary_async(self, method: str, inner: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        async def unary_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            token = request_id_var.set(_request_id(context))
            started = time.perf_counter()
            outcome = "OK"
            try:
                return await inner(_unwrap(request), context)
            except Exception as err:
                outcome = _outcome(err)
                await _abort_async(context, method, err)
                raise  # unreachable: abort raises
            finally:
                self._finish(method, outcome, started)
                request_id_var.reset(token)

        return unary_unary

    def _stream_sync(self, method: str, inner: Callable[[Any, Any], Iterator[Any]]) -> Callable[[Any, Any], Any]:
        def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            token = request_id_var.set(_request_id(context))
            started = time.perf_counter()
            outcome = "OK"
            try:
                yield from inner(_unwrap(request), context)
            except Exception as err:
                outcome = _outcome(err)
                _end_stream(context, method, err)
            finally:
                self._finish(method, outcome, started)
                request_id_var.reset(token)

        return unary_stream

    def _stream_async(
        self, method: str, inner: Callable[[Any, Any], AsyncIterator[Any]]
    ) -> Callable[[Any, Any], AsyncIterator[Any]]:
        async def unary_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            token = request_id_var.set(_request_id(context))
            started = time.perf_counter()
            outcome = "OK"
            try:
                async for response in inner(_unwrap(request), context):
                    yield response
            except Exception as err:
                outcome = _outcome(err)
                await _abort_async(context, method, err)
            finally:
                self._finish(method, outcome, started)
                request_id_var.reset(token)

        return unary_stream


def _is_async(behavior: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)
