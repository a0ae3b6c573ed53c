"""``python -m server.serve`` (``make serve``): the whole stack in the foreground, on embedded
defaults unless the environment says otherwise (see server/config.py)."""

from __future__ import annotations

import asyncio
import sys

from server.config import Settings, SettingsError, resolve_secrets
from server.db.migrate import SchemaNotCurrent
from server.logs import configure_logging
from server.runtime import serve


def main() -> int:
    try:
        settings = resolve_secrets(Settings.from_env())
    except SettingsError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        asyncio.run(serve(settings))
    except SchemaNotCurrent as e:
        print(f"cannot start: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
