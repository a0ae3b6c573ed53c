"""The export's selection gate (pure numpy): it passes the right selection and catches broken ones."""

from __future__ import annotations

import numpy as np
import pytest

from server.inference.export import selection as ex
from server.inference.export.gates import ParityError


def _raw(seed: int = 0, prompts: int = 3, queries: int = 8, mask: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.normal(0, 3, (prompts, queries, mask, mask)).astype(np.float32),
        rng.uniform(0, 1, (prompts, queries, 4)).astype(np.float32),
        rng.normal(-1, 0.3, (prompts, queries)).astype(np.float32),  # scores near 0.27, like random weights
        rng.normal(0, 0.1, (prompts, 1)).astype(np.float32),
    ]


def _select(raw: list[np.ndarray], threshold: float, cap: int) -> list[np.ndarray]:
    """What a correct decoder graph returns, built from the reference."""
    kept = ex.reference_selection(raw, threshold, cap)
    keys = sorted(kept)
    masks = np.array([np.round(ex._sigmoid(raw[0][p, q]) * 255) for p, q in keys], np.uint8).reshape(-1, 6, 6)
    return [
        np.array([p for p, _ in keys], np.int32),
        np.array([q for _, q in keys], np.int32),
        np.array([kept[k]["score"] for k in keys], np.float32),
        np.array([raw[1][p, q] for p, q in keys], np.float32).reshape(-1, 4),
        masks,
    ]


def test_gate_thresholds_admit_some_and_refuse_others() -> None:
    raw = _raw()
    zero, cut = ex.gate_thresholds(raw, 4)
    assert zero == 0.0
    admitted = len(ex.reference_selection(raw, cut, 4))
    assert 0 < admitted < 3 * 4 and 0.1 < cut < 0.5


def test_a_correct_selection_passes_at_every_gate_threshold() -> None:
    raw = _raw()
    for threshold in ex.gate_thresholds(raw, 4):
        check = ex.selection_parity(_select(raw, threshold, 4), raw, threshold, 4)
        assert check["score_max_abs_diff"] < 1e-6 and check["mask_min_iou"] == 1.0


def test_a_missing_query_is_caught() -> None:
    raw = _raw()
    cut = ex.gate_thresholds(raw, 4)[1]
    got = [a[1:] for a in _select(raw, cut, 4)]
    with pytest.raises(ParityError, match="admits"):
        ex.selection_parity(got, raw, cut, 4)


def test_a_selection_that_ignores_the_cap_is_caught() -> None:
    raw = _raw()
    with pytest.raises(ParityError, match="admits"):
        ex.selection_parity(_select(raw, 0.0, 8), raw, 0.0, 4)


def test_a_threshold_that_admits_nothing_does_not_pass_as_a_gate() -> None:
    raw = _raw()
    with pytest.raises(ParityError, match="does not test"):
        ex.selection_parity(_select(raw, 0.99, 4), raw, 0.99, 4)


def test_wrong_scores_and_masks_are_measured() -> None:
    raw = _raw()
    got = _select(raw, 0.0, 4)
    got[2] = got[2] + np.float32(1e-3)
    got[4] = 255 - got[4]
    check = ex.selection_parity(got, raw, 0.0, 4)
    assert check["score_max_abs_diff"] > 1e-4 and check["mask_min_iou"] < 0.99
