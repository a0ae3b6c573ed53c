"""The goals the GPU check judges its figures by, met or not, with the ratio to each goal."""

from __future__ import annotations

from typing import Any

GOAL_IMAGES_PER_S = 60.0
GOAL_EAGER_RATIO = 3.0
GOAL_BYTES_FIXED = 4 * 10**6
GOAL_BYTES_PER_MASK = 90 * 10**3
GOAL_BF16_MASK_IOU = 0.98
GOAL_K = 4


def bytes_goal(kept_masks_per_photo: float) -> float:
    """Bytes host <-> device one photo may move: a fixed part and a part per kept mask."""
    return GOAL_BYTES_FIXED + GOAL_BYTES_PER_MASK * kept_masks_per_photo


def best_eager(rows: list[dict[str, Any]], k: int) -> dict[str, Any]:
    return max((r for r in rows if r["k"] == k), key=lambda r: r["images_per_s"])


def goals(report: dict[str, Any], cuda: bool) -> list[dict[str, Any]]:
    """Every goal of the issue, met or not, with the measured value and the ratio to the goal."""
    rows = [r for r in report["serving"]["rows"] if r["k"] == GOAL_K] if "serving" in report else []
    found: list[dict[str, Any]] = []
    if rows:
        best = max(rows, key=lambda r: r["images_per_s"])
        eager = best_eager(report["eager"]["rows"], GOAL_K)
        speed_note = "" if cuda else "not assessed: the goal is for one H200, this ran on a CPU with the tiny model"
        found.append(_goal("Triton images/s at K=4", best["images_per_s"], GOAL_IMAGES_PER_S, ">=", speed_note))
        ratio = best["images_per_s"] / max(eager["images_per_s"], 1e-9)
        found.append(
            _goal(
                "Triton / eager images/s at K=4 (eager best batch)", round(ratio, 3), GOAL_EAGER_RATIO, ">=", speed_note
            )
        )
        for r in report["serving"]["rows"]:
            found.append(
                _goal(
                    f"bytes host<->device per photo, K={r['k']} c={r['concurrency']}",
                    r["bytes_per_photo"],
                    r["bytes_goal"],
                    "<=",
                    "",
                )
            )
    parity_report = report.get("parity", {})
    if "float32" in parity_report:
        p = parity_report["float32"]
        found.append(
            {
                "goal": "admitted set equal to eager (fp32)",
                "value": p["admitted_equal"],
                "target": True,
                "met": p["admitted_equal"],
                "ratio": None,
                "note": "",
            }
        )
    if "bfloat16" in parity_report:
        p = parity_report["bfloat16"]
        found.append(
            _goal("mask IoU bf16 vs eager fp32 (worst)", round(p["mask_min_iou"], 4), GOAL_BF16_MASK_IOU, ">=", "")
        )
    return found


def _goal(name: str, value: float, target: float, sense: str, note: str) -> dict[str, Any]:
    met = value >= target if sense == ">=" else value <= target
    return {
        "goal": f"{name} {sense} {target:g}",
        "value": value,
        "target": target,
        "met": None if note else met,
        "ratio": round(value / target, 3) if target else None,
        "note": note,
    }
