"""From SAM3 candidates to numbered instances per concept: pure numpy, shared by every backend.

Order of the numbers #1..#N within a concept: score descending; equal scores keep the order of
the prompt in the request, then SAM3's query slot (both stable). Several prompts of one concept
are merged into one list before duplicates are removed, so a wall found by "wall" and by "painted
wall" is one instance. A duplicate is a lower-scored candidate whose mask (probability >= 0.5)
overlaps a kept one with IoU >= ``duplicate_iou``. Candidates whose mask covers no pixel are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from server.inference.port import Instance
from server.inference.sam3_core import Candidates

DUPLICATE_IOU = 0.7
MASK_ON = 128
"""uint8 probability at or above which a mask pixel belongs to the instance (p >= 0.5)."""


def plan_phrases(concepts: Mapping[str, Sequence[str]]) -> tuple[list[str], list[list[str]]]:
    """Unique phrases of a request (first-seen order) and, per phrase, the concepts that asked for it."""
    phrases: dict[str, list[str]] = {}
    for concept, prompts in concepts.items():
        for prompt in prompts:
            text = prompt.strip()
            if not text:
                raise ValueError(f"concept {concept!r} has an empty prompt")
            owners = phrases.setdefault(text, [])
            if concept not in owners:
                owners.append(concept)
    return list(phrases), list(phrases.values())


def _rows_per_cell(photo: int, cells: int) -> npt.NDArray[np.int64]:
    """Photo pixels each mask cell covers when the mask is stretched nearest-neighbour to the photo."""
    source = (np.arange(photo, dtype=np.int64) * cells) // photo
    return np.bincount(source, minlength=cells).astype(np.int64)


def photo_area(mask_on: npt.NDArray[np.bool_], photo_hw: tuple[int, int]) -> int:
    """Pixels of the photo covered by a low-resolution mask stretched (nearest) over the whole photo."""
    rows = _rows_per_cell(photo_hw[0], mask_on.shape[0])
    cols = _rows_per_cell(photo_hw[1], mask_on.shape[1])
    return int(rows @ mask_on.astype(np.int64) @ cols)


def _iou(one: npt.NDArray[np.bool_], many: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    inter = np.logical_and(many, one).sum(axis=(1, 2))
    union = np.logical_or(many, one).sum(axis=(1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def concept_instances(
    found: Candidates,
    phrase_concepts: Sequence[Sequence[str]],
    concepts: Sequence[str],
    photo_hw: tuple[int, int],
    *,
    duplicate_iou: float = DUPLICATE_IOU,
) -> dict[str, list[Instance]]:
    """Every concept of ``concepts`` with its instances numbered #1..#N (see the module doc for the order)."""
    result: dict[str, list[Instance]] = {c: [] for c in concepts}
    on = found.masks >= MASK_ON
    for concept in concepts:
        rows = [i for i, p in enumerate(found.phrase_index) if concept in phrase_concepts[int(p)]]
        if not rows:
            continue
        idx = np.asarray(rows, dtype=np.int64)
        # lexsort: last key is primary. Score descending, then prompt position, then query slot.
        order = idx[np.lexsort((found.query_index[idx], found.phrase_index[idx], -found.scores[idx]))]
        kept: list[int] = []
        for i in order:
            if not on[i].any():
                continue
            if kept and float(_iou(on[i], on[kept]).max()) >= duplicate_iou:
                continue
            kept.append(int(i))
        for number, i in enumerate(kept, start=1):
            x0, y0, x1, y1 = (float(v) for v in found.boxes[i])
            result[concept].append(
                Instance(
                    concept=concept,
                    number=number,
                    score=float(found.scores[i]),
                    box_xyxy=(x0, y0, x1, y1),
                    area=photo_area(on[i], photo_hw),
                    mask=np.array(found.masks[i], dtype=np.uint8),
                )
            )
    return result


class SegmentsFromCandidates:
    """``Segmenter.segment`` for a backend that finds raw candidates (``candidates``): every backend
    segments the same way, one request for all phrases of a photo, so it is written here once."""

    _duplicate_iou: float = DUPLICATE_IOU

    async def candidates(self, image: npt.NDArray[np.uint8], phrases: Sequence[str]) -> Candidates:
        """Raw SAM3 output for every phrase: what each backend implements."""
        raise NotImplementedError

    async def segment(
        self, image: npt.NDArray[np.uint8], concepts: Mapping[str, Sequence[str]]
    ) -> dict[str, list[Instance]]:
        phrases, owners = plan_phrases(concepts)
        if not phrases:
            return {c: [] for c in concepts}
        found = await self.candidates(image, phrases)
        hw = (int(image.shape[0]), int(image.shape[1]))
        return concept_instances(found, owners, list(concepts), hw, duplicate_iou=self._duplicate_iou)
