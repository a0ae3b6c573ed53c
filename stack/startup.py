"""What every process entry point (``stack.serve``, ``stack.worker``) does with its settings: read
and resolve them once, and turn a refused setting into one line on stderr and exit code 2."""

from __future__ import annotations

import sys

from server.config import Settings, resolve_secrets
from server.settings_env import SettingsError

CONFIG_ERROR_EXIT_CODE = 2
"""The exit code of a process that refused its configuration (like a command-line usage error)."""


def load_settings() -> Settings:
    """Settings from the environment with their secrets resolved (created in the data dir if unset)."""
    return resolve_secrets(Settings.from_env())


def refuse(error: SettingsError) -> int:
    """Print ``configuration error: <message naming the variable>``; the exit code to return."""
    print(f"configuration error: {error}", file=sys.stderr)
    return CONFIG_ERROR_EXIT_CODE


def cannot_start(error: Exception) -> int:
    """Print ``cannot start: <why>`` (e.g. the database schema is behind this code); the exit code."""
    print(f"cannot start: {error}", file=sys.stderr)
    return CONFIG_ERROR_EXIT_CODE
