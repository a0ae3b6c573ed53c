"""Per-request context: the request id, the last-resort 500 envelope, and one JSON access-log line.

It sits inside CORS on purpose: Starlette's own last-resort handler runs outside every user
middleware, so a 500 rendered there would reach a browser without CORS headers and the Flutter web
app could not read its envelope. Rendering unexpected errors here keeps CORS headers, the request id
and the access log on them.
"""

from __future__ import annotations

import json
import logging
import time

from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway_rest.envelope import REQUEST_ID_HEADER, accepted_request_id
from gateway_rest.handlers import on_unexpected

access_log = logging.getLogger("s3.rest.access")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        request_id = accepted_request_id(request.headers.get(REQUEST_ID_HEADER))
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                if REQUEST_ID_HEADER not in headers:
                    headers[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            # The client went away mid-request: nobody is left to answer.
            status = status or 499
        except Exception as exc:
            response = await on_unexpected(request, exc)  # logs the traceback
            if not status:
                await response(scope, receive, send_with_id)
            # Otherwise the response had started (an event stream): returning cuts it short.
        finally:
            # The path without its query: presigned object URLs carry their signature there.
            access_log.info(
                json.dumps(
                    {
                        "event": "http_request",
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status or 499,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                        "request_id": request_id,
                    }
                ),
                extra={"request_id": request_id},
            )
