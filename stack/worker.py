"""``python -m stack.worker``: pipeline workers as a separate process (same settings as the server).

An entry point of its own, so that the stack runner (``stack.runtime``) may import the worker loop
without the worker loop importing the stack runner back.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from server.config import Settings, check_worker_token
from server.db.migrate import SchemaNotCurrent
from server.logs import configure_logging
from server.settings_env import SettingsError
from server.work.remote_worker import run_api_workers
from stack.runtime import run_workers
from stack.startup import cannot_start, load_settings, refuse


def main(argv: list[str] | None = None) -> int:
    """``python -m stack.worker``: pipeline workers as a separate process."""
    parser = argparse.ArgumentParser(description="S3 pipeline workers (same settings as the server)")
    parser.add_argument("--workers", type=int, default=None, help="how many workers (default S3_WORKERS or 1)")
    parser.add_argument(
        "--api",
        default=None,
        metavar="HOST:PORT[,HOST:PORT...]",
        help="work through the WorkerService of these JobService replicas (no database, no storage credentials)",
    )
    parser.add_argument("--worker-token", default=None, help="with --api: the worker token (default S3_WORKER_TOKEN)")
    parser.add_argument("--triton-url", default=None, help="Triton gRPC host:port (default S3_TRITON_URL)")
    args = parser.parse_args(argv)
    if args.api is not None:
        return _main_api(args)
    try:
        settings = load_settings()
    except SettingsError as e:
        return refuse(e)
    # Same JSON logs as the server: without this a worker process reports nothing below WARNING.
    configure_logging(settings.observability.log_level)

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


def _main_api(args: argparse.Namespace) -> int:
    """``--api``: settings from the environment as well, but no secrets resolved and no database."""
    try:
        settings = Settings.from_env()
        if args.triton_url:
            settings = settings.changed(triton_url=args.triton_url)
        token = args.worker_token or settings.auth.worker_token
        if token is None:
            raise SettingsError("--api needs the worker token: set S3_WORKER_TOKEN (or --worker-token)")
        check_worker_token(token, callback_secret=None)
        if settings.inference.triton_url is None:
            raise SettingsError("--api needs a Triton server: set S3_TRITON_URL (or --triton-url)")
    except SettingsError as e:
        return refuse(e)
    configure_logging(settings.observability.log_level)
    targets = [t.strip() for t in args.api.split(",") if t.strip()]
    count = max(args.workers if args.workers is not None else settings.queue.workers, 1)

    async def go() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await run_api_workers(stopping, targets=targets, token=token, count=count, settings=settings)

    asyncio.run(go())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
