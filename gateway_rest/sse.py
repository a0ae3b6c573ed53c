"""Server-Sent Events for ``GET /jobs/{id}/events``, fed by the JobService's ``WatchJob`` stream.

Wire format, one event per job update::

    event: job
    id: 3
    data: {"job_id": ..., "status": "running", ...}

When the job reaches a terminal state the last ``job`` event is followed by ``event: end`` (data:
``{"job_id", "status"}``) and the stream closes; clients must close their EventSource then, or it
reconnects. A comment line (``: keep-alive``) goes out when nothing happened for a while, so proxies
keep the connection open and a vanished client is noticed. If the JobService fails mid-stream an
``event: error`` with ``{"code", "message"}`` is sent and the stream closes. When the client goes away
the gRPC call is cancelled.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import grpc
from starlette.types import Receive, Scope, Send

from gateway_rest import codec
from gateway_rest.errors import from_rpc_error
from protos.s3.v1 import jobs_pb2 as jpb

JobStream = grpc.aio.UnaryStreamCall[jpb.JobRef, jpb.JobEvent]


def format_event(event: str, data: Any, event_id: int | None = None) -> bytes:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    # Compact JSON has no newlines, so one data line holds it.
    lines.append("data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False))
    return ("\n".join(lines) + "\n\n").encode()


KEEP_ALIVE = b": keep-alive\n\n"


async def job_events(
    call: JobStream, events: AsyncIterator[jpb.JobEvent], first: jpb.JobEvent, *, keepalive_s: float
) -> AsyncIterator[bytes]:
    """The SSE bytes of a watch whose first event was already read (errors before it are envelopes)."""
    count = 0

    def encode(event: jpb.JobEvent) -> list[bytes]:
        nonlocal count
        count += 1
        out = [format_event("job", codec.encode(event.job), count)]
        if event.final:
            out.append(format_event("end", {"job_id": event.job.job_id, "status": event.job.status}))
        return out

    pending: asyncio.Future[jpb.JobEvent] | None = None
    try:
        for chunk in encode(first):
            yield chunk
        if first.final:
            return
        while True:
            if pending is None:
                pending = asyncio.ensure_future(events.__anext__())
            # Waiting does not cancel the read: a quiet period only produces a keep-alive comment.
            done, _ = await asyncio.wait({pending}, timeout=keepalive_s)
            if not done:
                yield KEEP_ALIVE
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            finally:
                pending = None
            for chunk in encode(event):
                yield chunk
            if event.final:
                return
    except grpc.aio.AioRpcError as e:
        failure = from_rpc_error(e)
        yield format_event("error", {"code": failure.code, "message": failure.message})
    finally:
        if pending is not None:
            pending.cancel()
        call.cancel()


class EventStreamResponse:
    """Streams ``body`` and stops it the moment the client disconnects.

    Starlette's StreamingResponse only watches for a disconnect under ASGI spec < 2.4; doing it here
    keeps a watch from outliving its client under any server, so no gRPC stream is left open.
    """

    headers = (
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-cache"),
        # Ask buffering reverse proxies (nginx) to pass events through at once.
        (b"x-accel-buffering", b"no"),
    )

    def __init__(self, body: AsyncIterator[bytes]) -> None:
        self.body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def stream() -> None:
            await send({"type": "http.response.start", "status": 200, "headers": list(self.headers)})
            async for chunk in self.body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        async with anyio.create_task_group() as group:

            async def run(job: Any) -> None:
                await job()
                group.cancel_scope.cancel()

            group.start_soon(run, stream)
            group.start_soon(run, until_disconnect)
        aclose = getattr(self.body, "aclose", None)
        if aclose is not None:
            await aclose()
