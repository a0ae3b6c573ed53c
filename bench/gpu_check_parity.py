"""The GPU check's parity part: the served detections against the eager fp32 reference selection
(admitted set, score difference, mask IoU) at the export's gate thresholds.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.gpu_check_serving import infer


def compare(got: dict[str, np.ndarray], raw: Sequence[np.ndarray], threshold: float, cap: int) -> dict[str, Any]:
    """Served detections vs the eager fp32 reference selection at one threshold."""
    from server.inference.export.selection import reference_selection

    ref = reference_selection(raw, threshold, cap)
    mine = {(int(p), int(q)): i for i, (p, q) in enumerate(zip(got["phrase_index"], got["query_index"], strict=True))}
    common = sorted(set(mine) & set(ref))
    score_diff = max((abs(float(got["scores"][mine[k]]) - ref[k]["score"]) for k in common), default=0.0)
    ious = []
    for key in common:
        on, theirs = got["masks"][mine[key]] >= 128, ref[key]["mask"]
        union = np.logical_or(on, theirs).sum()
        ious.append(float(np.logical_and(on, theirs).sum() / union) if union else 1.0)
    return {
        "threshold": round(threshold, 6),
        "admitted_equal": set(mine) == set(ref),
        "admitted": len(mine),
        "reference_admitted": len(ref),
        "common": len(common),
        "score_max_abs_diff": score_diff,
        "mask_min_iou": min(ious, default=1.0),
        "mask_mean_iou": statistics.fmean(ious) if ious else 1.0,
    }


def parity(
    url: str, references: list[tuple[np.ndarray, list[np.ndarray]]], phrases: Sequence[str], cap: int
) -> list[dict[str, Any]]:
    import tritonclient.grpc as grpcclient

    from server.inference.export.selection import gate_thresholds

    client = grpcclient.InferenceServerClient(url)
    rows = []
    try:
        for image, raw in references:
            for threshold in gate_thresholds(raw, cap):
                rows.append(compare(infer(client, image, phrases, threshold), raw, threshold, cap))
    finally:
        client.close()
    return rows


def summarise_parity(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "admitted_equal": all(r["admitted_equal"] for r in rows),
        "score_max_abs_diff": max(r["score_max_abs_diff"] for r in rows),
        "mask_min_iou": min(r["mask_min_iou"] for r in rows),
        "checks": rows,
    }
