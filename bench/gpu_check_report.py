"""The GPU check's report as markdown (``gpu_check.md``), from the JSON report."""

from __future__ import annotations

from typing import Any


def markdown(report: dict[str, Any]) -> str:
    h = report["host"]
    where = f"{h.get('gpu', 'no GPU')}, torch {h['torch']}, Python {h['python']}, {h['cpus']} CPUs"
    lines = [
        f"GPU check {report['date']}: model `{report['model']['name']}` ({report['model']['image_size']} px; "
        f"{report['model']['note']}), {where}; wall {report['wall_s']} s.",
        "",
        "Parts that ran: " + ", ".join(p for p, ok in report["ran"].items() if ok) + ".",
        "",
        "Not run or not on a GPU:",
        *(f"- {part}: {why}" for part, why in report["not_run"].items()),
        "",
        f"**Eager ({report['eager']['precision']})**: images/s",
        "",
        "| K | batch | images/s |",
        "|---|---|---|",
        *(f"| {r['k']} | {r['batch']} | {r['images_per_s']} |" for r in report["eager"]["rows"]),
        "",
        f"**Triton, torch flavour ({report['serving']['precision']})**",
        "",
        "| K | concurrency | requests | images/s | p50 ms | p99 ms | avg vision batch | bytes/photo | kept masks | bytes goal | met |",
        "|" + "---|" * 11,
    ]
    for r in report["serving"]["rows"]:
        lines.append(
            f"| {r['k']} | {r['concurrency']} | {r['requests']} | {r['images_per_s']} | {r['p50_ms']} | {r['p99_ms']} "
            f"| {r['avg_vision_batch']} | {r['bytes_per_photo']} | {r['kept_masks_per_photo']} | {r['bytes_goal']} "
            f"| {'met' if r['bytes_met'] else 'NOT met'} |"
        )
    lines += [
        "",
        "**Parity vs eager fp32**",
        "",
        "| precision | admitted set equal | max score diff | worst mask IoU |",
        "|---|---|---|---|",
    ]
    for precision, p in report["parity"].items():
        lines.append(
            f"| {precision} | {p['admitted_equal']} | {p['score_max_abs_diff']:.2e} | {p['mask_min_iou']:.4f} |"
        )
    if "memory" in report:
        m = report["memory"]
        lines += [
            "",
            f"**Peak GPU memory**: eager {m['eager_peak_bytes'] / 2**30:.2f} GiB; graph models "
            + ", ".join(f"{g} {b / 2**30:.2f} GiB" for g, b in m["graph_peak_bytes"].items())
            + f"; device in use {m['device_used_peak_bytes'] / 2**30:.2f} GiB.",
        ]
    lines += ["", "**Goals**", "", "| goal | value | met | ratio | note |", "|---|---|---|---|---|"]
    for g in report["goals"]:
        met = "not assessed" if g["met"] is None else ("met" if g["met"] else "NOT met")
        lines.append(f"| {g['goal']} | {g['value']} | {met} | {g['ratio']} | {g['note']} |")
    return "\n".join(lines) + "\n"
