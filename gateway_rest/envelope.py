"""The contract's response envelope and the request id every envelope carries.

Every response the shim writes, success or error, is built here::

    {"success": true,  "data": {...}, "error": null, "meta": {"request_id": ..., "timestamp": ...}}
    {"success": false, "data": null,  "error": {"code": ..., "message": ...}, "meta": {...}}
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

REQUEST_ID_HEADER = "X-Request-Id"
MAX_REQUEST_ID_CHARS = 128


def accepted_request_id(given: str | None) -> str:
    """The client's id when it is safe to echo and log (printable, bounded); a fresh uuid4 otherwise."""
    if given and len(given) <= MAX_REQUEST_ID_CHARS and given.isprintable() and given.isascii():
        return given
    return str(uuid.uuid4())


def request_id_of(conn: HTTPConnection) -> str:
    """The request's id: the one the request-context middleware chose, or chosen now and kept."""
    state = conn.scope.setdefault("state", {})
    request_id = state.get("request_id")
    if not isinstance(request_id, str):
        request_id = accepted_request_id(conn.headers.get(REQUEST_ID_HEADER))
        state["request_id"] = request_id
    return request_id


def timestamp() -> str:
    """Now, ISO 8601 in UTC with milliseconds (``2026-11-22T03:21:31.123Z``)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def mark_body_read(conn: HTTPConnection) -> None:
    """Called once a request's body has been received to its end."""
    conn.scope.setdefault("state", {})["body_read"] = True


def has_unread_body(conn: HTTPConnection) -> bool:
    declared = conn.headers.get("content-length", "0").strip() not in ("", "0")
    chunked = "transfer-encoding" in conn.headers
    return (declared or chunked) and not conn.scope.get("state", {}).get("body_read", False)


def meta(conn: HTTPConnection) -> dict[str, str]:
    return {"request_id": request_id_of(conn), "timestamp": timestamp()}


def _headers(conn: HTTPConnection, extra: Mapping[str, str] | None) -> dict[str, str]:
    headers = dict(extra or {})
    headers[REQUEST_ID_HEADER] = request_id_of(conn)
    return headers


def success(
    conn: HTTPConnection,
    data: Any,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"success": True, "data": data, "error": None, "meta": meta(conn)}
    return JSONResponse(body, status_code=status_code, headers=_headers(conn, headers))


def failure(
    conn: HTTPConnection,
    *,
    code: str,
    message: str,
    status_code: int,
    data: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An error envelope. ``data`` stays null except where a route documents otherwise (/health).

    When the request's body was not read to its end (refused from its head, or too large), the answer
    closes the connection: otherwise the server would go on receiving a body nobody reads.
    """
    if has_unread_body(conn):
        headers = {**(headers or {}), "Connection": "close"}
    body = {
        "success": False,
        "data": data,
        "error": {"code": code, "message": message},
        "meta": meta(conn),
    }
    return JSONResponse(body, status_code=status_code, headers=_headers(conn, headers))
