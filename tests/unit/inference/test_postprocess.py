"""Post-processing: duplicates, numbering order, prompt merging, areas at photo size."""

from __future__ import annotations

import numpy as np
import pytest

from server.inference.postprocess import concept_instances, photo_area, plan_phrases
from server.inference.sam3_core import Candidates


def candidates(rows: list[tuple[int, int, float, tuple[slice, slice]]], size: int = 8) -> Candidates:
    masks = np.zeros((len(rows), size, size), np.uint8)
    for i, (_, _, _, region) in enumerate(rows):
        masks[i][region] = 255
    return Candidates(
        phrase_index=np.array([r[0] for r in rows], np.int32),
        query_index=np.array([r[1] for r in rows], np.int32),
        scores=np.array([r[2] for r in rows], np.float32),
        boxes=np.array([[i, i, i + 1, i + 1] for i in range(len(rows))], np.float32).reshape(-1, 4),
        masks=masks,
    )


LEFT = (slice(0, 8), slice(0, 4))
RIGHT = (slice(0, 8), slice(4, 8))
TOP = (slice(0, 2), slice(0, 8))


def test_plan_phrases_dedupes_and_records_owners() -> None:
    phrases, owners = plan_phrases({"Wall": ["wall", "painted wall"], "Paint": ["painted wall "], "Door": []})
    assert phrases == ["wall", "painted wall"]
    assert owners == [["Wall"], ["Wall", "Paint"]]
    with pytest.raises(ValueError, match="empty prompt"):
        plan_phrases({"Wall": ["  "]})


def test_numbering_is_score_descending_and_duplicates_are_removed() -> None:
    found = candidates([(0, 0, 0.6, LEFT), (0, 1, 0.9, RIGHT), (0, 2, 0.8, RIGHT), (0, 3, 0.7, TOP)])
    out = concept_instances(found, [["Wall"]], ["Wall", "Floor"], (80, 160))
    wall = out["Wall"]
    assert [i.number for i in wall] == [1, 2, 3]
    assert [i.score for i in wall] == pytest.approx([0.9, 0.7, 0.6])  # 0.8 duplicates 0.9 (IoU 1)
    assert out["Floor"] == []
    assert wall[0].box_xyxy == (1.0, 1.0, 2.0, 2.0) and wall[0].concept == "Wall"
    assert wall[0].area == 80 * 80 and wall[1].area == 20 * 160


def test_equal_scores_keep_prompt_then_query_order() -> None:
    found = candidates([(1, 0, 0.5, TOP), (0, 5, 0.5, RIGHT), (0, 2, 0.5, LEFT)])
    wall = concept_instances(found, [["Wall"], ["Wall"]], ["Wall"], (8, 8))["Wall"]
    assert [(i.box_xyxy[0]) for i in wall] == [2.0, 1.0, 0.0]


def test_prompts_of_one_concept_are_merged_and_shared_prompts_serve_both() -> None:
    found = candidates([(0, 0, 0.9, LEFT), (1, 0, 0.8, LEFT), (1, 1, 0.7, RIGHT)])
    out = concept_instances(found, [["Wall"], ["Wall", "Paint"]], ["Wall", "Paint"], (8, 8))
    assert [i.score for i in out["Wall"]] == pytest.approx([0.9, 0.7])
    assert [i.score for i in out["Paint"]] == pytest.approx([0.8, 0.7])
    assert [i.number for i in out["Paint"]] == [1, 2]


def test_empty_masks_are_dropped_and_inputs_untouched() -> None:
    found = candidates([(0, 0, 0.9, (slice(0, 0), slice(0, 0))), (0, 1, 0.5, LEFT)])
    before = found.masks.copy()
    wall = concept_instances(found, [["Wall"]], ["Wall"], (8, 8))["Wall"]
    assert [i.score for i in wall] == pytest.approx([0.5]) and wall[0].number == 1
    assert np.array_equal(found.masks, before)
    wall[0].mask[:] = 0  # the instance owns a copy
    assert np.array_equal(found.masks, before)


def test_photo_area_matches_a_nearest_neighbour_stretch() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((5, 7)) > 0.5
    h, w = 23, 31
    rows = (np.arange(h) * 5) // h
    cols = (np.arange(w) * 7) // w
    assert photo_area(mask, (h, w)) == int(mask[rows][:, cols].sum())
