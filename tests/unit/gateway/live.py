"""``run_server()``: the app under a real uvicorn on a free loopback port, always shut down."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.applications import Starlette

from tests.servers.net import free_port


@contextmanager
def run_server(app: Starlette, *, port: int | None = None, start_timeout_s: float = 10.0) -> Iterator[str]:
    """Serve ``app`` (lifespan included) in a thread; yields its base URL ``http://127.0.0.1:<port>``."""
    # proxy_headers off, as the service serves it: the app decides whose X-Forwarded-For to believe.
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port or free_port(), log_level="warning", lifespan="on", proxy_headers=False
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
