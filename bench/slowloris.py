"""Slow-loris against ``python -m stack.serve`` with its default settings: 150 connections that
never complete a request head (half of them idle, half sending one header byte per second); how many
are still open after ``WAIT_S``, and whether another client is served meanwhile.

Bounded: 150 loopback connections, ``WAIT_S`` seconds. ``python -m bench.slowloris`` prints JSON.
"""

from __future__ import annotations

import contextlib
import json
import socket
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from scripts.demo.stack import EmbeddedStack, StackConfig

CONNECTIONS = 150
WAIT_S = 15.0


def _open(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="slowloris-") as tmp:
        work = Path(tmp)
        config = StackConfig(
            data_dir=work / "data", log_path=work / "server.log", workers=0, env={"S3_INFERENCE": "onnx"}
        )
        with EmbeddedStack(config) as stack:
            stack.wait_healthy(300)
            parts = urlsplit(stack.base_url)
            address = (parts.hostname or "127.0.0.1", parts.port or 80)
            socks = [socket.create_connection(address, timeout=10) for _ in range(CONNECTIONS)]
            for i, sock in enumerate(socks):
                if i % 2:
                    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                sock.setblocking(False)
            started = time.monotonic()
            served_meanwhile = 0
            while time.monotonic() - started < WAIT_S:
                for i, sock in enumerate(socks):
                    if i % 2:
                        with contextlib.suppress(OSError):
                            sock.send(b"X")
                if httpx.get(stack.base_url + "/health", timeout=5).status_code == 200:
                    served_meanwhile += 1
                time.sleep(1.0)
            still_open = sum(_open(sock) for sock in socks)
            for sock in socks:
                sock.close()
    return {"connections": CONNECTIONS, "after_s": WAIT_S, "still_open": still_open, "health_ok": served_meanwhile}


if __name__ == "__main__":
    print(json.dumps(run()))
