"""Waking idle workers when work becomes claimable, instead of polling the queue.

A transaction that makes work claimable (an item queued, retried, released, a set to package) flags
its session (``server.service.item_state.WORK_READY``). On commit:

- in this process, the database's :class:`WorkSignal` fires: workers of this process waiting on it
  claim at once (SQLite embedded needs nothing more: every worker is in the serving process);
- on PostgreSQL the same transaction also sent ``NOTIFY s3_work`` (``server.db.notify``); each
  worker process keeps one ``LISTEN`` connection that fires its own signal.

A waiter passes the generation it saw before its last (empty) claim, so a wake-up that lands
between that claim and the wait is not lost. Workers still claim after a long fallback timeout:
retries whose backoff ends and leases that expire send no notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class WorkSignal:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    @property
    def generation(self) -> int:
        return self._generation

    def fire(self) -> None:
        """Thread-safe: wakes every waiter, on whichever event loop it waits."""
        with self._lock:
            self._generation += 1
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(event.set)

    async def wait(self, since: int, timeout_s: float) -> bool:
        """Until fired after generation ``since`` or ``timeout_s``; True when fired."""
        event = asyncio.Event()
        key = (asyncio.get_running_loop(), event)
        with self._lock:
            if self._generation != since:
                return True
            self._waiters.add(key)
        try:
            async with asyncio.timeout(timeout_s):
                await event.wait()
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                self._waiters.discard(key)
