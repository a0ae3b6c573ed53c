"""The local store's presigned endpoints: ``PUT`` and ``GET /objects/{key}``.

With the local object store, the URLs handed out by ``POST /jobs`` and ``GET /jobs/{id}`` point here.
Each request must carry a live signature from ``server.storage.signing.UrlSigner`` for its method and
key (and, for PUT, its ``Content-Type``); otherwise 403. Uploads are streamed to disk with the size
limit checked on every chunk (413, and nothing is stored); an object becomes visible only once
complete. These routes run in the gateway process next to the files, so a download never passes
through gRPC.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from server.errors import Forbidden, NotFound, PayloadTooLarge, S3Error
from server.storage.local import LocalObjectStore

_STATUS: dict[type[S3Error], int] = {
    Forbidden: 403,
    NotFound: 404,
    PayloadTooLarge: 413,
}
"""Contract statuses of the errors these routes raise; anything else (``StorageUnavailable``
included, code ``INTERNAL``) is a 500."""


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id", "")
    return given if 0 < len(given) <= 128 and given.isprintable() else str(uuid.uuid4())


def _envelope(request: Request, status: int, data: object, error: S3Error | None) -> JSONResponse:
    request_id = _request_id(request)
    body = {
        "success": error is None,
        "data": data,
        "error": None if error is None else {"code": error.code, "message": error.message},
        "meta": {
            "request_id": request_id,
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        },
    }
    return JSONResponse(body, status_code=status, headers={"X-Request-Id": request_id})


def error_response(request: Request, error: S3Error) -> JSONResponse:
    """The contract's error envelope. Kept local so this module stands alone; the app may swap in
    its shared envelope builder through ``object_routes(..., error_response=...)``."""
    status = next((code for cls, code in _STATUS.items() if isinstance(error, cls)), 500)
    return _envelope(request, status, None, error)


ErrorResponder = Callable[[Request, S3Error], Response]


def object_routes(store: LocalObjectStore, *, error_response: ErrorResponder = error_response) -> list[Route]:
    """Routes to mount in the gateway app (``Starlette(routes=[..., *object_routes(store)])``)."""

    def verify(request: Request, key: str) -> None:
        store.signer.verify(
            method=request.method,
            key=key,
            query=request.query_params,
            content_type=request.headers.get("content-type"),
        )

    async def put_object(request: Request) -> Response:
        key = request.path_params["key"]
        try:
            verify(request, key)
            limit = store.max_upload_bytes
            declared = request.headers.get("content-length", "")
            # Refuse a declared oversize body before reading a byte of it.
            if declared.isdigit() and int(declared) > limit:
                raise PayloadTooLarge(f"uploads are limited to {limit} bytes")
            content_type = request.headers.get("content-type", "")
            with store.open_writer(key, content_type=content_type, max_bytes=limit) as writer:
                async for chunk in request.stream():
                    if chunk:
                        await run_in_threadpool(writer.write, chunk)
                # Commit (fsync + rename) happens on leaving the block; keep it off the event loop.
                info = await run_in_threadpool(writer.commit)
        except S3Error as e:
            return error_response(request, e)
        except ValueError as e:
            # Only a key that resolves outside the object directory gets here (signed keys are valid).
            return error_response(request, Forbidden(str(e)))
        data = {"key": key, "size": info.size, "content_type": info.content_type}
        return _envelope(request, 200, data, None)

    async def get_object(request: Request) -> Response:
        key = request.path_params["key"]
        try:
            verify(request, key)
            info = await run_in_threadpool(store.head, key)
            if info is None:
                raise NotFound(f"object {key} does not exist")
        except S3Error as e:
            return error_response(request, e)
        except ValueError as e:
            return error_response(request, Forbidden(str(e)))
        return FileResponse(
            store.path_for(key),
            media_type=info.content_type,
            # Uploaded bytes are served from our own origin: never let a browser guess another type.
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=300"},
        )

    return [
        Route("/objects/{key:path}", put_object, methods=["PUT"], name="object_put"),
        Route("/objects/{key:path}", get_object, methods=["GET"], name="object_get"),
    ]
