"""``run_server()``: the app under a real uvicorn on a free loopback port, always shut down, with the
same protocol and limits as the served stack (``gateway_rest.http_server``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.applications import Starlette

from gateway_rest.http_server import HttpLimits, uvicorn_config
from server.ports import free_port


@contextmanager
def run_server(
    app: Starlette, *, port: int | None = None, start_timeout_s: float = 10.0, limits: HttpLimits | None = None
) -> Iterator[str]:
    """Serve ``app`` (lifespan included) in a thread; yields its base URL ``http://127.0.0.1:<port>``."""
    config = uvicorn_config(
        app,
        host="127.0.0.1",
        port=port or free_port(),
        limits=limits or HttpLimits(),
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
