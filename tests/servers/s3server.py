"""A real S3-compatible server for the test suite: moto's standalone server in its own process.

It speaks the S3 REST protocol over a real socket, so the boto3 adapter and SigV4 presigned URLs are
exercised exactly as against AWS S3, R2 or MinIO.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from server.ports import free_port
from tests.servers.stop import stop_process

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class S3ServerSetupError(RuntimeError):
    """The S3-compatible server did not come up; the message carries its log."""


@dataclass(frozen=True)
class S3Endpoint:
    """Where the server listens and the credentials to sign requests with (moto accepts any)."""

    url: str
    access_key_id: str = "testing"
    secret_access_key: str = "testing"
    region: str = "us-east-1"


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path, deadline: float) -> bool:
    """True once the server answers HTTP; False if the process exited (e.g. the port was taken)."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            # moto's own management API: answers once the server is up, creates nothing.
            httpx.get(f"{url}/moto-api/data.json", timeout=1.0)
            return True
        except httpx.TransportError:
            time.sleep(0.1)
    raise S3ServerSetupError(f"moto server did not answer within {START_TIMEOUT_S}s:\n{_tail(log)}")


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


@contextmanager
def run_s3_server() -> Iterator[S3Endpoint]:
    """Start moto's server on a free loopback port; always stop it when the block ends."""
    base = Path(tempfile.mkdtemp(prefix="s3-moto-"))
    log = base / "server.log"
    process: subprocess.Popen[bytes] | None = None
    try:
        for _attempt in range(3):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            with log.open("ab") as sink:
                process = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                    stdin=subprocess.DEVNULL,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    cwd=base,
                )
            if _wait_until_ready(url, process, log, time.monotonic() + START_TIMEOUT_S):
                break
            # It exited at start-up: most likely the port was taken between probe and bind.
            process = None
        if process is None:
            raise S3ServerSetupError(f"moto server exited at start-up:\n{_tail(log)}")
        yield S3Endpoint(url=url)
    finally:
        if process is not None:
            stop_process(process, STOP_TIMEOUT_S)
        shutil.rmtree(base, ignore_errors=True)
