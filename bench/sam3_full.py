"""The full-size tier's figures for ``bench/results.json``: what ``make test-full`` measured and what one
photo costs at full size.

``python -m bench.run --parts sam3_full`` after ``make test-full`` (it reads that run's
``$S3_FULL_DIR/test_full.json``: export time and peak RSS per stage, the interior palette's analyze,
the Triton tree's peak) and runs :mod:`bench.sam3_cost` on the same export (bytes per photo, Triton
against PyTorch eager, memory, at K = 1, 4, 12). Not in ``make bench``'s default parts: it needs the
full-size export (about 9 minutes here, 9 GB) and takes about 8 minutes itself.
"""

from __future__ import annotations

import json
from typing import Any

from bench import sam3_cost

GOALS = {"export_s": 15 * 60, "export_peak_rss_bytes": 12e9, "triton_tree_peak_bytes": 10e9}
"""The tier's goals (issue "SAM3 at its real size"): export under 15 minutes and 12 GB, tree under 10 GB."""


def test_full_figures() -> dict[str, Any]:
    path = sam3_cost.FULL_DIR / "test_full.json"
    if not path.is_file():
        raise SystemExit(f"no {path}: run `make test-full` first")
    figures: dict[str, Any] = json.loads(path.read_text())
    return figures


def run() -> dict[str, Any]:
    return {"test_full": test_full_figures(), "cost": sam3_cost.run(full=True)}


def markdown(data: dict[str, Any]) -> str:
    full = data["test_full"]
    export = full["export"]
    measured = {
        "export_s": export["export_s"],
        "export_peak_rss_bytes": export["export_peak_rss_bytes"],
        "triton_tree_peak_bytes": full["triton_tree_peak_bytes"],
    }

    def cell(name: str) -> str:
        value, goal = measured[name], GOALS[name]
        shown = f"{value:.1f} s" if name == "export_s" else f"{value / 1e9:.2f} GB"
        limit = f"{goal / 60:.0f} min" if name == "export_s" else f"{goal / 1e9:.0f} GB"
        return f"{shown} (goal < {limit}: {'met' if value < goal else 'NOT met'})"

    lines = [
        f"`make test-full`: the whole tier {full['total_s']:.1f} s (checkpoint build {full['checkpoint_build_s']:.1f} s; "
        f"stack start with the export {full['start_s']:.1f} s); export {cell('export_s')}, peak RSS "
        f"{cell('export_peak_rss_bytes')}; analyze of the interior palette {full['seconds']['analyze']:.1f} s, "
        f"execute {full['seconds']['execute']:.1f} s ({full['sam3_calls']:.0f} SAM3 call in all); Triton tree peak "
        f"{cell('triton_tree_peak_bytes')}.",
        "",
        "| export stage | s | peak RSS GB |",
        "|---|---|---|",
        *(f"| {name} | {s['s']:.1f} | {s['peak_rss_bytes'] / 1e9:.2f} |" for name, s in export["stages"].items()),
        "",
        sam3_cost.markdown(data["cost"]),
    ]
    return "\n".join(lines)
