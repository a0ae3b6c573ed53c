"""The service's own entry points (``python -m stack.worker``, ``python -m stack.serve``) as real
child processes, configured only through the ``S3_*`` environment, for crash and shutdown tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from server import settings_env
from server.config import Settings
from server.inference.artifacts import REPO_ROOT

STOP_TIMEOUT_S = 15.0


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a child process read ``settings`` back (plus ``extra`` S3_* values).

    Inherited S3_* variables are dropped so the parent's environment cannot leak in.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3_")}
    env.update(settings_env.as_env(settings))
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Child:
    """One running entry point; its stdout and stderr go to ``log``."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def kill_hard(self) -> None:
        """SIGKILL: no handler, no drain, no clean-up; what a crash looks like to the database."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT_S)

    def wait(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        return self.process.wait(timeout=timeout_s)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


@contextmanager
def child(module: str, env: Mapping[str, str], log_dir: Path, *args: str, name: str = "") -> Iterator[Child]:
    """``python -m module args`` from the repository root; killed when the block ends if still alive."""
    name = name or module.rsplit(".", 1)[-1]
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT
        )
    started = Child(name, process, log)
    try:
        yield started
    finally:
        if started.alive():
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)


def wait_for(condition: Callable[[], bool], *, timeout_s: float, what: str, poll_s: float = 0.02) -> None:
    """Poll ``condition`` until it holds; ``TimeoutError`` naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(poll_s)


def wait_http_ready(base_url: str, proc: Child, *, timeout_s: float = 60.0) -> None:
    """Until ``GET /health`` answers (any status: the process is serving); fails if the process died."""

    def up() -> bool:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.process.returncode}:\n{proc.output()[-3000:]}")
        try:
            httpx.get(f"{base_url}/health", timeout=1.0)
        except httpx.TransportError:
            return False
        return True

    wait_for(up, timeout_s=timeout_s, what=f"{proc.name} to serve {base_url}", poll_s=0.1)
