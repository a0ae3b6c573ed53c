"""The web playground: a single page (plain HTML, CSS and JavaScript modules in ``playground/``) that
runs the five stages against the public REST API, as the Flutter app would.

Served by the shim only when ``S3_PLAYGROUND_PATH`` is set (off by default): it adds no API of its own,
only static files, so everything the page does goes through the documented endpoints.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from server.config import PLAYGROUND_PATH

PLAYGROUND_DIR = Path(__file__).resolve().parent / "playground"
"""The page's files, shipped as package data."""

# The page loads only its own files; photos, masks and downloads may come from the object store's
# origin (presigned S3 URLs), and uploads go straight there, so images and connections may leave.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src * data: blob:; "
        "connect-src *; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def check_playground_path(path: str) -> str:
    """``/playground`` style: one or more segments of letters, digits, ``-`` and ``_``; no trailing slash."""
    if not PLAYGROUND_PATH.match(path):
        raise ValueError(f"the playground path must look like /playground, got {path!r}")
    return path


class _PageFiles(StaticFiles):
    """Static files with the page's security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(_SECURITY_HEADERS)
        return response


def playground_routes(path: str) -> list[BaseRoute]:
    """The page at ``path + "/"`` (``path`` itself redirects there, so relative module URLs resolve)."""
    check_playground_path(path)

    async def to_page(request: Request) -> Response:
        return RedirectResponse(path + "/", status_code=308)

    return [
        Route(path, to_page, methods=["GET"], name="playground_redirect"),
        Mount(path, app=_PageFiles(directory=PLAYGROUND_DIR, html=True), name="playground"),
    ]
