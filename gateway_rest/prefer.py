"""``Prefer: wait=N`` (RFC 7240) on execute and ``GET /jobs/{id}``: answer once the job has ended,
or after N seconds with its state then, whichever comes first (as Replicate's API does).

N is capped by the app's ``prefer_wait_max_s``; the answer says what was honoured in
``Preference-Applied: wait=<N used>``. A malformed preference is ignored, as RFC 7240 asks.

The wait holds no thread: the shim re-reads the job over its ``grpc.aio`` channel between
``asyncio.sleep`` pauses. (Once the JobService publishes a per-job change feed, this loop should
await that instead of polling.)
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable

from protos.s3.v1 import types_pb2 as pb
from server.service.job_state import TERMINAL

PREFERENCE_APPLIED = "Preference-Applied"
_WAIT = re.compile(r"\s*wait\s*=\s*\"?([0-9]{1,9})\"?\s*", re.IGNORECASE)


def requested_wait_s(prefer: str | None, *, max_s: int) -> int | None:
    """The wait to honour from ``Prefer`` header values (comma- or semicolon-separated), capped at
    ``max_s``; ``None`` when no valid ``wait`` preference was sent."""
    if not prefer:
        return None
    for part in re.split(r"[,;]", prefer):
        match = _WAIT.fullmatch(part)
        if match is not None:
            return min(int(match.group(1)), max_s)
    return None


async def until_ended(job: pb.Job, read: Callable[[], Awaitable[pb.Job]], *, wait_s: float, poll_s: float) -> pb.Job:
    """``job`` once terminal, re-read with ``read`` every ``poll_s`` for at most ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while job.status not in TERMINAL:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        await asyncio.sleep(min(poll_s, left))
        job = await read()
    return job
