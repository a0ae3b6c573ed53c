"""Socket helpers shared by the server fixtures."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port that was free a moment ago (callers retry if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
