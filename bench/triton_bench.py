"""SAM3 serving on this machine: perf_analyzer against the embedded Triton, Triton vs in-process, and
what one photo costs.

Uses the tiny model by default: the first two parts measure the serving path (gRPC, the python
backend, pre/post-processing), not SAM3's own compute. Three parts:

1. ``sam3``: perf_analyzer on ``sam3`` (a model-size uint8 square, 4 phrases) at concurrency 1, 4, 8.
2. ``round_trip``: one segment() call through Triton vs the in-process onnxruntime backend, for 1, 4
   and 12 phrases on a 1152x864 photo, median of repeated calls (text features cached, as in service).
3. ``cost``: :mod:`bench.sam3_cost` (bytes per photo, Triton vs PyTorch eager, stage times, memory of
   the Triton tree); full size with ``BENCH_FULL=1``.

The CPU flavour has no separate graph models (the graphs run inside ``sam3``), so there is no
graph-level batching to sweep here; the GPU flavour's batching values are starting points.

Needs ``make model-venv tiny-model perf-tools``. Run: ``python -m bench.triton_bench [--json PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import sam3_cost
from server.inference import sam3_core
from server.inference.artifacts import REPO_ROOT, ModelArtifact, ensure_artifact
from server.inference.local_triton import LocalTriton
from server.inference.onnx_local import OnnxLocalSegmenter
from server.inference.triton import TritonSegmenter

PERF_VENV = REPO_ROOT / ".venv-perf"
ARTIFACTS = REPO_ROOT / ".artifacts"
PHRASES = ("wall", "floor", "ceiling", "door", "window", "person", "tile", "grout", "cabinet", "lamp", "rug", "sofa")


def synthetic_photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], axis=-1)
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def perf_analyzer() -> tuple[Path, dict[str, str]]:
    binary = PERF_VENV / "bin" / "perf_analyzer"
    if not binary.exists():
        raise SystemExit("perf_analyzer is missing: run `make perf-tools`")
    probe = subprocess.run(
        [str(PERF_VENV / "bin" / "python"), "-c", "import nvidia.cuda_runtime as m; print(list(m.__path__)[0])"],
        capture_output=True,
        text=True,
        check=True,
    )
    env = dict(os.environ)
    # perf_analyzer links the CUDA runtime even when it never touches a GPU.
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(Path(probe.stdout.strip()) / "lib"), env.get("LD_LIBRARY_PATH")) if p
    )
    return binary, env


def run_perf(url: str, model: str, concurrency: int, work: Path, input_data: Path | None = None) -> dict[str, float]:
    """One perf_analyzer measurement; latencies in ms (perf_analyzer reports microseconds)."""
    binary, env = perf_analyzer()
    out = work / f"{model}-c{concurrency}.csv"
    command = [
        str(binary),
        "-m",
        model,
        "-u",
        url,
        "-i",
        "grpc",
        "--concurrency-range",
        str(concurrency),
        "--measurement-interval",
        "2000",
        # Two shared cores are noisy: accept windows within 50% of each other, as up to 10 trials allow.
        "--stability-percentage",
        "50",
        "--max-trials",
        "10",
        "-f",
        str(out),
    ]
    if input_data is not None:
        command += ["--input-data", str(input_data)]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"perf_analyzer failed: {run.stdout[-1500:]} {run.stderr[-1500:]}")
    with out.open() as f:
        row = next(csv.DictReader(f))
    return {
        "concurrency": concurrency,
        "infer_per_s": round(float(row["Inferences/Second"]), 2),
        "p50_ms": round(float(row["p50 latency"]) / 1000, 2),
        "p99_ms": round(float(row["p99 latency"]) / 1000, 2),
        "server_queue_ms": round(float(row["Server Queue"]) / 1000, 2),
        "server_compute_ms": round(float(row["Server Compute Infer"]) / 1000, 2),
    }


def sam3_input_data(work: Path, size: int) -> Path:
    image = sam3_core.resize_square(synthetic_photo(480, 640), size)  # the caller resizes
    data = {
        "data": [
            {
                "image": {"b64": base64.b64encode(image.tobytes()).decode(), "shape": list(image.shape)},
                "phrases": {"content": list(PHRASES[:4]), "shape": [4]},
                "score_threshold": {"content": [0.0], "shape": [1]},
            }
        ]
    }
    path = work / "sam3_input.json"
    path.write_text(json.dumps(data))
    return path


async def round_trip(artifact: ModelArtifact, url: str, repeat: int) -> list[dict[str, Any]]:
    remote = await TritonSegmenter.connect(url, timeout_s=120)
    local = OnnxLocalSegmenter(artifact)
    image = synthetic_photo(864, 1152, seed=1)
    rows = []
    try:
        for k in (1, 4, 12):
            concepts = {p: [p] for p in PHRASES[:k]}
            row: dict[str, Any] = {"phrases": k}
            for name, segmenter in (("triton_ms", remote), ("in_process_ms", local)):
                await segmenter.segment(image, concepts)  # warm: text features cached, as in service
                times = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    await segmenter.segment(image, concepts)
                    times.append((time.perf_counter() - t0) * 1000)
                row[name] = round(statistics.median(times), 2)
            rows.append(row)
    finally:
        await remote.close()
    return rows


PARTS = ("sam3", "round_trip", "cost")


def run(repeat: int = 20, parts: tuple[str, ...] = PARTS) -> dict[str, Any]:
    """The chosen parts; returns a JSON-serialisable dict (``make bench`` merges it)."""
    artifact = asyncio.run(ensure_artifact(ARTIFACTS, None))
    results: dict[str, Any] = {"model": artifact.name, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="triton-bench-") as tmp:
        work = Path(tmp)
        if "sam3" in parts or "round_trip" in parts:
            with LocalTriton(artifact.cpu_repository(work / "repository"), work / "triton") as server:
                if "sam3" in parts:
                    data = sam3_input_data(work, artifact.geometry.image_size)
                    results["sam3"] = [run_perf(server.url, "sam3", c, work, data) for c in (1, 4, 8)]
                if "round_trip" in parts:
                    results["round_trip"] = asyncio.run(round_trip(artifact, server.url, repeat))
    if "cost" in parts:
        results["cost"] = sam3_cost.run(full=os.environ.get("BENCH_FULL") == "1")
    return results


def _table(rows: list[dict[str, Any]]) -> list[str]:
    keys = list(rows[0])
    return [
        "| " + " | ".join(keys) + " |",
        "|" + "---|" * len(keys),
        *("| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows),
    ]


def markdown(results: dict[str, Any]) -> str:
    lines = [f"Model `{results['model']}`, {results['cpus']} CPUs, CPU repository (python backend + onnxruntime).", ""]
    for part, title in (
        ("sam3", "perf_analyzer, `sam3` (model-size uint8 square of a 480x640 photo, 4 phrases)"),
        ("round_trip", "one segment() call, 1152x864 photo: Triton vs in-process onnxruntime (median)"),
    ):
        if part in results:
            lines += [f"**{title}**", "", *_table(results[part]), ""]
    if "cost" in results:
        lines += ["**one photo: bytes across boundaries, Triton vs PyTorch eager, Triton tree memory**", ""]
        lines += [sam3_cost.markdown(results["cost"]), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="SAM3 serving benchmarks (tiny model, embedded Triton).")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {PARTS}")
    args = parser.parse_args()
    results = run(repeat=args.repeat, parts=tuple(args.parts.split(",")))
    print(markdown(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
