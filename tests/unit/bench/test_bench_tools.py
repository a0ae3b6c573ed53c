"""The benchmark's own tools: doc sections refreshed in place, percentiles, the instant segmenter."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from bench.flood import MAX_REQUESTS, run
from bench.instant_segmenter import MASK_SIDE, InstantSegmenter
from bench.load import percentile
from bench.report import replace_sections
from server.inference.port import Segmenter


def test_refresh_replaces_only_between_markers_and_appends_missing_sections() -> None:
    doc = "# Title\nintro by hand\n<!-- bench:api -->\nold table\n<!-- /bench:api -->\nnotes by hand\n"
    out = replace_sections(doc, {"api": "| new | table \\1 |", "queue": "queue table"})
    assert out.startswith("# Title\nintro by hand\n<!-- bench:api -->\n| new | table \\1 |\n<!-- /bench:api -->")
    assert "old table" not in out and "notes by hand\n" in out
    assert out.endswith("<!-- bench:queue -->\nqueue table\n<!-- /bench:queue -->\n")
    assert replace_sections(out, {"api": "| new | table \\1 |", "queue": "queue table"}) == out


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0


def test_instant_segmenter_answers_every_concept_with_one_centred_instance() -> None:
    segmenter: Segmenter = InstantSegmenter()
    image = np.zeros((300, 400, 3), np.uint8)
    found = asyncio.run(segmenter.segment(image, {"Wall": ["wall"], "Floor": ["floor", "ground"]}))
    assert set(found) == {"Wall", "Floor"}
    for concept, instances in found.items():
        (only,) = instances
        assert (only.concept, only.number) == (concept, 1)
        assert only.box_xyxy == (100.0, 75.0, 300.0, 225.0) and only.area == 200 * 150
        assert only.mask.shape == (MASK_SIDE, MASK_SIDE) and only.mask.mean() == 255 / 4
    assert asyncio.run(segmenter.ready()) and not segmenter.info.meaningful


def test_the_flood_tool_refuses_other_hosts_and_unbounded_runs() -> None:
    for target, count in (
        ("http://example.com", 1),
        ("http://10.0.0.1:8080", 1),
        ("http://127.0.0.1:1", MAX_REQUESTS + 1),
    ):
        with pytest.raises(ValueError):
            asyncio.run(run(target, count, 1.0))
