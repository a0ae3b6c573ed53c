"""``make playground``: the whole stack in the foreground (``python -m stack.serve``) with the web
playground on, and its address printed. Ctrl-C or SIGTERM stops it like ``make serve``."""

from __future__ import annotations

import os

from server.config import Settings
from server.settings_env import SettingsError
from stack import serve

PLAYGROUND_PATH = "/playground"
"""Where ``make playground`` mounts the page unless ``S3_PLAYGROUND_PATH`` says otherwise."""


def playground_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.http.host in ("0.0.0.0", "::") else settings.http.host
    return f"http://{host}:{settings.http.port}{settings.gateway.playground_path or PLAYGROUND_PATH}/"


def main() -> int:
    os.environ.setdefault("S3_PLAYGROUND_PATH", PLAYGROUND_PATH)
    try:
        settings = Settings.from_env()
    except SettingsError as e:
        print(f"configuration error: {e}")
        return 2
    print(f"S3 playground: open {playground_url(settings)} once the stack is ready (Ctrl-C stops it)", flush=True)
    return serve.main()


if __name__ == "__main__":
    raise SystemExit(main())
