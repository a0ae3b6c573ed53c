"""The processes of one process group, found and ended through ``/proc`` (Linux).

The embedded Triton runs in a process group of its own, so its python-backend stubs (children of the
server) share the group id, which is the server's pid. The group outlives the server when the server
is killed outright: the stubs keep running, and the group id with them. Killing the group is how the
stubs are ended, during a stop and when a later start finds leftovers of a run that crashed.

Nothing here signals a process whose command line does not name the expected program, so a reused
group id never ends somebody else's processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

PROC = Path("/proc")


def _group_of(stat: str) -> int | None:
    # /proc/<pid>/stat: "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses.
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[2]) if len(fields) > 2 else None


def command_line(pid: int, proc: Path = PROC) -> str:
    try:
        return (proc / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def members(pgid: int, proc: Path = PROC) -> list[int]:
    """Pids of the live (not zombie) processes whose process group is ``pgid``."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        state = stat[stat.rfind(")") + 2 : stat.rfind(")") + 3]
        if state != "Z" and _group_of(stat) == pgid:
            found.append(int(entry.name))
    return sorted(found)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(pgid: int, program: str, *, timeout_s: float = 10.0, proc: Path = PROC) -> list[int]:
    """SIGKILL every member of ``pgid`` whose command line contains ``program``; wait until they are gone.

    Returns the pids that were killed (empty when none was left).
    """
    if pgid <= 1:
        raise ValueError(f"not a process group of ours: {pgid}")
    targets = [pid for pid in members(pgid, proc) if program in command_line(pid, proc)]
    for pid in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while any(pid in members(pgid, proc) for pid in targets) and time.monotonic() < deadline:
        time.sleep(0.05)
    return targets
