"""``WatchJob``: a job's progress as a stream that holds no thread.

A stream is a coroutine waiting on its job's shared feed (``server.service.job_feed``). It counts
against the user's open streams (STREAM_LIMIT past the cap), and it ends:

- after the job's final event;
- cleanly, with no final event, once it has been open ``max_lifetime_s`` (clients reconnect);
- with INVALID_TOKEN when the token it was opened with expires (clients sign in again first); a
  stream token (``CreateStreamToken``, for browsers' EventSource) expires within minutes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from protos.s3.v1 import jobs_pb2 as jpb
from server.clock import utcnow
from server.errors import InvalidToken
from server.grpc_api import convert
from server.service.job_feed import JobFeeds
from server.service.job_state import TERMINAL
from server.service.streams import StreamPolicy, StreamSlots
from server.service.tokens import TokenService
from server.service.views import JobView


def job_event(view: JobView, download_url: Callable[[str], str]) -> jpb.JobEvent:
    """One event of the stream: the job with its items, without their instances."""
    message = convert.job(view, download_url)
    for item in message.items:
        del item.instances[:]
    return jpb.JobEvent(job=message, final=view.status in TERMINAL)


class JobWatch:
    def __init__(
        self, tokens: TokenService, feeds: JobFeeds[jpb.JobEvent], slots: StreamSlots, policy: StreamPolicy
    ) -> None:
        self._tokens = tokens
        self._feeds = feeds
        self._slots = slots
        self._policy = policy

    async def events(
        self, authorization: str | None, stream_token: str | None, job_id: str
    ) -> AsyncIterator[jpb.JobEvent]:
        """The job now, then whenever its progress changes, until it ends (see the module doc).
        Opened with a bearer token, or, without one, with a stream token for this job."""
        bearer = self._tokens.bearer_or_stream(authorization, stream_token, job_id)
        opened = time.monotonic()
        token_ends = opened + (bearer.expires_at - utcnow()).total_seconds()
        lifetime_ends = opened + self._policy.max_lifetime_s
        with self._slots.hold(bearer.user_id):
            async with self._feeds.watch(bearer.user_id, job_id) as feed:
                version = 0
                last_key = None
                while True:
                    now = time.monotonic()
                    if now >= token_ends:
                        raise InvalidToken("the token has expired; sign in again and reopen the stream")
                    if now >= lifetime_ends:
                        return
                    got = await feed.next(version, timeout_s=min(token_ends, lifetime_ends) - now)
                    if got is None:
                        continue
                    version, snapshot = got
                    if snapshot.key != last_key:
                        last_key = snapshot.key
                        yield snapshot.payload
                    if snapshot.final:
                        return
