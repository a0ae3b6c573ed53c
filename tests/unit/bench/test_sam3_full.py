"""The full-size part's report: each goal's verdict follows the figure, and the tier's figures are read
from the run of ``make test-full``, not restated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import render, sam3_cost, sam3_full


def _cost_row(k: int) -> dict[str, Any]:
    return {
        "k": k, "sent_bytes": 3.05e6, "received_bytes": 2.7e6, "kept_masks": 32 * k, "bytes_per_photo": 5.7e6,
        "bytes_goal": 18.9e6, "bytes_met": True, "analyze_s": 40.0, "eager_s": 45.0, "eager_ratio": 0.89,
        "eager_met": True, "resize_s": 0.03, "sam3_compute_s": 39.9, "eager_vision_s": 35.0, "eager_text_s": 0.3,
        "eager_decoder_s": 9.7, "triton_tree_peak_bytes": 6.1e9, "memory_ratio": 1.3, "memory_met": True,
    }  # fmt: skip


def _data(export_s: float, export_peak: float, tree_peak: float) -> dict[str, Any]:
    stages = {"load": {"s": 0.5, "peak_rss_bytes": 5e8}, "export_vision": {"s": 82.5, "peak_rss_bytes": 4.25e9}}
    return {
        "test_full": {
            "checkpoint_build_s": 24.9, "start_s": 530.7, "total_s": 708.4, "sam3_calls": 1.0,
            "seconds": {"analyze": 167.3, "execute": 3.6}, "triton_tree_peak_bytes": tree_peak,
            "export": {"export_s": export_s, "export_peak_rss_bytes": export_peak, "stages": stages},
        },
        "cost": {
            "model": "sam3-random", "image_size": 1008, "photo": [768, 1024, 3], "cpus": 2,
            "load_average": [1.0, 1.0, 1.0], "eager_peak_rss_bytes": 4.5e9, "rows": [_cost_row(1)],
        },
    }  # fmt: skip


def test_goals_met_and_not_met_follow_the_figures() -> None:
    met = sam3_full.markdown(_data(510.1, 8.93e9, 7.08e9))
    assert "510.1 s (goal < 15 min: met)" in met
    assert "8.93 GB (goal < 12 GB: met)" in met and "7.08 GB (goal < 10 GB: met)" in met
    missed = sam3_full.markdown(_data(901.0, 12.5e9, 10.2e9))
    assert missed.count("NOT met") == 3
    assert "| export_vision | 82.5 | 4.25 |" in met
    assert "| 1 | 3.05 | 2.70 | 32 |" in met  # the cost table of the same export


def test_the_tier_figures_come_from_the_test_full_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sam3_cost, "FULL_DIR", tmp_path)
    with pytest.raises(SystemExit, match="make test-full"):
        sam3_full.test_full_figures()
    figures = _data(510.1, 8.93e9, 7.08e9)["test_full"]
    (tmp_path / "test_full.json").write_text(json.dumps(figures))
    assert sam3_full.test_full_figures() == figures


def test_the_section_is_rendered_only_when_measured() -> None:
    assert render.sam3_full({}) == render.MISSING
    results = {"sam3_full": _data(510.1, 8.93e9, 7.08e9), "runs": {}}
    assert "make test-full" in render.sam3_full(results)
