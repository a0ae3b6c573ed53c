"""The one apt-get installer behind the PostgreSQL, Redis and browser tiers: its refusals name the fix."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from tests.servers import apt


class SetupFailed(RuntimeError):
    pass


def test_without_root_it_says_which_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(
        SetupFailed, match=r"redis-server not found and not running as root.*apt-get install -y redis-server"
    ):
        apt.apt_install(["redis-server"], "redis-server not found", SetupFailed)


def test_a_failed_apt_get_is_reported_with_its_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    ran: list[list[str]] = []

    def fake_run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        ran.append(command)
        failed = command[1] == "install"
        return subprocess.CompletedProcess(command, 100 if failed else 0, "", "E: Unable to locate package x")

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(SetupFailed, match=r"apt-get install -y --no-install-recommends a b` failed \(100\)"):
        apt.apt_install(["a", "b"], "a not found", SetupFailed)
    assert [c[1] for c in ran] == ["update", "install"]
