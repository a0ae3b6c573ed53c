"""The tiny SAM3 export: parity gates recorded, refusal when parity fails, cached by key."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from server.inference.artifacts import REPO_ROOT, ModelArtifact, model_python

pytestmark = pytest.mark.integration


def test_tiny_export_passed_every_parity_gate(tiny_artifact: ModelArtifact) -> None:
    manifest = json.loads((tiny_artifact.root / "manifest.json").read_text())
    parity = manifest["parity"]
    for graph in ("vision", "text", "decoder"):
        assert 0 <= parity[f"onnx_{graph}_max_abs_diff"] <= 1e-4
    assert parity["split_max_abs_diff"] <= 1e-4
    # The selection gate ran at the whole top-K and at a threshold that admits some and refuses others.
    everything, some = parity["selection"]
    assert everything["threshold"] == 0.0 and everything["admitted"] > 0
    assert 0 < some["admitted"] < everything["admitted"] and some["threshold"] > 0.2  # random weights: ~0.25
    for gate in parity["selection"]:
        assert gate["score_max_abs_diff"] <= 1e-4 and gate["box_max_abs_diff"] <= 1e-4
        assert gate["mask_min_iou"] >= 0.99
    assert manifest["max_detections"] == tiny_artifact.max_detections < tiny_artifact.geometry.num_queries
    assert tiny_artifact.decoder_bytes_per_phrase > 0
    assert manifest["export_peak_rss_bytes"] > 0 and manifest["export_s"] > 0
    assert {"load", "reference", "export_vision", "gate_decoder"} <= set(manifest["stages"])
    assert parity["tokenizer_mismatches"] == 0
    assert parity["preprocess_max_levels"] <= 1.0
    assert manifest["meaningful"] is False and manifest["name"] == "sam3-tiny"
    assert tiny_artifact.geometry.image_size == 112
    for graph in ("vision", "text", "decoder"):
        assert tiny_artifact.onnx(graph).is_file()
    assert manifest["tensorrt"]["built"] is False and "TensorRT" in manifest["tensorrt"]["reason"]


def test_export_is_reused_when_present(tiny_artifact: ModelArtifact) -> None:
    data_dir = tiny_artifact.root.parent.parent
    run = subprocess.run(
        [str(model_python()), "-m", "scripts.export_onnx_trt", "--tiny", "--data-dir", str(data_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(run.stdout.splitlines()[-1])["artifact_dir"] == str(tiny_artifact.root)
    assert "nothing to export" in run.stderr


def test_export_refuses_an_artefact_that_fails_parity(tiny_artifact: ModelArtifact, tmp_path: Path) -> None:
    # The checkpoint path is the one real weights take (a Hugging Face directory); an impossible
    # tolerance makes the first gate fail.
    checkpoint = tiny_artifact.root / "checkpoint"
    out = tmp_path / "refused"
    command = [str(model_python()), "-m", "scripts.export_onnx_trt", "--checkpoint", str(checkpoint)]
    command += ["--out", str(out), "--onnx-tol", "1e-12"]
    run = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 3, run.stderr[-2000:]
    assert "parity gate failed" in run.stderr and "differs" in run.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no scratch folder left behind
