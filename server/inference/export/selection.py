"""The decoder graph's selection gate: SAM3's own outputs, selected in numpy, vs the graph's kept queries.

Score = sigmoid(logit) x sigmoid(presence), the top-K per phrase, then the threshold; checked at
thresholds that admit some queries and refuse others (random weights score near 0.25-0.27).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from server.inference.export.gates import ParityError
from server.inference.export.graphs import GRAPH_OUTPUTS
from server.inference.export.memory import peak_rss_bytes, release_memory, reset_peak_rss, rss_bytes

SELECTION_MIN_MASK_IOU = 0.99


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x.astype(np.float64)))


def reference_selection(
    raw: Sequence[np.ndarray], threshold: float, max_detections: int
) -> dict[tuple[int, int], dict[str, Any]]:
    """PyTorch's decoder outputs → the admitted (phrase, query) pairs with score, box and mask (numpy, float64)."""
    masks, boxes, logits, presence = raw
    scores = _sigmoid(logits) * _sigmoid(presence)
    kept: dict[tuple[int, int], dict[str, Any]] = {}
    for phrase in range(scores.shape[0]):
        order = np.argsort(-scores[phrase], kind="stable")[:max_detections]
        for query in order:
            if scores[phrase, query] >= threshold:
                kept[(phrase, int(query))] = {
                    "score": float(scores[phrase, query]),
                    "box": boxes[phrase, query].astype(np.float64),
                    "mask": _sigmoid(masks[phrase, query]) >= 0.5,
                }
    return kept


def gate_thresholds(raw: Sequence[np.ndarray], max_detections: int) -> list[float]:
    """Thresholds where queries are admitted and others refused: 0 (the whole top-K) and the middle of
    the widest gap among the middle half of the top-K scores (no score sits near it)."""
    _, _, logits, presence = raw
    scores = _sigmoid(logits) * _sigmoid(presence)
    top = np.sort(-np.sort(-scores, axis=1)[:, :max_detections].ravel())
    lo, hi = len(top) // 4, max(len(top) // 4 + 1, 3 * len(top) // 4)
    middle = top[lo : hi + 1]
    gaps = np.diff(middle)
    i = int(np.argmax(gaps)) if len(gaps) else 0
    cut = float((middle[i] + middle[min(i + 1, len(middle) - 1)]) / 2)
    return [0.0, cut]


def selection_parity(
    got: Sequence[np.ndarray], raw: Sequence[np.ndarray], threshold: float, max_detections: int
) -> dict[str, Any]:
    """The decoder graph's kept queries vs the reference at one threshold; raises ParityError on a mismatch."""
    phrase, query, scores, boxes, masks = got
    ref = reference_selection(raw, threshold, max_detections)
    admitted = {(int(p), int(q)) for p, q in zip(phrase, query, strict=True)}
    if admitted != set(ref):
        raise ParityError(
            f"decoder admits {len(admitted)} queries at threshold {threshold:.6f}, PyTorch {len(ref)} "
            f"({len(admitted ^ set(ref))} differ)"
        )
    total = int(raw[2].size)
    if threshold > 0 and not 0 < len(ref) < min(total, raw[2].shape[0] * max_detections):
        raise ParityError(f"threshold {threshold:.6f} admits {len(ref)} of {total}: it does not test the selection")
    score_diff, box_diff, worst_iou = 0.0, 0.0, 1.0
    for i, key in enumerate(zip(phrase.tolist(), query.tolist(), strict=True)):
        r = ref[key]
        score_diff = max(score_diff, abs(float(scores[i]) - r["score"]))
        box_diff = max(box_diff, float(np.abs(boxes[i] - r["box"]).max()))
        on = masks[i] >= 128
        union = np.logical_or(on, r["mask"]).sum()
        iou = float(np.logical_and(on, r["mask"]).sum() / union) if union else 1.0
        worst_iou = min(worst_iou, iou)
    return {
        "threshold": threshold,
        "admitted": len(ref),
        "of": total,
        "score_max_abs_diff": score_diff,
        "box_max_abs_diff": box_diff,
        "mask_min_iou": worst_iou,
    }


def decoder_gate(
    session: Any, feeds: dict[str, Any], raw_ref: Sequence[np.ndarray], cap: int, tol: float
) -> tuple[list[dict[str, Any]], int]:
    """The selection gate at thresholds that admit some queries and refuse others, and the decoder's
    working memory per phrase (peak RSS of a call with every prompt minus one with a single prompt)."""
    results = []
    for threshold in gate_thresholds(raw_ref, cap):
        run = {**feeds, "score_threshold": np.array([threshold], np.float32)}
        got = session.run(GRAPH_OUTPUTS["decoder"], run)
        check = selection_parity(got, raw_ref, threshold, cap)
        if check["score_max_abs_diff"] > tol or check["box_max_abs_diff"] > tol:
            raise ParityError(f"ONNX decoder differs from PyTorch at threshold {threshold:.6f}: {check}")
        if check["mask_min_iou"] < SELECTION_MIN_MASK_IOU:
            raise ParityError(f"ONNX decoder masks differ from PyTorch at threshold {threshold:.6f}: {check}")
        results.append(check)
    prompts = len(feeds["image_index"])
    peaks = []
    for k in (1, prompts):
        one = {
            name: (v[:k] if name in ("image_index", "text_features", "attention_mask") else v)
            for name, v in feeds.items()
        }
        one["score_threshold"] = np.array([0.0], np.float32)
        release_memory()
        before = rss_bytes()
        reset_peak_rss()
        session.run(GRAPH_OUTPUTS["decoder"], one)
        peaks.append(peak_rss_bytes() - before)
    per_phrase = (peaks[1] - peaks[0]) // max(prompts - 1, 1) if prompts > 1 else peaks[0]
    return results, max(int(per_phrase), 0)
