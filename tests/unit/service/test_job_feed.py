"""The shared job feeds and the stream slots, with a fake job store at the port: how many reads a
crowd of watchers costs, which jobs a notification or a poll re-reads, and the per-user cap."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from server.errors import NotFound, StreamLimit
from server.service.job_feed import JobFeed, JobFeeds
from server.service.job_views import ProgressKey, progress_key
from server.service.streams import StreamPolicy, StreamSlots
from server.service.views import JobView

T0 = datetime(2026, 12, 1, tzinfo=UTC)
OWNER = "u1"


def _job_id(n: int) -> str:
    return f"00000000-0000-0000-0000-{n:012d}"


def _view(job_id: str, done: int = 0, status: str = "running") -> JobView:
    return JobView(
        job_id=job_id,
        user_id=OWNER,
        status=status,
        preset_id="interior",
        rule_id=None,
        total_items=10,
        done_items=done,
        failed_items=0,
        cost_per_item=1,
        credits_reserved=10,
        credits_spent=done,
        analyzed_concepts=[],
        set_key=None,
        error=None,
        created_at=T0,
        updated_at=T0 + timedelta(seconds=done),
        upload_deadline_at=T0,
        items=(),
    )


class FakeJobs:
    """The job store behind the feeds, counting what they ask of it."""

    def __init__(self, jobs: int) -> None:
        self.views = {_job_id(n): _view(_job_id(n)) for n in range(jobs)}
        self.job_reads: list[str] = []
        self.key_reads: list[int] = []

    def read_job(self, user_id: str, job_id: str) -> JobView:
        self.job_reads.append(job_id)
        view = self.views.get(job_id)
        if view is None or user_id != OWNER:
            raise NotFound("job not found")
        return view

    def read_keys(self, job_ids: Sequence[str]) -> Mapping[str, ProgressKey]:
        self.key_reads.append(len(job_ids))
        return {j: progress_key(self.views[j]) for j in job_ids if j in self.views}

    def advance(self, job_id: str, *, status: str = "running") -> None:
        view = self.views[job_id]
        self.views[job_id] = replace(
            view,
            done_items=view.done_items + 1,
            status=status,
            updated_at=view.updated_at + timedelta(seconds=1),
        )


class Notifications:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()

    async def __call__(self) -> AsyncIterator[str | None]:
        while True:
            yield await self.queue.get()


@contextlib.asynccontextmanager
async def _running_feeds(
    jobs: FakeJobs, pool: ThreadPoolExecutor, *, notifications: Notifications | None = None, poll_s: float = 0.05
) -> AsyncIterator[JobFeeds[int]]:
    """Feeds over ``jobs``, started for the block and closed after it, whatever the block raised."""
    policy = StreamPolicy(poll_interval_s=poll_s, notify_fallback_poll_s=3600.0)
    feeds: JobFeeds[int] = JobFeeds(
        read_job=jobs.read_job,
        read_keys=jobs.read_keys,
        render=lambda view: view.done_items,
        policy=policy,
        executor=pool,
        notifications=notifications,
    )
    feeds.start()
    try:
        yield feeds
    finally:
        await feeds.close()


async def _next_payload(feed: JobFeed[int], version: int) -> tuple[int, int]:
    got = await feed.next(version, timeout_s=2.0)
    assert got is not None, "no change arrived"
    return got[0], got[1].payload


@pytest.fixture
def pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=2)


def test_a_crowd_of_watchers_costs_one_read_per_change(pool: ThreadPoolExecutor) -> None:
    jobs = FakeJobs(1)
    job = _job_id(0)

    async def scenario() -> None:
        async with _running_feeds(jobs, pool) as feeds:

            async def watcher() -> list[int]:
                async with feeds.watch(OWNER, job) as feed:
                    seen = []
                    version, payload = await _next_payload(feed, 0)
                    seen.append(payload)
                    while payload < 2:
                        version, payload = await _next_payload(feed, version)
                        seen.append(payload)
                    return seen

            tasks = [asyncio.create_task(watcher()) for _ in range(200)]
            await asyncio.sleep(0.2)
            assert feeds.open_feeds == 1 and jobs.job_reads == [job]
            for _ in range(2):
                jobs.advance(job)
                await asyncio.sleep(0.2)
            results = await asyncio.gather(*tasks)
            assert all(r == [0, 1, 2] for r in results)
            # One read to open the feed, one per change: not one per watcher.
            assert jobs.job_reads == [job] * 3
            assert feeds.open_feeds == 0

    asyncio.run(scenario())


def test_one_poll_reads_the_keys_of_every_watched_job(pool: ThreadPoolExecutor) -> None:
    jobs = FakeJobs(300)

    async def scenario() -> None:
        async with (
            _running_feeds(jobs, pool, poll_s=0.1) as feeds,
            _watch_all(feeds, [_job_id(n) for n in range(300)]) as opened,
        ):
            assert len(opened) == 300
            jobs.job_reads.clear()
            jobs.key_reads.clear()
            await asyncio.sleep(0.35)
            polls = len(jobs.key_reads)
            assert 2 <= polls <= 4 and set(jobs.key_reads) == {300}, jobs.key_reads
            assert jobs.job_reads == []  # nothing moved: no job is read in full
            jobs.advance(_job_id(7))
            _, payload = await _next_payload(opened[7], opened[7].version)
            assert payload == 1 and jobs.job_reads == [_job_id(7)]

    asyncio.run(scenario())


@contextlib.asynccontextmanager
async def _watch_all(feeds: JobFeeds[int], job_ids: list[str]) -> AsyncIterator[list[JobFeed[int]]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(feeds.watch(OWNER, job_id)) for job_id in job_ids]


def test_a_notification_rereads_only_its_job_and_a_reconnect_rereads_all(pool: ThreadPoolExecutor) -> None:
    jobs = FakeJobs(3)
    notifications = Notifications()

    async def scenario() -> None:
        async with (
            _running_feeds(jobs, pool, notifications=notifications) as feeds,
            _watch_all(feeds, [_job_id(n) for n in range(3)]) as opened,
        ):
            jobs.job_reads.clear()
            jobs.advance(_job_id(1))
            jobs.advance(_job_id(2))
            await notifications.queue.put(_job_id(1))
            _, payload = await _next_payload(opened[1], opened[1].version)
            assert payload == 1 and jobs.job_reads == [_job_id(1)]
            # Job 2 changed without a notification: seen after a reconnect (None), not before.
            assert opened[2].latest is not None and opened[2].latest.payload == 0
            await notifications.queue.put(None)
            _, payload = await _next_payload(opened[2], opened[2].version)
            assert payload == 1
            await asyncio.sleep(0.05)
            assert sorted(jobs.job_reads) == sorted([_job_id(1), *(_job_id(n) for n in range(3))])
            assert jobs.key_reads == []  # with notifications, no fast poll

    asyncio.run(scenario())


def test_watching_a_missing_or_foreign_job_is_not_found(pool: ThreadPoolExecutor) -> None:
    jobs = FakeJobs(1)

    async def scenario() -> None:
        async with _running_feeds(jobs, pool) as feeds:
            for user, job in ((OWNER, _job_id(99)), ("stranger", _job_id(0)), (OWNER, "not-a-uuid")):
                with pytest.raises(NotFound):
                    async with feeds.watch(user, job):
                        pass
            assert feeds.open_feeds == 0
            # The stranger's attempt did not disturb the owner's feed.
            async with feeds.watch(OWNER, _job_id(0)) as feed:
                assert feed.latest is not None and feed.latest.payload == 0

    asyncio.run(scenario())


def test_a_final_snapshot_ends_polling_of_that_job(pool: ThreadPoolExecutor) -> None:
    jobs = FakeJobs(1)
    job = _job_id(0)

    async def scenario() -> None:
        async with _running_feeds(jobs, pool) as feeds, feeds.watch(OWNER, job) as feed:
            jobs.advance(job, status="done")
            _, payload = await _next_payload(feed, feed.version)
            assert feed.latest is not None and feed.latest.final and payload == 1
            jobs.key_reads.clear()
            await asyncio.sleep(0.2)
            assert jobs.key_reads == []

    asyncio.run(scenario())


def test_stream_slots_cap_each_user_and_come_back() -> None:
    slots = StreamSlots(StreamPolicy(max_per_user=2, retry_after_s=7))
    with slots.hold("a"), slots.hold("a"):
        with pytest.raises(StreamLimit) as refused, slots.hold("a"):
            pass
        assert refused.value.retry_after_s == 7 and refused.value.code == "STREAM_LIMIT"
        with slots.hold("b"):  # another user's cap is their own
            assert slots.open_count("b") == 1
        assert slots.open_count("a") == 2
    assert slots.open_count("a") == 0
    with slots.hold("a"):
        pass


def test_stream_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        StreamPolicy(max_per_user=0)
    with pytest.raises(ValueError):
        StreamPolicy(max_lifetime_s=0)
