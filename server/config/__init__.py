"""Settings, read once at start-up from the environment into frozen dataclasses.

:class:`Settings` (``server.config.settings``) is the data dir and one section per component
(``server.config.sections``); a component is given its section, not the whole. Nothing here opens a
connection or touches the disk: ``resolve_secrets`` is the one step that may create files, and the
composition root calls it.
"""

from __future__ import annotations

from server.config.kept_secrets import check_worker_token, resolve_secrets
from server.config.sections import PLAYGROUND_PATH, RateLimit, heartbeat_for
from server.config.settings import Settings

__all__ = ["PLAYGROUND_PATH", "RateLimit", "Settings", "check_worker_token", "heartbeat_for", "resolve_secrets"]
