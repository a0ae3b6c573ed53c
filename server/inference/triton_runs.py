"""Runs of the embedded Triton: the record each start leaves, and the reaping of crashed runs' leftovers.

A run is one server process leading a process group of its own (its python-backend stubs inherit
the group) and its shared-memory regions in /dev/shm (names under a per-run prefix). Its record,
``tritonserver.pid`` in the run's folder, names the server (= the group), the process that owns it
and the prefix. A run whose owner is dead is a leftover: after a crash (the server killed outright,
the service killed with it) its stubs keep running and hold their memory until they are reaped.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from server.errors import InferenceUnavailable
from server.inference import process_group, shm

log = logging.getLogger(__name__)
RECORD_NAME = "tritonserver.pid"


@dataclass(frozen=True)
class RunRecord:
    """What a start writes to ``tritonserver.pid``, so that a later start can reap a crashed run."""

    pid: int
    """The server's pid, also its process group id (it leads a group of its own)."""
    owner_pid: int
    """The process that started it: while that one lives, the run is not a leftover."""
    shm_prefix: str
    """Prefix of the python backend's shared-memory regions (/dev/shm) of this run."""

    def write(self, path: Path) -> None:
        path.write_text(json.dumps({"pid": self.pid, "owner_pid": self.owner_pid, "shm_prefix": self.shm_prefix}))

    @classmethod
    def read(cls, path: Path) -> RunRecord | None:
        try:
            raw = json.loads(path.read_text())
            return cls(pid=int(raw["pid"]), owner_pid=int(raw["owner_pid"]), shm_prefix=str(raw["shm_prefix"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None


SERVER_PROGRAM = "tritonserver"
STUB_PROGRAM = "triton_python_backend_stub"


_ACTIVE_WORK_DIRS: set[Path] = set()
"""Work folders of the servers this process runs now: a folder holds one server at a time."""


def claim_folder(work_dir: Path) -> None:
    """Mark ``work_dir`` as running a server of this process; raises when it already does."""
    folder = work_dir.resolve()
    if folder in _ACTIVE_WORK_DIRS:
        raise InferenceUnavailable(f"a Triton of this process already runs in {work_dir}")
    _ACTIVE_WORK_DIRS.add(folder)


def release_folder(work_dir: Path) -> None:
    _ACTIVE_WORK_DIRS.discard(work_dir.resolve())


def end_run(record: RunRecord, shm_dir: Path = shm.SHM_DIR) -> list[int]:
    """Kill what is left of a run (its server and stubs) and remove its shared-memory regions."""
    killed = [
        *process_group.kill_group(record.pid, SERVER_PROGRAM),
        *process_group.kill_group(record.pid, STUB_PROGRAM),
    ]
    if record.shm_prefix:
        for region in shm_dir.glob(f"{record.shm_prefix}*"):
            region.unlink(missing_ok=True)
    return sorted(set(killed))


def reap_leftovers(work_dir: Path, shm_dir: Path = shm.SHM_DIR) -> list[int]:
    """End the run recorded in ``work_dir`` unless its owner still lives; returns the pids killed."""
    path = work_dir / RECORD_NAME
    record = RunRecord.read(path)
    if record is None or work_dir.resolve() in _ACTIVE_WORK_DIRS:
        return []  # nothing recorded, or a server this process runs now
    if record.owner_pid != os.getpid() and process_group.alive(record.owner_pid):
        return []  # another live process runs this server: not a leftover
    killed = end_run(record, shm_dir)
    if killed:
        log.warning("reaped %d leftover Triton processes of an earlier run in %s: %s", len(killed), work_dir, killed)
    path.unlink(missing_ok=True)
    return killed


def reap_earlier_runs(root: Path) -> list[int]:
    """:func:`reap_leftovers` for every run folder under ``root`` (``<data dir>/triton``)."""
    if not root.is_dir():
        return []
    return [pid for run in sorted(root.iterdir()) if run.is_dir() for pid in reap_leftovers(run)]
