"""What one open job-event stream may cost: how many a user may hold, and for how long.

The count is kept per JobService process: a stream lives in one process for its whole life, so the
process that holds it is the one place that knows it is open, and a crash frees every slot at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from server.config.sections import JobLimits
from server.errors import StreamLimit


@dataclass(frozen=True)
class StreamPolicy:
    max_per_user: int = JobLimits.max_streams_per_user
    """Open streams one user may hold in one JobService process; one more is answered STREAM_LIMIT."""
    max_lifetime_s: float = JobLimits.stream_max_lifetime_s
    """A stream ends (cleanly, with no final event) after this long; the client reconnects."""
    poll_interval_s: float = 0.5
    """How often watched jobs are checked for changes when the database cannot notify (SQLite)."""
    notify_fallback_poll_s: float = 10.0
    """With PostgreSQL notifications, how often the watched jobs are still re-read, in case one was lost."""
    retry_after_s: int = 5
    """Retry-After of a STREAM_LIMIT answer: a slot frees when a job ends or a client disconnects."""

    def __post_init__(self) -> None:
        if self.max_per_user < 1:
            raise ValueError("max_per_user must be at least 1")
        if min(self.max_lifetime_s, self.poll_interval_s, self.notify_fallback_poll_s) <= 0:
            raise ValueError("stream intervals must be positive")


class StreamSlots:
    """Counts each user's open streams against ``policy.max_per_user``."""

    def __init__(self, policy: StreamPolicy) -> None:
        self._policy = policy
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def open_count(self, user_id: str) -> int:
        with self._lock:
            return self._open.get(user_id, 0)

    @contextmanager
    def hold(self, user_id: str) -> Iterator[None]:
        """One slot for the duration of the block; :class:`StreamLimit` when the user has none left."""
        limit = self._policy.max_per_user
        with self._lock:
            held = self._open.get(user_id, 0)
            if held >= limit:
                raise StreamLimit(
                    f"this user already has {held} open event streams (at most {limit}); close one first",
                    retry_after_s=self._policy.retry_after_s,
                )
            self._open[user_id] = held + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._open[user_id] - 1
                if left:
                    self._open[user_id] = left
                else:
                    del self._open[user_id]
