"""``tests.servers.stop.stop_process``: a server that ignores SIGTERM is killed, one that has exited is left."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from tests.servers.stop import stop_process

_IGNORES_SIGTERM = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(60)"
)


def test_a_process_that_ignores_sigterm_is_killed() -> None:
    process = subprocess.Popen([sys.executable, "-c", _IGNORES_SIGTERM], stdout=subprocess.PIPE)
    assert process.stdout is not None
    process.stdout.readline()  # the handler is in place
    started = time.monotonic()
    stop_process(process, timeout_s=0.5)
    assert process.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10


def test_a_process_that_has_exited_is_left_as_it_ended() -> None:
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait(timeout=30)
    stop_process(process, timeout_s=0.5)
    assert process.returncode == 3
