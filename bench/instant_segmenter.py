"""A benchmark instrument, not a model: a Segmenter that answers at once with one fixed instance per
concept (the centre of the photo). With it, an album's time is the pipeline's own (queue, database,
objects, applier, renditions, packaging) without inference, which is what the queue benchmark measures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from server.inference.port import Instance, SegmenterInfo

MASK_SIDE = 288
"""SAM3's low-resolution mask size; the pipeline upsamples it to the photo like a real one."""


def _centre_mask() -> npt.NDArray[np.uint8]:
    mask = np.zeros((MASK_SIDE, MASK_SIDE), np.uint8)
    q = MASK_SIDE // 4
    mask[q : MASK_SIDE - q, q : MASK_SIDE - q] = 255
    return mask


class InstantSegmenter:
    """Implements ``server.inference.port.Segmenter``."""

    def __init__(self) -> None:
        self._mask = _centre_mask()
        self._mask.setflags(write=False)

    @property
    def info(self) -> SegmenterInfo:
        return SegmenterInfo(name="bench:instant", meaningful=False)

    async def segment(
        self, image: npt.NDArray[np.uint8], concepts: Mapping[str, Sequence[str]]
    ) -> dict[str, list[Instance]]:
        h, w = image.shape[:2]
        box = (w / 4, h / 4, w * 3 / 4, h * 3 / 4)
        area = (w - 2 * (w // 4)) * (h - 2 * (h // 4))
        return {c: [Instance(c, 1, 0.99, box, area, self._mask)] for c in concepts}

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None
