"""``bench.sam3_vision_ab`` at tiny size: both vision graphs compute PyTorch's features, the fused one
with every ViT attention as the fused op, the eager one with none; every call is timed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from server.inference.artifacts import REPO_ROOT, model_python

pytestmark = pytest.mark.integration


def test_the_vision_ab_exports_both_graphs_and_times_every_call(tmp_path: Path) -> None:
    out = tmp_path / "ab.json"
    command = [str(model_python()), "-m", "bench.sam3_vision_ab", "--size", "tiny", "--rounds", "2"]
    command += ["--work", str(tmp_path / "graphs"), "--json", str(out)]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    layers = 2  # the tiny ViT (server.inference.export.checkpoints.tiny_config)
    assert result["fused_ops"] == {"eager": 0, "fused": layers}
    assert all(diff <= 1e-5 for diff in result["max_abs_diff"].values()), result["max_abs_diff"]
    assert set(result["calls"]) == {"torch_sdpa", "onnx_eager", "onnx_fused"}
    assert all(len(calls) == 2 and all(c["wall_s"] >= 0 for c in calls) for calls in result["calls"].values())
