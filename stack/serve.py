"""``python -m stack.serve`` (``make serve``): the whole stack in the foreground, on embedded
defaults unless the environment says otherwise (see server/config.py). A refused setting ends it
with one line naming the variable and exit code 2 (``stack.startup``)."""

from __future__ import annotations

import asyncio

from server.db.migrate import SchemaNotCurrent
from server.logs import configure_logging
from server.settings_env import SettingsError
from stack.runtime import serve
from stack.startup import cannot_start, load_settings, refuse


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as e:
        return refuse(e)
    configure_logging(settings.observability.log_level)
    try:
        asyncio.run(serve(settings))
    except SettingsError as e:  # one only checkable while the stack opens
        return refuse(e)
    except SchemaNotCurrent as e:
        return cannot_start(e)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
