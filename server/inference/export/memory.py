"""Peak and current RSS of the export process, and the stages that record them.

The kernel's high-water mark (``VmHWM``) is reset at the start of every stage, so each stage reports
its own peak; freed memory is handed back between graphs (gc, then glibc's ``malloc_trim``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

log = logging.getLogger("export")


def reset_peak_rss() -> None:
    """Restart the kernel's high-water mark of this process (``VmHWM``), so each stage reports its own peak."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def release_memory() -> None:
    """Give freed memory back to the system between graphs (Python's gc, then glibc's free lists)."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class Stage:
    """Wall time and peak RSS of one export stage (the high-water mark is reset at its start)."""

    def __init__(self, stages: dict[str, dict[str, float]], name: str) -> None:
        self.stages, self.name = stages, name

    def __enter__(self) -> Stage:
        release_memory()
        reset_peak_rss()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stages[self.name] = {"s": round(time.perf_counter() - self.t0, 2), "peak_rss_bytes": peak_rss_bytes()}
        log.info("%s: %.1fs, peak RSS %.2f GB", self.name, self.stages[self.name]["s"], peak_rss_bytes() / 1e9)
        release_memory()
