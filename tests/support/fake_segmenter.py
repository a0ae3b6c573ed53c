"""The base of the tests' segmenters at the port boundary (``server.inference.port.Segmenter``)."""

from __future__ import annotations

from server.inference.port import SegmenterInfo


class FakeSegmenter:
    """What a fake segmenter does not vary: named ``fake:sam3`` (not meaningful), always ready,
    nothing to close. A subclass answers ``segment`` (and may name itself otherwise)."""

    @property
    def info(self) -> SegmenterInfo:
        return SegmenterInfo("fake:sam3", meaningful=False)

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None
