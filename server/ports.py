"""Loopback ports for servers the project starts itself (Triton, the demo stack, test servers)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PORT = 15000
"""Below this lie the well-known ports of servers a host may run (PostgreSQL, MinIO, dev servers)."""
_MIN_CHOICES = 1000
_ATTEMPTS = 200
_pick = random.Random()  # its own generator: a test that seeds ``random`` must not fix the ports


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The ports the kernel hands to outgoing connections; Linux's default where it cannot be read."""
    try:
        low, high = (int(part) for part in path.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def free_port(range_file: Path = EPHEMERAL_RANGE_FILE) -> int:
    """A loopback TCP port that was free a moment ago.

    The caller binds it later, so the port is chosen below the kernel's ephemeral range: a port the
    kernel picks itself (``bind(0)``) is one any outgoing connection on the host may take as its
    local port before the caller binds, which fails the server's start with ``EADDRINUSE``."""
    low, _ = ephemeral_range(range_file)
    choices = range(LOWEST_PORT, low)
    if len(choices) >= _MIN_CHOICES:
        for _ in range(_ATTEMPTS):
            port = _pick.choice(choices)
            if _bindable(port):
                return port
    return _kernel_port()


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _kernel_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
