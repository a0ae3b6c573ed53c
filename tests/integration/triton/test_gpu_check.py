"""`make gpu-check` on this CPU with the tiny model: every part it can run, and what it could not, said."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from server.inference.artifacts import MODEL_VENV, REPO_ROOT, ModelArtifact

pytestmark = pytest.mark.integration


def test_gpu_check_runs_on_cpu_and_says_what_did_not_run(tiny_artifact: ModelArtifact, tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [str(MODEL_VENV / "bin" / "python"), "-m", "bench.gpu_check", "--out", str(out)]
    command += ["--ks", "1,4", "--concurrency", "1,4", "--seconds", "0.5", "--work", str(tmp_path / "work")]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    table = (out / "gpu_check.md").read_text()

    assert report["host"]["cuda"] is False
    assert report["ran"] == {"model": True, "eager": True, "serving": True, "parity": True, "memory": False}
    assert "no CUDA device" in report["not_run"]["memory"]
    assert "TensorRT" in report["not_run"]["tensorrt_flavour"]
    assert "random weights" in report["model"]["note"]
    for part, why in report["not_run"].items():
        assert f"- {part}: {why}" in table

    eager = report["eager"]["rows"]
    assert {(r["k"], r["batch"]) for r in eager} == {(1, 1), (1, 2), (4, 1), (4, 2)}
    assert all(r["images_per_s"] > 0 for r in eager)
    serving = report["serving"]["rows"]
    assert [(r["k"], r["concurrency"]) for r in serving] == [(1, 1), (1, 4), (4, 1), (4, 4)]
    for row in serving:
        assert row["requests"] >= row["concurrency"] and not row["errors"]
        assert row["avg_vision_batch"] >= 1.0
        size = report["model"]["image_size"]
        assert row["bytes_per_photo"] >= size * size * 3  # at least the photo itself, counted as it moved
        assert row["bytes_met"] is (row["bytes_per_photo"] <= row["bytes_goal"])

    fp32 = report["parity"]["float32"]
    assert fp32["admitted_equal"] and fp32["score_max_abs_diff"] < 1e-4 and fp32["mask_min_iou"] >= 0.99
    everything = max(c["reference_admitted"] for c in fp32["checks"])
    assert any(c["threshold"] > 0 and 0 < c["reference_admitted"] < everything for c in fp32["checks"])
    goals = {g["goal"]: g for g in report["goals"]}
    speed = next(g for name, g in goals.items() if name.startswith("Triton images/s at K=4"))
    assert speed["met"] is None and "not assessed" in speed["note"]  # a CPU says nothing about an H200
    assert goals["admitted set equal to eager (fp32)"]["met"] is True
    assert "| goal | value | met | ratio | note |" in table and "not assessed" in table
