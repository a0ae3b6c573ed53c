"""Reading a JSON request body: bounded in size while it streams in, and checked for JSON that the
gRPC messages cannot carry (NaN, lone surrogates, integers beyond a double, absurd nesting)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from gateway_rest.errors import ApiError, validation_error

MAX_DEPTH = 32
# google.protobuf.Struct stores every number as a double: larger integers would silently change.
MAX_SAFE_INTEGER = 2**53


def payload_too_large(limit: int) -> ApiError:
    return ApiError("PAYLOAD_TOO_LARGE", f"the request body is larger than {limit} bytes")


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body, refusing it as soon as it passes ``limit`` bytes.

    Content-Length is only a shortcut for an honest client: a chunked or lying body is counted as
    it arrives, so at most ``limit`` bytes plus one chunk are ever held.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise payload_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise payload_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise validation_error(f"the request body is not valid JSON: {name} is not a JSON number")


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
        value = json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise validation_error("the request body is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise validation_error(f"the request body is not valid JSON: {e.msg} at line {e.lineno}") from None
    except RecursionError:
        raise validation_error(f"the request body nests deeper than {MAX_DEPTH} levels") from None
    _check(value, "body", 0)
    return value


async def read_json(request: Request, limit: int) -> Any:
    return parse_json(await read_limited(request, limit))
