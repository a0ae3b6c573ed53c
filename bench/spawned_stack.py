"""The whole stack as real processes on loopback, for the load tools: one Triton serving the tiny SAM3,
``python -m stack.serve`` and, when asked, separate ``python -m stack.worker`` processes, on a
throw-away PostgreSQL server or a SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def spawned_stack(database: str, worker_processes: int, work: Path, *, max_users: int) -> Iterator[tuple[str, str]]:
    """The stack as real loopback processes; yields ``(REST base URL, database URL)``, stops it all.
    ``max_users``: how many simulated users sign up and poll from this one address."""
    # The test suite's server helpers: the same throw-away PostgreSQL and process handling.
    from server.inference.artifacts import REPO_ROOT, ensure_artifact
    from server.inference.local_triton import LocalTriton
    from server.ports import free_port
    from tests.servers.postgres import run_postgres
    from tests.support.processes import child, wait_http_ready

    with contextlib.ExitStack() as stack:
        artifact = asyncio.run(ensure_artifact(REPO_ROOT / ".artifacts", None))
        triton = LocalTriton(artifact.cpu_repository(work / "triton" / "repository"), work / "triton")
        triton.start()
        stack.callback(triton.stop)
        if database == "postgres":
            database_url = stack.enter_context(run_postgres()).url()
        else:
            database_url = f"sqlite:///{work / 's3.db'}"
        http_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("S3_")}
        env.update(
            S3_DATA_DIR=str(work / "data"),
            S3_DATABASE_URL=database_url,
            S3_HTTP_PORT=str(http_port),
            S3_GRPC_PORT=str(free_port()),
            S3_TRITON_URL=triton.url,
            S3_WORKERS="0" if worker_processes else "1",
            S3_LOG_LEVEL="WARNING",
            # Every simulated user signs up and polls from this one address: room for the most users
            # a run may have (each at most ten requests a second), the per-user limit as shipped.
            S3_RATE_LIMIT_SIGNUP_ADDRESS=f"{max_users}/600",
            S3_RATE_LIMIT_ADDRESS=f"{max_users * 600}/60",
        )
        base = f"http://127.0.0.1:{http_port}"
        processes = [stack.enter_context(child("stack.serve", env, work / "logs"))]
        wait_http_ready(base, processes[0])
        for n in range(worker_processes):
            processes.append(stack.enter_context(child("stack.worker", env, work / "logs", name=f"worker-{n}")))
        try:
            yield base, database_url
        finally:
            for p in reversed(processes):  # drain first; child() kills whatever is left
                if p.alive():
                    p.signal(signal.SIGTERM)
            for p in processes:
                with contextlib.suppress(Exception):
                    p.wait(30)
