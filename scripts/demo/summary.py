"""The summary the demo prints at the end, and the same figures as JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scripts.demo.album_run import AlbumResult

STAGES = ("upload", "confirm", "analyze", "execute", "package", "total")

TINY_MODEL_NOTE = (
    "Masks come from the tiny random-weight SAM3 model and are NOT meaningful: the renditions show the "
    "pipeline (rules, protect layers, output sets), not segmentation quality. Set S3_SAM3_CHECKPOINT to a "
    "local SAM3 checkpoint directory for real masks."
)


def _seconds(result: AlbumResult, stage: str) -> str:
    value = result.seconds.get(stage)
    return "-" if value is None else f"{value:.1f}"


def _instances(result: AlbumResult) -> str:
    return ", ".join(f"{c} {n}" for c, n in sorted(result.instances.items())) or "-"


def table(results: Sequence[AlbumResult]) -> str:
    head = ["album", "source", "items", *(f"{s} s" for s in STAGES), "protect checks"]
    rows = []
    for r in results:
        passed, done = r.protect_passed
        protected, changed = r.protected_pixels
        rows.append(
            [
                r.plan.name,
                r.plan.source if len(r.plan.source) <= 24 else "..." + r.plan.source[-21:],
                f"{r.job.get('done_items', 0)}/{r.job.get('total_items', len(r.plan.photos))}",
                *(_seconds(r, s) for s in STAGES),
                f"{passed}/{done} passed ({changed} of {protected} protected px changed)",
            ]
        )
    widths = [max(len(str(x)) for x in column) for column in zip(head, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(head), line(["-" * w for w in widths]), *(line(r) for r in rows), ""]
    out += [f"instances per concept, {r.plan.name}: {_instances(r)}" for r in results]
    out += [f"instance choices, {r.plan.name}: {r.choices}" for r in results if r.choices]
    return "\n".join(out)


def as_json(results: Sequence[AlbumResult], health: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": health.get("model"),
        "model_meaningful": bool(health.get("model_meaningful")),
        "albums": [
            {
                "name": r.plan.name,
                "preset": r.plan.preset,
                "source": r.plan.source,
                "output_set": r.plan.output_set,
                "job_id": r.job.get("job_id"),
                "status": r.job.get("status"),
                "items": r.job.get("total_items"),
                "done_items": r.job.get("done_items"),
                "failed_items": r.job.get("failed_items"),
                "seconds": {k: round(v, 3) for k, v in r.seconds.items()},
                "instances": dict(r.instances),
                "instance_choices": r.choices,
                "protect_checks_passed": r.protect_passed[0],
                "protected_pixels": r.protected_pixels[0],
                "changed_protected_pixels": r.protected_pixels[1],
                "set": str(r.set_path) if r.set_path else None,
                "renditions_in_set": sum(len(i.get("renditions", [])) for i in r.manifest.get("items", [])),
                "contact_sheet": str(r.sheet_path) if r.sheet_path else None,
            }
            for r in results
        ],
    }
