"""Counting tests of the rate limiter start clear of a window's edge.

The limits library's sliding-window counter weighs the previous window by the time left in it and
floors the sum, so in the moment after an edge (every multiple of the window, epoch-aligned) one
request past the limit can pass. A test that counts exactly to a limit waits, when an edge is near,
until it has passed."""

from __future__ import annotations

import time
from collections.abc import Sequence


def clear_of_window_edges(windows_s: Sequence[int], margin_s: float) -> None:
    """Return once no window of ``windows_s`` reaches an edge within the next ``margin_s`` seconds."""
    while True:
        to_edge = min(w - time.time() % w for w in windows_s)
        if to_edge >= margin_s:
            return
        time.sleep(to_edge + 0.05)
