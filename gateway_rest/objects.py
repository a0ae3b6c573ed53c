"""The local store's presigned endpoints: ``PUT`` and ``GET /objects/{key}``.

With the local object store, the URLs handed out by ``POST /jobs`` and ``GET /jobs/{id}`` point here.
Each request must carry a live signature from ``server.storage.signing.UrlSigner`` for its method and
key (and, for PUT, its ``Content-Type``); otherwise 403. Uploads are streamed to disk with the size
limit checked on every chunk (413, and nothing is stored); an object becomes visible only once
complete. These routes run in the gateway process next to the files, so a download never passes
through gRPC.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from gateway_rest import envelope
from gateway_rest.errors import from_domain_error
from server.errors import Forbidden, NotFound, PayloadTooLarge, S3Error
from server.storage.local import LocalObjectStore
from server.storage.port import content_disposition


def _envelope(request: Request, status: int, data: object, error: S3Error | None) -> JSONResponse:
    if error is None:
        return envelope.success(request, data, status_code=status)
    return envelope.failure(request, code=error.code, message=error.message, status_code=status)


def error_response(request: Request, error: S3Error) -> JSONResponse:
    """The contract's error envelope, status from the gateway's one table (``gateway_rest.errors``)."""
    return _envelope(request, from_domain_error(error).status_code, None, error)


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
            # A client upload: refused once confirm-upload or cancel sealed the key.
            with store.open_writer(key, content_type=content_type, max_bytes=limit, client_upload=True) as writer:
                async for chunk in request.stream():
                    if chunk:
                        await run_in_threadpool(writer.write, chunk)
                # Committed here, in a worker thread, so fsync and rename never stall the event loop;
                # leaving the block then finds the upload already committed.
                info = await run_in_threadpool(writer.commit)
            envelope.mark_body_read(request)
        except ClientDisconnect:
            # The client is gone and reads no answer; the partial upload was discarded on the way out.
            return Response(status_code=400)
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
        # Uploaded bytes are served from our own origin: never let a browser guess another type.
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=300"}
        filename = request.query_params.get("filename")
        if filename:  # signed into the URL (verify() refused it otherwise)
            headers["Content-Disposition"] = content_disposition(filename)
        return FileResponse(store.path_for(key), media_type=info.content_type, headers=headers)

    async def dispatch(request: Request) -> Response:
        return await (put_object if request.method == "PUT" else get_object)(request)

    # One route for the path, so a wrong method is answered 405 with every method in ``Allow``
    # (two routes on one path answer with the first one's methods only).
    return [Route("/objects/{key:path}", dispatch, methods=["GET", "PUT"], name="object")]
