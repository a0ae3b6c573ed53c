"""``make demo`` end to end on a one-photo album each: the real stack as a subprocess, the REST API,
the output sets and contact sheets on disk, and a clean stop.

Needs the model environment and the tiny export (``make test`` builds both); the demo's server shares
the checkout's model cache, so no export runs here.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from scripts.scenes import interior_scene
from server.inference.artifacts import MODEL_VENV, REPO_ROOT

pytestmark = pytest.mark.integration


def test_demo_runs_both_albums_and_writes_sets_and_contact_sheets(tmp_path: Path) -> None:
    if not (MODEL_VENV / "bin" / "python").exists():
        pytest.fail("the model environment is missing: run `make model-venv` (make test does)")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(interior_scene(480, 360, seed=5).image).save(photos / "living-room.png")
    (photos / "notes.txt").write_text("not a photo: ignored")
    out = tmp_path / "out"

    command = ["--photos", str(photos), "--items", "1", "--size", "small", "--out", str(out)]
    run = subprocess.run(
        [sys.executable, "-m", "scripts.demo", *command],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "NOT meaningful" in run.stdout  # no checkpoint: the summary says the masks mean nothing
    assert "stopping the stack (SIGTERM)" in run.stdout
    assert "make playground" in run.stdout and "/playground/" in run.stdout  # where to try it in a browser

    summary = json.loads((out / "summary.json").read_text())
    assert summary["model_meaningful"] is False
    albums = {a["name"]: a for a in summary["albums"]}
    assert set(albums) == {"interior", "seller"}
    assert albums["interior"]["source"] == str(photos)  # a flat folder is the interior album
    assert albums["seller"]["source"] == "synthetic"
    for name, expected_set in (("interior", "listing"), ("seller", "marketplace")):
        album = albums[name]
        assert (album["status"], album["items"], album["done_items"]) == ("done", 1, 1)
        assert album["protect_checks_passed"] == 1 and album["changed_protected_pixels"] == 0
        assert set(album["seconds"]) >= {"upload", "confirm", "execute", "package", "total"}
        with zipfile.ZipFile(out / name / "set.zip") as zf:
            manifest = json.loads(zf.read("manifest.json"))
            renditions = [n for n in zf.namelist() if n != "manifest.json"]
        assert manifest["output_set"] == expected_set
        assert manifest["masks_meaningful"] is False
        assert len(manifest["items"]) == 1 and len(renditions) == len(manifest["templates"]) > 0
        with Image.open(io.BytesIO((out / name / "contact_sheet.png").read_bytes())) as sheet:
            assert sheet.format == "PNG" and sheet.width > 900 and sheet.height > 300
    assert "analyze" in albums["interior"]["seconds"]  # the interior album goes through the Instances stage
    assert sum(albums["interior"]["instances"].values()) > 0
    assert "REST API on http://127.0.0.1:" in (out / "server.log").read_text()
    assert '"msg": "stopped"' in (out / "server.log").read_text()  # the server shut down in order
