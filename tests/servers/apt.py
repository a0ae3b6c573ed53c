"""Debian packages the test tiers need, installed when missing (root only), so a clean CI machine
needs no manual step: the same two apt-get calls for every server the tests start."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence


def apt_install(packages: Sequence[str], missing: str, error: type[Exception]) -> None:
    """``apt-get update`` then ``apt-get install`` of ``packages``; ``error`` (naming ``missing``,
    what was not found) when not root or when apt-get fails, with its output."""
    if os.geteuid() != 0:
        raise error(f"{missing} and not running as root to install it: run `apt-get install -y {' '.join(packages)}`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *packages]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise error(
                f"`{' '.join(command)}` failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            )
