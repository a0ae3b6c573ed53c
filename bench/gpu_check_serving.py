"""The GPU check's serving part: the ``torch`` flavour in the bundled Triton, loaded by concurrent
``tritonclient`` requests; images/s, latency, vision batch sizes and bytes moved per photo.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.gpu_check_eager import photos
from bench.gpu_check_goals import bytes_goal
from server.inference import sam3_core, torch_graphs
from server.inference import triton_repository as tr
from server.inference.torch_repository import TorchRuntime, assemble_torch


def infer(client: Any, image: np.ndarray, phrases: Sequence[str], threshold: float) -> dict[str, np.ndarray]:
    import tritonclient.grpc as grpcclient

    inputs = [
        grpcclient.InferInput("image", list(image.shape), "UINT8"),
        grpcclient.InferInput("phrases", [len(phrases)], "BYTES"),
        grpcclient.InferInput("score_threshold", [1], "FP32"),
    ]
    inputs[0].set_data_from_numpy(image)
    inputs[1].set_data_from_numpy(np.array([p.encode() for p in phrases], dtype=np.object_))
    inputs[2].set_data_from_numpy(np.array([threshold], np.float32))
    result = client.infer(tr.SAM3_MODEL, inputs, client_timeout=600)
    return {name: result.as_numpy(name) for name in sam3_core.DETECTION_OUTPUTS}


def vision_counts(url: str) -> tuple[int, int]:
    """The vision model's (inferences, executions) so far, from Triton's statistics: their ratio is
    the average batch size."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        s = client.get_inference_statistics(tr.graph_model("vision")).model_stats[0]
        return int(s.inference_count), int(s.execution_count)
    finally:
        client.close()


def _moved(stats: dict[str, dict[str, Any]]) -> int:
    return sum(int(s["h2d_bytes"]) + int(s["d2h_bytes"]) for s in stats.values())


def load_cell(
    url: str, stats_dir: Path, size: int, phrases: Sequence[str], concurrency: int, min_s: float
) -> dict[str, Any]:
    """``concurrency`` clients sending photos with ``phrases`` for ``min_s`` (each at least one)."""
    import tritonclient.grpc as grpcclient

    latencies: list[float] = []
    kept: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + min_s

    def worker(seed: int) -> None:
        client = grpcclient.InferenceServerClient(url)
        image = photos(1, size, seed=seed)[0]
        try:
            while True:
                t0 = time.perf_counter()
                try:
                    out = infer(client, image, phrases, 0.0)
                except Exception as e:  # reported, not hidden: a failed request is a finding
                    with lock:
                        errors.append(str(e)[:300])
                    return
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    kept.append(len(out["scores"]))
                if time.perf_counter() >= stop_at:
                    return
        finally:
            client.close()

    before, moved_before = vision_counts(url), _moved(torch_graphs.read_stats(stats_dir))
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    after, moved_after = vision_counts(url), _moved(torch_graphs.read_stats(stats_dir))
    n = len(latencies)
    ordered = sorted(latencies)
    per_photo = (moved_after - moved_before) / max(n, 1)
    masks = statistics.fmean(kept) if kept else 0.0
    goal = bytes_goal(masks)
    return {
        "k": len(phrases),
        "concurrency": concurrency,
        "requests": n,
        "errors": errors[:3],
        "images_per_s": round(n / elapsed, 3),
        "p50_ms": round(1000 * ordered[n // 2], 1) if n else None,
        "p99_ms": round(1000 * ordered[min(n - 1, int(0.99 * n))], 1) if n else None,
        "avg_vision_batch": round((after[0] - before[0]) / max(after[1] - before[1], 1), 2),
        "bytes_per_photo": round(per_photo),
        "kept_masks_per_photo": round(masks, 1),
        "bytes_goal": round(goal),
        "bytes_met": per_photo <= goal,
    }


def serve(model: dict[str, Any], runtime: TorchRuntime, work: Path, model_venv: Path | None = None) -> Any:
    """A started LocalTriton serving the torch flavour of ``model`` (caller stops it)."""
    from server.inference.artifacts import MODEL_VENV
    from server.inference.local_triton import LocalTriton

    repository = assemble_torch(work / "repository", model["geometry"], model["params"], runtime, model["tokenizer"])
    server = LocalTriton(
        repository,
        work,
        ready_models=tr.served_models("torch"),
        startup_timeout_s=600,
        extra_args=runtime.triton_args(),
        model_venv=model_venv or MODEL_VENV,
    )
    server.start()
    return server


def device_used_bytes() -> int:
    import torch

    if not torch.cuda.is_available():
        return 0
    free, total = torch.cuda.mem_get_info()
    return int(total - free)


def infer_once(url: str, size: int, phrases: Sequence[str]) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        infer(client, photos(1, size, seed=7)[0], phrases, 0.0)
    finally:
        client.close()
