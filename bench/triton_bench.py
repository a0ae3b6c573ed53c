"""SAM3 serving on this machine: perf_analyzer against the embedded Triton, and Triton vs in-process.

Uses the tiny model (the only one a CPU machine without weights has): the figures measure the
serving path (gRPC, BLS, batching, pre/post-processing), not SAM3's own compute. Four parts:

1. ``vision``: perf_analyzer on ``sam3_vision`` (fp32 [3,112,112]) at concurrency 1, 4, 8.
2. ``sam3``: perf_analyzer on ``sam3`` (a 480x640 uint8 photo, 4 phrases) at concurrency 1, 4, 8.
3. ``queue_delay``: the vision graph's ``max_queue_delay_microseconds`` swept on ``sam3`` at
   concurrency 8 (the measurement behind ``VISION_BATCHING``), with the average vision batch.
4. ``round_trip``: one segment() call through Triton vs the in-process onnxruntime backend, for 1, 4
   and 12 phrases on a 1152x864 photo, median of repeated calls (text features cached, as in service).

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
import tritonclient.grpc as grpcclient

from server.inference import triton_repository as tr
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


def sam3_input_data(work: Path) -> Path:
    image = synthetic_photo(480, 640)
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


def vision_counts(url: str) -> tuple[int, int]:
    client = grpcclient.InferenceServerClient(url)
    try:
        stats = client.get_inference_statistics("sam3_vision").model_stats[0]
        return int(stats.inference_count), int(stats.execution_count)
    finally:
        client.close()


def with_vision_delay(artifact: ModelArtifact, delay_us: int, target: Path) -> Path:
    """The tiny CPU repository with a vision graph that waits ``delay_us`` to form batches."""
    artifact.cpu_repository(target)
    batching = tr.Batching(
        tr.VISION_BATCHING.max_batch_size, tr.VISION_BATCHING.preferred_batch_sizes, max_queue_delay_us=delay_us
    )
    config = tr.graph_config("vision", "cpu", artifact.geometry, batching=batching)
    (target / "sam3_vision" / "config.pbtxt").write_text(config)
    return target


def queue_delay_sweep(artifact: ModelArtifact, work: Path, delays: tuple[int, ...]) -> list[dict[str, Any]]:
    data = sam3_input_data(work)
    rows = []
    for delay in delays:
        with LocalTriton(
            with_vision_delay(artifact, delay, work / f"repo-{delay}"), work / f"triton-{delay}"
        ) as server:
            direct = run_perf(server.url, "sam3_vision", 8, work)
            before = vision_counts(server.url)
            through_sam3 = run_perf(server.url, "sam3", 8, work, data)
            after = vision_counts(server.url)
        inferences, executions = after[0] - before[0], after[1] - before[1]
        rows.append(
            {
                "max_queue_delay_us": delay,
                "vision_infer_per_s": direct["infer_per_s"],
                "vision_p50_ms": direct["p50_ms"],
                "sam3_infer_per_s": through_sam3["infer_per_s"],
                "sam3_p50_ms": through_sam3["p50_ms"],
                "sam3_p99_ms": through_sam3["p99_ms"],
                "avg_vision_batch_in_sam3": round(inferences / max(executions, 1), 2),
            }
        )
    return rows


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


PARTS = ("vision", "sam3", "round_trip", "queue_delay")


def run(
    repeat: int = 20, delays: tuple[int, ...] = (0, 1000, 5000, 20000), parts: tuple[str, ...] = PARTS
) -> dict[str, Any]:
    """The chosen parts; returns a JSON-serialisable dict (``make bench`` merges it)."""
    artifact = asyncio.run(ensure_artifact(ARTIFACTS, None))
    results: dict[str, Any] = {
        "model": artifact.name,
        "cpus": os.cpu_count(),
        "vision_batching": tr.VISION_BATCHING.__dict__
        | {"preferred_batch_sizes": list(tr.VISION_BATCHING.preferred_batch_sizes)},
    }
    with tempfile.TemporaryDirectory(prefix="triton-bench-") as tmp:
        work = Path(tmp)
        with LocalTriton(artifact.cpu_repository(work / "repository"), work / "triton") as server:
            if "vision" in parts:
                results["vision"] = [run_perf(server.url, "sam3_vision", c, work) for c in (1, 4, 8)]
            if "sam3" in parts:
                data = sam3_input_data(work)
                results["sam3"] = [run_perf(server.url, "sam3", c, work, data) for c in (1, 4, 8)]
            if "round_trip" in parts:
                results["round_trip"] = asyncio.run(round_trip(artifact, server.url, repeat))
        if "queue_delay" in parts:
            results["queue_delay"] = queue_delay_sweep(artifact, work, delays)
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
        ("vision", "perf_analyzer, `sam3_vision` (fp32 [3,112,112], batch 1 per request)"),
        ("sam3", "perf_analyzer, `sam3` (480x640 uint8 photo, 4 phrases)"),
        ("queue_delay", "vision graph queue delay swept: `sam3_vision` and `sam3` at concurrency 8"),
        ("round_trip", "one segment() call, 1152x864 photo: Triton vs in-process onnxruntime (median)"),
    ):
        if part in results:
            lines += [f"**{title}**", "", *_table(results[part]), ""]
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
