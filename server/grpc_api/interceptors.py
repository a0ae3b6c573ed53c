"""Server interceptor: request ids, access logs, and the translation of domain errors to statuses.

Errors are translated here and nowhere else on the gRPC side: servicer methods raise
``server.errors.S3Error`` and let it propagate.
"""

from __future__ import annotations

import contextvars
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc

from server.errors import S3Error
from server.grpc_api.status import ERROR_CODE_METADATA_KEY, GRPC_STATUS
from server.metrics.rpc import RpcMetrics

log = logging.getLogger("s3.grpc")

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

REQUEST_ID_KEY = "x-request-id"

# Status details travel in HTTP/2 trailers, which gRPC caps at 16 KiB; a message that echoes a huge
# user value would turn a clear error into RESOURCE_EXHAUSTED. Bound it well below the cap.
MAX_MESSAGE_CHARS = 1000


def _bounded(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 20] + f"... ({len(message)} chars)"


def metadata_value(context: grpc.ServicerContext, key: str) -> str | None:
    """The first value of a text metadata key of the call, or None."""
    for k, v in context.invocation_metadata() or ():
        if k == key and isinstance(v, str):
            return v
    return None


def _request_id(context: grpc.ServicerContext) -> str:
    value = metadata_value(context, REQUEST_ID_KEY)
    if value is not None and 0 < len(value) <= 128 and value.isprintable():
        return value
    return str(uuid.uuid4())


def _abort(context: grpc.ServicerContext, method: str, err: Exception) -> None:
    if isinstance(err, S3Error):
        code, message = err.code, err.message
        if code == "INTERNAL":
            log.error("%s failed: %s", method, err, exc_info=err)
    else:
        log.error("%s failed unexpectedly", method, exc_info=err)
        code, message = "INTERNAL", "internal error"
    context.set_trailing_metadata(((ERROR_CODE_METADATA_KEY, code), (REQUEST_ID_KEY, request_id_var.get())))
    context.abort(GRPC_STATUS[code], _bounded(message))


if TYPE_CHECKING:
    # Generic only in the type stubs; at run time the class takes no parameters.
    _ServerInterceptor = grpc.ServerInterceptor[Any, Any]
else:
    _ServerInterceptor = grpc.ServerInterceptor


class DomainErrorInterceptor(_ServerInterceptor):
    def __init__(self, metrics: RpcMetrics | None = None) -> None:
        self._metrics = metrics

    def _observe(self, method: str, outcome: str, started: float) -> None:
        if self._metrics is not None:
            # Unexpected exceptions are answered INTERNAL: count them so, not by class name.
            code = outcome if outcome in GRPC_STATUS or outcome == "OK" else "INTERNAL"
            self._metrics.observe(method, code, time.perf_counter() - started)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
                token = request_id_var.set(_request_id(context))
                started = time.perf_counter()
                outcome = "OK"
                try:
                    return inner_uu(request, context)
                except Exception as err:
                    outcome = err.code if isinstance(err, S3Error) else type(err).__name__
                    _abort(context, method, err)
                    raise  # unreachable: abort raises
                finally:
                    self._observe(method, outcome, started)
                    log.info(
                        "%s %s %.1fms",
                        method,
                        outcome,
                        (time.perf_counter() - started) * 1000,
                        extra={"request_id": request_id_var.get()},
                    )
                    request_id_var.reset(token)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                token = request_id_var.set(_request_id(context))
                started = time.perf_counter()
                outcome = "OK"
                try:
                    yield from inner_us(request, context)
                except Exception as err:
                    outcome = err.code if isinstance(err, S3Error) else type(err).__name__
                    _abort(context, method, err)
                finally:
                    self._observe(method, outcome, started)
                    request_id_var.reset(token)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
