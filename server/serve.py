"""``python -m server.serve`` (``make serve``): the whole stack in the foreground, on embedded
defaults unless the environment says otherwise (see server/config.py)."""

from __future__ import annotations

import asyncio
import sys

from server.config import Settings, SettingsError
from server.logs import configure_logging
from server.runtime import serve


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
