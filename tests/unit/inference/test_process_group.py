"""Ending a process group through /proc: its members die, other programs are left alone."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from server.inference import process_group

# A parent that starts a child and is then killed: the child stays in the group, as a stub does.
PARENT = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"


def _group() -> subprocess.Popen[bytes]:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], start_new_session=True)
    deadline = time.monotonic() + 10
    while len(process_group.members(parent.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(process_group.members(parent.pid)) == 2
    return parent


def test_a_group_outlives_its_leader_and_is_ended_whole() -> None:
    parent = _group()
    try:
        parent.kill()
        parent.wait()
        [orphan] = process_group.members(parent.pid)  # the leader is gone, its child is not
        assert process_group.kill_group(parent.pid, "time.sleep(60)") == [orphan]
        assert process_group.members(parent.pid) == []
    finally:
        process_group.kill_group(parent.pid, sys.executable)


def test_processes_of_another_program_are_not_signalled() -> None:
    parent = _group()
    try:
        assert process_group.kill_group(parent.pid, "tritonserver", timeout_s=0.2) == []
        assert len(process_group.members(parent.pid)) == 2
    finally:
        parent.kill()
        parent.wait()
        process_group.kill_group(parent.pid, sys.executable)


def test_the_init_and_own_groups_are_refused() -> None:
    for pgid in (0, 1):
        with pytest.raises(ValueError):
            process_group.kill_group(pgid, "anything")
