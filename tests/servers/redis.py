"""A real, throw-away Redis server for the tests that share rate limits between processes.

``run_redis()`` starts Debian's ``redis-server`` on a free loopback port with no persistence, in a
temporary directory, and always stops it and removes the directory when the block ends. When the
binary is missing and we are root, Debian's ``redis-server`` package is installed first (as
``tests/servers/postgres.py`` does for PostgreSQL), so a clean CI machine needs no manual step.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from server.ports import free_port
from tests.servers.apt import apt_install
from tests.servers.stop import stop_process

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


class RedisSetupError(RuntimeError):
    """The server could not be installed or started; the message says why."""


def find_redis_server() -> str | None:
    return shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.access(p, os.X_OK)), None
    )


def install_redis() -> str:
    """Install Debian's ``redis-server`` package (root only) and return the binary's path."""
    apt_install(["redis-server"], "redis-server not found", RedisSetupError)
    found = find_redis_server()
    if found is None:
        raise RedisSetupError("installed `redis-server` but found no redis-server binary")
    return found


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        """The URL form ``S3_RATE_LIMIT_STORAGE_URL`` takes."""
        return f"redis://{self.host}:{self.port}/0"

    def command(self, *words: str) -> bytes:
        """One command over the wire protocol (RESP), its raw reply: enough for FLUSHALL or PING."""
        parts = [f"*{len(words)}\r\n".encode()]
        for w in words:
            parts.append(f"${len(w.encode())}\r\n{w}\r\n".encode())
        with socket.create_connection((self.host, self.port), timeout=5) as s:
            s.sendall(b"".join(parts))
            return s.recv(65536)

    def flush(self) -> None:
        reply = self.command("FLUSHALL")
        if not reply.startswith(b"+OK"):
            raise RedisSetupError(f"FLUSHALL answered {reply!r}")


def _wait_ready(server: RedisServer, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RedisSetupError(f"redis-server exited with {server.process.returncode}: {log.read_text()[-2000:]}")
        try:
            if server.command("PING").startswith(b"+PONG"):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RedisSetupError(f"redis-server did not answer PING in {START_TIMEOUT_S}s")


@contextmanager
def run_redis() -> Iterator[RedisServer]:
    """Start a private Redis on a free loopback port; stop it and delete its directory afterwards."""
    binary = find_redis_server() or install_redis()
    base = Path(tempfile.mkdtemp(prefix="s3-redis-"))
    log = base / "redis.log"
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(base), "--logfile", str(log), "--daemonize", "no", "--protected-mode", "yes"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer("127.0.0.1", port, process)
    try:
        _wait_ready(server, log)
        yield server
    finally:
        stop_process(process, STOP_TIMEOUT_S)
        shutil.rmtree(base, ignore_errors=True)
