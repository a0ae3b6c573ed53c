"""A crashed service: a process that started an embedded Triton, then both killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from server.inference import process_group
from server.inference.artifacts import REPO_ROOT
from server.inference.triton_runs import RunRecord

_OWNER = """
import sys, time
from pathlib import Path
from server.inference.local_triton import LocalTriton
server = LocalTriton(Path(sys.argv[1]), Path(sys.argv[2]))
server.start()
print(server.pid, flush=True)
time.sleep(600)
"""


def _gone(pid: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while pid in process_group.members(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def crash_a_service(repository: Path, work_dir: Path) -> RunRecord:
    """Start a Triton from a child process, kill -9 the server, then kill -9 the child; the record is left."""
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(repository), str(work_dir)], cwd=REPO_ROOT, stdout=subprocess.PIPE
    )
    try:
        assert owner.stdout is not None
        server_pid = int(owner.stdout.readline())
        os.kill(server_pid, signal.SIGKILL)  # first, so the child's death signal finds no server to stop
        _gone(server_pid)
    finally:
        owner.kill()
        owner.wait()
    record = RunRecord.read(work_dir / "tritonserver.pid")
    assert record is not None and record.pid == server_pid and record.owner_pid == owner.pid
    return record
