"""The JobService process's ``/metrics`` endpoint: Prometheus text format on its own port.

Its own port rather than the REST shim's: the shim may run elsewhere, and a scrape must not depend
on the gRPC path it is meant to watch. Served by prometheus_client's threaded WSGI server.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

log = logging.getLogger(__name__)


@dataclass
class MetricsEndpoint:
    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_metrics_endpoint(registry: CollectorRegistry, *, host: str, port: int) -> MetricsEndpoint | None:
    """Serve ``registry`` at ``http://host:port/metrics``; None when the port cannot be bound.

    A taken port is logged, not fatal: users' requests matter more than their metrics.
    """
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        log.error("metrics endpoint not started: cannot bind %s:%d: %s", host, port, e)
        return None
    endpoint = MetricsEndpoint(server, thread)
    log.info("metrics on http://%s:%d/metrics", host, endpoint.port)
    return endpoint
