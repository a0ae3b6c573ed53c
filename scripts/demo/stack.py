"""The embedded stack as a child process: started on free loopback ports, stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from server.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_CACHE = REPO_ROOT / ".artifacts" / "models"
"""Where ``make test`` keeps exported models; the demo shares it so the export runs once per checkout."""
STOP_TIMEOUT_S = 60.0


class StackError(RuntimeError):
    """The stack did not start, or died while the demo was running."""


def share_model_cache(data_dir: Path, cache: Path = MODEL_CACHE) -> None:
    """Point ``<data dir>/models`` at the checkout's model cache (the service exports into it)."""
    link = data_dir / "models"
    if link.exists() or link.is_symlink():
        return
    cache.mkdir(parents=True, exist_ok=True)
    link.symlink_to(cache, target_is_directory=True)


@dataclass(frozen=True)
class StackConfig:
    data_dir: Path
    log_path: Path
    workers: int = 2
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra ``S3_*`` settings for the server (the benchmarks use them; the demo runs the defaults)."""


class EmbeddedStack:
    """``with EmbeddedStack(config) as stack:`` runs ``python -m stack.serve`` until the block ends."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.operator_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.http_port}"
        self.operator_url = f"http://127.0.0.1:{self.operator_port}"
        """The operator surface: ``/metrics`` and the detailed ``/health`` (model, components)."""
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.exit_code: int | None = None

    def __enter__(self) -> EmbeddedStack:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        share_model_cache(self.config.data_dir)
        env = dict(os.environ)
        env.update(
            S3_DATA_DIR=str(self.config.data_dir),
            S3_HTTP_HOST="127.0.0.1",
            S3_HTTP_PORT=str(self.http_port),
            S3_GRPC_HOST="127.0.0.1",
            S3_GRPC_PORT=str(self.grpc_port),
            S3_OPERATOR_HOST="127.0.0.1",
            S3_OPERATOR_PORT=str(self.operator_port),
            S3_WORKERS=str(self.config.workers),
        )
        env.pop("S3_TRITON_URL", None)  # the demo always runs the embedded defaults
        env.pop("S3_DATABASE_URL", None)
        env.pop("S3_STORAGE", None)
        env.pop("S3_PUBLIC_BASE_URL", None)
        env.update(self.config.env)
        self.config.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.config.log_path.open("wb")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "stack.serve"],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Own process group: a Ctrl-C in the terminal reaches the demo, which then stops the
            # stack in order, instead of both racing to shut down.
            start_new_session=True,
        )

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def wait_healthy(self, timeout_s: float, on_wait: Callable[[float], None] | None = None) -> dict[str, Any]:
        """The detailed ``/health`` data (operator surface: components, model, model_meaningful) once
        every component is up; raises StackError on exit or timeout."""
        started = time.monotonic()
        deadline = started + timeout_s
        last = "no answer yet"
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                if not self.alive():
                    raise StackError(f"the server exited with code {self._returncode()} during start-up")
                try:
                    body = client.get(self.operator_url + "/health").json()
                except (httpx.HTTPError, ValueError) as e:
                    last = type(e).__name__
                else:
                    if body.get("success"):
                        data: dict[str, Any] = body["data"]
                        return data
                    last = str(body.get("error"))
                if on_wait is not None:
                    on_wait(time.monotonic() - started)
                time.sleep(0.5)
        raise StackError(f"the server was not healthy after {timeout_s:.0f} s (last: {last})")

    def _returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def stop(self) -> int | None:
        """SIGTERM and wait for the orderly shutdown (workers drain, Triton stops); SIGKILL if it hangs."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None:
            self.exit_code = process.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.exit_code

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.config.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
