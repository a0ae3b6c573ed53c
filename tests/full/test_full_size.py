"""Full-size SAM3 through the whole product: export, the local Triton, the REST API.

The seeded full-size random-weight SAM3 (default ``Sam3Config``, the published checkpoint layout) is
built offline and exported by the service itself (``S3_SAM3_CHECKPOINT``), as a user would; then one
photo goes through the REST API: analyze with every concept of the interior preset (its whole
palette, 18 phrases), then an execute of the same concepts, which must reuse that analysis (SAM3
runs once). The figures go to ``<full dir>/test_full.json`` (docs/sam3_serving.md quotes them).

``S3_FULL_DIR`` (default ``.full`` in the checkout, ignored by git) keeps the checkpoint and the export
between runs.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import httpx
import pytest

from bench.process_memory import TreePeak
from scripts.demo import album_run
from scripts.demo.albums import AlbumPlan, Photo, _jpeg
from scripts.demo.client import Api
from scripts.demo.stack import EmbeddedStack, StackConfig
from scripts.scenes import interior_scene
from server.inference.artifacts import MODEL_VENV, REPO_ROOT
from server.inference.export.sam3_export import artifact_dir
from server.ports import free_port
from server.presets import INTERIOR

pytestmark = pytest.mark.integration

FULL_DIR = Path(os.environ.get("S3_FULL_DIR", str(REPO_ROOT / ".full")))
TRITON_TREE_LIMIT_BYTES = 10 * 10**9
START_TIMEOUT_S = 2400.0
"""Start-up includes the first export of the full-size model (about 15 minutes on 2 cores)."""
STAGE_TIMEOUT_S = 1800.0


def _build_checkpoint(checkpoint: Path) -> float:
    """The seeded full-size checkpoint, built once (the export script owns the recipe)."""
    if (checkpoint / "config.json").is_file():
        return 0.0
    import subprocess

    started = time.monotonic()
    code = "import sys; from pathlib import Path; from server.inference.export.checkpoints import build_checkpoint; "
    code += "build_checkpoint(Path(sys.argv[1]), 'full')"
    subprocess.run([str(MODEL_VENV / "bin" / "python"), "-c", code, str(checkpoint)], cwd=REPO_ROOT, check=True)
    return time.monotonic() - started


def _inference_calls(metrics_url: str) -> float:
    text = httpx.get(metrics_url, timeout=10).text
    counts = re.findall(r'^s3_inference_duration_seconds_count\{[^}]*outcome="ok"[^}]*\} ([0-9.e+]+)$', text, re.M)
    return sum(float(c) for c in counts)


def _triton_pid(data_dir: Path) -> int:
    pids = sorted(data_dir.glob("triton/run-*/tritonserver.pid"))
    assert pids, "the embedded Triton wrote no pid file"
    record = json.loads(pids[-1].read_text())  # the run record: server pid, owner, shared-memory prefix
    return int(record["pid"] if isinstance(record, dict) else record)


def test_full_size_palette_through_the_rest_api() -> None:
    checkpoint = FULL_DIR / "checkpoint"
    data_dir = FULL_DIR / "serve"
    figures: dict[str, object] = {"checkpoint_build_s": round(_build_checkpoint(checkpoint), 1)}
    (data_dir / "models").parent.mkdir(parents=True, exist_ok=True)
    models = FULL_DIR / "models"
    models.mkdir(parents=True, exist_ok=True)
    if not (data_dir / "models").exists():
        (data_dir / "models").symlink_to(models, target_is_directory=True)  # the export is kept between runs
    metrics_port = free_port()
    env = {
        "S3_SAM3_CHECKPOINT": str(checkpoint),
        "S3_METRICS_PORT": str(metrics_port),
        "S3_INFERENCE_TIMEOUT_S": str(STAGE_TIMEOUT_S),
    }
    config = StackConfig(data_dir=data_dir, log_path=FULL_DIR / "server.log", workers=1, env=env)
    photo = Photo("room.jpg", _jpeg(interior_scene(1024, 768, seed=3).image), "image/jpeg")
    concepts = {
        c.id: {"action": c.default_action, **dict(c.default_params)}
        for c in INTERIOR.concepts
        if c.default_action != "keep"
    }
    plan = AlbumPlan(
        name="interior-full",
        preset="interior",
        source="synthetic",
        photos=(photo,),
        analyze=tuple(c.id for c in INTERIOR.concepts),
        concepts=concepts,
        protect=("Text", "Logo"),
        output_set="listing",
    )
    assert sum(len(c.prompts) for c in INTERIOR.concepts) == 18  # the whole interior palette
    album_run.ANALYZE_TIMEOUT_S = STAGE_TIMEOUT_S

    started = time.monotonic()
    with EmbeddedStack(config) as stack:
        health = stack.wait_healthy(START_TIMEOUT_S)
        figures["start_s"] = round(time.monotonic() - started, 1)
        assert "sam3-random" in json.dumps(health), health
        triton = _triton_pid(data_dir)
        api = Api(stack.base_url, timeout_s=STAGE_TIMEOUT_S)
        try:
            api.sign_in()
            with TreePeak(triton) as memory:
                result = album_run.run_album(api, plan, FULL_DIR / "out", warning=None)
        finally:
            api.close()
        calls = _inference_calls(f"http://127.0.0.1:{metrics_port}/metrics")
    figures.update(
        seconds={k: round(v, 1) for k, v in result.seconds.items()},
        triton_tree_peak_bytes=memory.peak_bytes,
        sam3_calls=calls,
        instances=dict(result.instances),
        total_s=round(time.monotonic() - started, 1),
    )
    # The artefact this run served: the export names its folder by the checkpoint and the export code, so
    # ``models`` may also hold exports of earlier code, and only the key tells them apart.
    manifest = json.loads((artifact_dir(data_dir, checkpoint) / "manifest.json").read_text())
    figures["export"] = {k: manifest[k] for k in ("export_s", "export_peak_rss_bytes", "stages", "parity")}
    (FULL_DIR / "test_full.json").write_text(json.dumps(figures, indent=2))

    assert result.job["status"] == "done"
    assert set(result.instances) >= {"Wall", "Floor"}, "random weights at threshold 0 keep their top queries"
    assert memory.peak_bytes < TRITON_TREE_LIMIT_BYTES, f"Triton tree peaked at {memory.peak_bytes / 1e9:.1f} GB"
    assert calls == 1, f"SAM3 ran {calls} times: execute must reuse the analysis of the same concepts"
