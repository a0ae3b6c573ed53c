"""One album through the REST API, stage by stage, timed: upload, confirm, analyze, execute, package."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.demo.albums import AlbumPlan
from scripts.demo.client import Api, ApiError, JsonObject
from scripts.demo.progress import Bar
from scripts.demo.sheet import Row, contact_sheet

TERMINAL = ("done", "failed", "canceled")
ANALYZE_TIMEOUT_S = 600.0
POLL_S = 0.3


@dataclass
class AlbumResult:
    plan: AlbumPlan
    job: JsonObject = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    instances: Counter[str] = field(default_factory=Counter)
    choices: dict[str, Any] = field(default_factory=dict)
    set_path: Path | None = None
    sheet_path: Path | None = None
    manifest: JsonObject = field(default_factory=dict)

    @property
    def protect_passed(self) -> tuple[int, int]:
        """(items whose protect check passed, items done)."""
        done = [i for i in self.job.get("items", []) if i["status"] == "done"]
        return sum(1 for i in done if (i.get("protect_check") or {}).get("passed") is True), len(done)

    @property
    def protected_pixels(self) -> tuple[int, int]:
        """(protected pixels, of which changed) over the done items."""
        checks = [i.get("protect_check") or {} for i in self.job.get("items", []) if i["status"] == "done"]
        return sum(int(c.get("protected_pixels", 0)) for c in checks), sum(
            int(c.get("changed_pixels", 0)) for c in checks
        )


class _Clock:
    def __init__(self, seconds: dict[str, float]) -> None:
        self._seconds = seconds
        self._start = time.monotonic()
        self._mark = self._start

    def lap(self, stage: str) -> None:
        now = time.monotonic()
        self._seconds[stage] = now - self._mark
        self._mark = now

    def total(self) -> None:
        self._seconds["total"] = time.monotonic() - self._start


def _analysis_finished(job: JsonObject) -> bool:
    # An item is analyzed once it has instances (or failed). GET /jobs does not say when an item
    # analyzed with zero instances is finished; execute then answers INVALID_STATE until it is.
    return all(i["instances"] or i["status"] == "failed" for i in job["items"])


def _instance_choices(plan: AlbumPlan, job: JsonObject) -> dict[str, Any]:
    """Uncheck the highest-numbered instance of each ``exclude_last`` concept on the first photo that has
    at least two, as a user unticking one wall in the Instances screen would."""
    for item in job["items"]:
        per_concept: dict[str, Any] = {}
        for concept in plan.exclude_last:
            numbers = [x["number"] for x in item["instances"] if x["concept"] == concept]
            if len(numbers) >= 2:
                per_concept[concept] = {"exclude": [max(numbers)]}
        if per_concept:
            return {str(item["idx"]): per_concept}
    return {}


def _execute(api: Api, job_id: str, body: dict[str, Any], deadline_s: float) -> JsonObject:
    """``POST execute``, retried while an analysis is still finishing (see ``_analysis_finished``)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return api.call("execute", "POST", f"/jobs/{job_id}/execute", body)
        except ApiError as e:
            error = e.envelope.get("error") if isinstance(e.envelope, dict) else None
            code = error.get("code") if isinstance(error, dict) else None
            if code != "INVALID_STATE" or "analysis" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(POLL_S)


def run_album(api: Api, plan: AlbumPlan, out_dir: Path, *, warning: str | None) -> AlbumResult:
    result = AlbumResult(plan)
    clock = _Clock(result.seconds)
    n = len(plan.photos)
    created = api.call(
        "create job",
        "POST",
        "/jobs",
        {"preset": plan.preset, "item_count": n, "content_types": [p.content_type for p in plan.photos]},
    )
    job_id = str(created["job_id"])
    bar = Bar(f"{plan.name}: upload", n)
    for done, (target, photo) in enumerate(zip(created["upload_urls"], plan.photos, strict=True), start=1):
        api.upload(f"upload {photo.name}", target, photo.data)
        bar.update(done)
    bar.finish()
    clock.lap("upload")

    job = api.call("confirm upload", "POST", f"/jobs/{job_id}/confirm-upload")
    clock.lap("confirm")

    if plan.analyze:
        api.call("analyze", "POST", f"/jobs/{job_id}/analyze", {"concepts": list(plan.analyze)})
        bar = Bar(f"{plan.name}: analyze", n)
        deadline = time.monotonic() + ANALYZE_TIMEOUT_S
        while True:
            job = api.call("job status", "GET", f"/jobs/{job_id}")
            bar.update(sum(1 for i in job["items"] if i["instances"] or i["status"] == "failed"))
            if _analysis_finished(job) or time.monotonic() > deadline:
                break
            time.sleep(POLL_S)
        bar.finish()
        result.choices = _instance_choices(plan, job)
        clock.lap("analyze")

    body: dict[str, Any] = {
        "concepts": {k: dict(v) for k, v in plan.concepts.items()},
        "protect": list(plan.protect),
        "output_set": plan.output_set,
    }
    if result.choices:
        body["instances"] = result.choices
    _execute(api, job_id, body, ANALYZE_TIMEOUT_S)
    bar = Bar(f"{plan.name}: execute", n)
    items_finished = False
    for event, data in api.job_events(job_id):
        if event == "job":
            finished = int(data["done_items"]) + int(data["failed_items"])
            bar.update(finished, "packaging the set" if finished >= n and data["status"] not in TERMINAL else "")
            if finished >= n and not items_finished:
                items_finished = True
                clock.lap("execute")
        elif event == "end":
            break
        elif event == "error":
            raise ApiError("watch job", 200, {"success": False, "error": data})
    bar.finish(f"items {'done' if items_finished else 'unfinished'}")
    if not items_finished:
        clock.lap("execute")
    clock.lap("package")

    result.job = job = api.call("job result", "GET", f"/jobs/{job_id}")
    for item in job["items"]:
        result.instances.update(x["concept"] for x in item["instances"])
    if job["status"] != "done":
        errors = "; ".join(f"#{i['idx']}: {i['error']}" for i in job["items"] if i.get("error"))
        raise ApiError("job", 200, {"success": False, "error": {"code": job["status"], "message": errors}})

    out_dir.mkdir(parents=True, exist_ok=True)
    set_bytes = api.download("download set", str(job["set_url"]))
    with zipfile.ZipFile(io.BytesIO(set_bytes)) as zf:
        result.manifest = json.loads(zf.read("manifest.json"))
    result.set_path = out_dir / "set.zip"
    result.set_path.write_bytes(set_bytes)

    rows = []
    for item in job["items"]:
        if item["status"] != "done":
            continue
        photo = plan.photos[item["idx"]]
        after = api.download("download result", str(item["output_url"]))
        rows.append(Row(f"#{item['idx']} {photo.name}", photo.data, after))
    title = f"{plan.name} album: {plan.preset} preset, set '{plan.output_set}', {len(rows)} photo(s)"
    result.sheet_path = out_dir / "contact_sheet.png"
    result.sheet_path.write_bytes(contact_sheet(title, rows, warning))
    clock.total()
    return result
