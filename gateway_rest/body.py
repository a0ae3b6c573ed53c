"""Reading a JSON request body: bounded in size while it streams in, and checked for JSON that the
gRPC messages cannot carry or that a later read could not give back (NaN and infinities however
they are spelt, integers beyond a double, duplicate keys, lone surrogates, absurd nesting).

A body is read only after the route's credentials were checked (``gateway_rest.endpoints``), and
one larger than ``INLINE_DECODE_BYTES`` is parsed and converted on a worker thread, so a big body
costs its sender time and not every other client's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from gateway_rest.envelope import mark_body_read
from gateway_rest.errors import ApiError, validation_error

MAX_DEPTH = 32
# google.protobuf.Struct stores every number as a double: larger integers would silently change.
MAX_SAFE_INTEGER = 2**53
# 2**53 has 16 digits: a longer integer literal is refused before int() spends time on it.
MAX_INTEGER_DIGITS = 16
INLINE_DECODE_BYTES = 16 * 1024
"""Bodies up to this size are decoded on the event loop (a thread hop costs more than they do)."""

T = TypeVar("T")


def payload_too_large(limit: int) -> ApiError:
    return ApiError("PAYLOAD_TOO_LARGE", f"the request body is larger than {limit} bytes")


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body, refusing it as soon as it passes ``limit`` bytes.

    Content-Length is only a shortcut for an honest client: a chunked or lying body is counted as
    it arrives, so at most ``limit`` bytes plus one chunk are ever held.
    """
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise payload_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise payload_too_large(limit)
        chunks.append(chunk)
    mark_body_read(request)
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise validation_error(f"the request body is not valid JSON: {name} is not a JSON number")


def _finite(literal: str) -> float:
    # 1e999 is valid JSON syntax, but Python reads it as inf, which no later JSON answer can carry.
    value = float(literal)
    if not math.isfinite(value):
        raise validation_error(f"the number {literal[:40]} is out of range")
    return value


def _bounded_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise validation_error(f"the number {literal[:40]}... is too large")
    return int(literal)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two values for one key: parsers disagree on which wins, so neither is guessed.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise validation_error(f"the request body has the key {key[:100]!r} twice")
        out[key] = value
    return out


def _check(value: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise validation_error(f"the request body nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise validation_error(f"{where} is not valid Unicode text") from None
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise validation_error(f"{where} is too large a number")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check(key, where, depth + 1)
            _check(item, f"{where}.{key}" if where != "body" else key, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check(item, f"{where}[{i}]", depth + 1)


def parse_json(raw: bytes) -> Any:
    """Decode a JSON document; ``None`` for an empty body (the caller decides whether that is allowed)."""
    if not raw.strip():
        return None
    try:
        text = raw.decode("utf-8-sig")
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite,
            parse_int=_bounded_int,
            object_pairs_hook=_unique_keys,
        )
    except UnicodeDecodeError:
        raise validation_error("the request body is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise validation_error(f"the request body is not valid JSON: {e.msg} at line {e.lineno}") from None
    except RecursionError:
        raise validation_error(f"the request body nests deeper than {MAX_DEPTH} levels") from None
    _check(value, "body", 0)
    return value


async def decode_json(request: Request, limit: int, convert: Callable[[Any], T]) -> T:
    """Read at most ``limit`` bytes, parse them and ``convert`` the JSON value (to a gRPC message).

    Parsing and conversion move to a worker thread above ``INLINE_DECODE_BYTES``.
    """
    raw = await read_limited(request, limit)
    if len(raw) <= INLINE_DECODE_BYTES:
        return convert(parse_json(raw))
    return await run_in_threadpool(lambda: convert(parse_json(raw)))
