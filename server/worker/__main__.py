"""``python -m server.worker``: pipeline workers as a separate process (same settings as the server).

An entry point of its own, so that the stack runner (``server.runtime``) may import the worker loop
without the worker loop importing the stack runner back.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from server.config import SettingsError
from server.db.migrate import SchemaNotCurrent
from server.logs import configure_logging
from server.runtime import run_workers
from server.startup import cannot_start, load_settings, refuse


def main(argv: list[str] | None = None) -> int:
    """``python -m server.worker``: pipeline workers as a separate process."""
    parser = argparse.ArgumentParser(description="S3 pipeline workers (same settings as the server)")
    parser.add_argument("--workers", type=int, default=None, help="how many workers (default S3_WORKERS or 1)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as e:
        return refuse(e)
    # Same JSON logs as the server: without this a worker process reports nothing below WARNING.
    configure_logging(settings.log_level)

    async def go() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await run_workers(stopping, count=args.workers, settings=settings)

    try:
        asyncio.run(go())
    except SettingsError as e:  # one only checkable while the stack opens
        return refuse(e)
    except SchemaNotCurrent as e:
        return cannot_start(e)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
