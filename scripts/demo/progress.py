"""Plain-terminal progress bars: one line redrawn with a carriage return (a line per change off a TTY)."""

from __future__ import annotations

import sys
from typing import TextIO

WIDTH = 28


class Bar:
    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = max(total, 1)
        self._stream = stream or sys.stdout
        self._tty = self._stream.isatty()
        self._last: tuple[int, str] | None = None

    def update(self, count: int, note: str = "") -> None:
        if self._last == (count, note):
            return
        self._last = (count, note)
        filled = round(WIDTH * min(count, self.total) / self.total)
        line = f"  {self.label:<20} [{'#' * filled}{'.' * (WIDTH - filled)}] {count}/{self.total} {note}"
        if self._tty:
            self._stream.write("\r" + line.ljust(100)[:100])
        else:
            self._stream.write(line.rstrip() + "\n")
        self._stream.flush()

    def finish(self, note: str = "") -> None:
        if self._last is None or self._last[0] < self.total or note:
            self.update(self._last[0] if self._last else self.total, note)
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()
