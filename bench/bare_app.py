"""The reference of the API benchmark: a bare Starlette app under the same uvicorn, answering each route
with the very bytes the REST shim answered (captured first), so the two runs differ only in the work
behind the endpoint: the shim's middleware, the gRPC hop, the JobService and the database.

``uvicorn --factory bench.bare_app:create_app``; ``BENCH_BARE_BODIES`` names a JSON file
``{"GET /jobs/{job_id}": [status, body], ...}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BODIES_ENV = "BENCH_BARE_BODIES"
Endpoint = Callable[[Request], Awaitable[Response]]


def _endpoint(status: int, body: str) -> Endpoint:
    payload = body.encode()

    async def answer(request: Request) -> Response:
        if request.method == "POST":
            await request.body()  # read the request as the shim must
        return Response(payload, status_code=status, media_type="application/json")

    return answer


def create_app() -> Starlette:
    bodies: dict[str, list[object]] = json.loads(Path(os.environ[BODIES_ENV]).read_text())
    routes = []
    for key, (status, body) in bodies.items():
        method, path = key.split(" ", 1)
        routes.append(Route(path, _endpoint(int(str(status)), str(body)), methods=[method]))
    return Starlette(routes=routes)
