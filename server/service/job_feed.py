"""One change feed per watched job, shared by every stream that watches it.

A stream costs an entry in a set and a wait on an ``asyncio.Event``, never a thread: the feed reads
the job (on a small bounded pool) only when it may have changed, renders it once, and wakes all of
its watchers, who send that same rendering.

What says "may have changed":

- PostgreSQL: ``LISTEN`` (``server.db.notify``); every transaction that touches a job or its items
  sends ``NOTIFY`` with the job id. Watched jobs are still re-read now and then in case a notification
  was lost (the listening connection dropped), and all of them at once after a reconnect.
- SQLite (no notifications): one query per poll interval reads the progress key of every watched
  job, whatever their number, and only the jobs whose key moved are read in full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

from server.errors import NotFound, S3Error
from server.service.ids import resource_id
from server.service.job_state import TERMINAL
from server.service.job_views import ProgressKey, progress_key
from server.service.streams import StreamPolicy
from server.service.views import JobView

log = logging.getLogger(__name__)

T = TypeVar("T")

# Job ids in one progress query; SQLite allows 32766 parameters, PostgreSQL 65535.
_VERSIONS_CHUNK = 500


@dataclass(frozen=True)
class Snapshot(Generic[T]):
    key: ProgressKey
    final: bool
    payload: T


class JobFeed(Generic[T]):
    """The latest rendering of one job, and the event its watchers wait on."""

    def __init__(self, job_id: str, owner: str) -> None:
        self.job_id = job_id
        self.owner = owner
        self.watchers = 0
        self.latest: Snapshot[T] | None = None
        self.version = 0
        self.error: S3Error | None = None
        self.dirty = False
        self.refreshing = False
        self._changed = asyncio.Event()
        self.ready = asyncio.Event()

    @property
    def settled(self) -> bool:
        """Nothing more will change: the job ended or is gone."""
        return self.error is not None or (self.latest is not None and self.latest.final)

    def publish(self, snapshot: Snapshot[T]) -> None:
        self.latest = snapshot
        self.version += 1
        self._wake()

    def fail(self, error: S3Error) -> None:
        self.error = error
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        self.ready.set()

    async def next(self, seen_version: int, *, timeout_s: float) -> tuple[int, Snapshot[T]] | None:
        """The snapshot after ``seen_version``, waiting up to ``timeout_s`` for it (None if none came)."""
        if self.version == seen_version and self.error is None:
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):  # no extra task per waiting stream
                    await changed.wait()
        if self.error is not None:
            raise self.error
        if self.version == seen_version or self.latest is None:
            return None
        return self.version, self.latest


class JobFeeds(Generic[T]):
    """Every feed of this process. Lives on one event loop; its reads go to ``executor``."""

    def __init__(
        self,
        *,
        read_job: Callable[[str, str], JobView],
        read_keys: Callable[[Sequence[str]], Mapping[str, ProgressKey]],
        render: Callable[[JobView], T],
        policy: StreamPolicy,
        executor: Executor,
        notifications: Callable[[], AsyncIterator[str | None]] | None = None,
    ) -> None:
        self._read_job = read_job
        self._read_keys = read_keys
        self._render = render
        self._policy = policy
        self._executor = executor
        self._notifications = notifications
        self._feeds: dict[tuple[str, str], JobFeed[T]] = {}
        self._by_job: dict[str, set[JobFeed[T]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []

    @property
    def open_feeds(self) -> int:
        return len(self._feeds)

    def start(self) -> None:
        """Start the change detection; call on the loop the feeds will serve."""
        if self._notifications is None:
            self._background.append(asyncio.create_task(self._poll_forever(self._policy.poll_interval_s)))
        else:
            self._background.append(asyncio.create_task(self._listen_forever(self._notifications)))
            self._background.append(asyncio.create_task(self._poll_forever(self._policy.notify_fallback_poll_s)))

    async def close(self) -> None:
        tasks = [*self._background, *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._background.clear()

    @contextlib.asynccontextmanager
    async def watch(self, user_id: str, job_id: str) -> AsyncIterator[JobFeed[T]]:
        """The job's feed with its first snapshot ready; NOT_FOUND unless ``user_id`` owns the job."""
        # Keyed by owner too: a stranger's stream on a job id never touches the owner's feed.
        key = (user_id, resource_id(job_id, "job"))
        feed = self._feeds.get(key)
        if feed is None:
            feed = self._feeds[key] = JobFeed(key[1], user_id)
            self._by_job.setdefault(feed.job_id, set()).add(feed)
            self._kick(feed)
        feed.watchers += 1
        try:
            await feed.ready.wait()
            if feed.error is not None:
                raise feed.error
            yield feed
        finally:
            feed.watchers -= 1
            if feed.watchers == 0 and self._feeds.get(key) is feed:
                del self._feeds[key]
                same_job = self._by_job[feed.job_id]
                same_job.discard(feed)
                if not same_job:
                    del self._by_job[feed.job_id]

    def _kick(self, feed: JobFeed[T]) -> None:
        """Re-read ``feed`` soon; changes that arrive meanwhile fold into one more read."""
        if feed.refreshing:
            feed.dirty = True
            return
        feed.refreshing = True
        task = asyncio.create_task(self._refresh(feed))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _snapshot(self, owner: str, job_id: str) -> Snapshot[T]:
        view = self._read_job(owner, job_id)
        return Snapshot(progress_key(view), view.status in TERMINAL, self._render(view))

    async def _refresh(self, feed: JobFeed[T]) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                feed.dirty = False
                snapshot = await loop.run_in_executor(self._executor, self._snapshot, feed.owner, feed.job_id)
                if feed.latest is None or snapshot.key != feed.latest.key:
                    feed.publish(snapshot)
                if not feed.dirty:
                    return
        except NotFound as e:
            feed.fail(e)
        except S3Error as e:
            # The database is down or similar: watchers keep the last state and the next check retries.
            log.warning("reading watched job %s failed: %s", feed.job_id, e)
            if feed.latest is None:
                feed.fail(e)
        except Exception as e:
            log.error("reading watched job %s failed", feed.job_id, exc_info=e)
            if feed.latest is None:
                feed.fail(S3Error("internal error"))
        finally:
            feed.refreshing = False

    async def _poll_forever(self, interval_s: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval_s)
            watched = [f for f in self._feeds.values() if f.latest is not None and not f.settled]
            for start in range(0, len(watched), _VERSIONS_CHUNK):
                chunk = watched[start : start + _VERSIONS_CHUNK]
                try:
                    keys = await loop.run_in_executor(self._executor, self._read_keys, [f.job_id for f in chunk])
                except Exception as e:
                    log.warning("polling %d watched jobs failed: %s", len(chunk), e)
                    continue
                for feed in chunk:
                    if feed.latest is not None and keys.get(feed.job_id) != feed.latest.key:
                        self._kick(feed)

    async def _listen_forever(self, notifications: Callable[[], AsyncIterator[str | None]]) -> None:
        async for job_id in notifications():
            if job_id is None:  # (re)connected: anything may have changed while nobody listened
                for feed in list(self._feeds.values()):
                    if not feed.settled:
                        self._kick(feed)
                continue
            for feed in list(self._by_job.get(job_id, ())):
                if not feed.settled:
                    self._kick(feed)
