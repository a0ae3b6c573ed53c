"""What one photo costs on the SAM3 serving path: bytes across boundaries, time vs PyTorch eager, memory.

For K = 1, 4, 12 phrases (fresh phrases each time, so text features are computed as well):

- bytes that cross a process boundary per photo, summed from the tensors actually sent to and
  received from Triton (``TritonSegmenter.last_transfer``). The CPU flavour runs the three graphs
  inside the ``sam3`` model, so nothing else crosses; goal: <= 16 MB + 90 kB per kept mask;
- Triton analyze time (``segment()``: resize, gRPC, the graphs, post-processing) vs PyTorch eager on
  the same square photo and model (``bench.sam3_eager`` in the model environment: vision once, text,
  the detection head per phrase); goal: ratio <= 1.0;
- per-stage times: the caller's resize, the ``sam3`` request (Triton's statistics: queue, compute),
  and eager's vision / text / decoder;
- peak resident memory of the Triton process tree (server + python stubs) during each call, vs the
  eager process's peak; goal: ratio <= 2.5.

Eager runs first and exits before Triton starts (the two never hold the model at once). Tiny model by
default; ``BENCH_FULL=1`` (or ``--full``) uses the full-size random-weight export of ``make test-full``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient

from bench.process_memory import TreePeak
from server.inference import sam3_core
from server.inference.artifacts import MODEL_VENV, REPO_ROOT, ModelArtifact, ensure_artifact
from server.inference.local_triton import LocalTriton
from server.inference.triton import TritonSegmenter
from server.palettes import INTERIOR_PALETTE

KS = (1, 4, 12)
BYTES_GOAL_FIXED = 16 * 10**6
BYTES_GOAL_PER_MASK = 90 * 10**3
EAGER_RATIO_GOAL = 1.0
MEMORY_RATIO_GOAL = 2.5
FULL_DIR = Path(os.environ.get("S3_FULL_DIR", str(REPO_ROOT / ".full")))


def phrase_sets(ks: tuple[int, ...] = KS) -> list[list[str]]:
    """Distinct phrases of the interior palette per K (none cached by an earlier call)."""
    palette = [p for c in INTERIOR_PALETTE for p in c.prompts]
    if sum(ks) > len(palette):
        raise ValueError(f"K = {ks} need {sum(ks)} distinct phrases; the interior palette has {len(palette)}")
    sets, start = [], 0
    for k in ks:
        sets.append(palette[start : start + k])
        start += k
    return sets


def photo(h: int = 768, w: int = 1024, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], axis=-1)
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def eager(checkpoint: Path, square: np.ndarray, sets: list[list[str]], work: Path) -> dict[str, Any]:
    np.save(work / "square.npy", square)
    (work / "phrases.json").write_text(json.dumps(sets))
    command = [str(MODEL_VENV / "bin" / "python"), "-m", "bench.sam3_eager", str(checkpoint)]
    command += [str(work / "square.npy"), str(work / "phrases.json"), str(work / "eager.json")]
    process = subprocess.Popen(command, cwd=REPO_ROOT)
    with TreePeak(process.pid) as memory:
        code = process.wait()
    if code != 0:
        raise RuntimeError(f"eager SAM3 failed with exit code {code}")
    result: dict[str, Any] = json.loads((work / "eager.json").read_text())
    result["peak_rss_bytes"] = memory.peak_bytes
    return result


def _sam3_stats(url: str) -> tuple[int, int, int]:
    client = grpcclient.InferenceServerClient(url)
    try:
        s = client.get_inference_statistics("sam3").model_stats[0].inference_stats
        return int(s.success.count), int(s.queue.ns), int(s.compute_infer.ns)
    finally:
        client.close()


async def triton(artifact: ModelArtifact, image: np.ndarray, sets: list[list[str]], work: Path) -> list[dict[str, Any]]:
    rows = []
    with LocalTriton(artifact.cpu_repository(work / "repository"), work / "triton") as server:
        assert server.pid is not None
        segmenter = await TritonSegmenter.connect(server.url, timeout_s=3600)
        try:
            for phrases in sets:
                before = _sam3_stats(server.url)
                t0 = time.perf_counter()
                sam3_core.resize_square(image, artifact.geometry.image_size)
                resize_s = time.perf_counter() - t0
                with TreePeak(server.pid) as memory:
                    t0 = time.perf_counter()
                    found = await segmenter.segment(image, {p: [p] for p in phrases})
                    total_s = time.perf_counter() - t0
                after = _sam3_stats(server.url)
                sent, received = segmenter.last_transfer["sent_bytes"], segmenter.last_transfer["received_bytes"]
                masks = segmenter.last_transfer["kept"]
                total = sent + received
                goal = BYTES_GOAL_FIXED + BYTES_GOAL_PER_MASK * masks
                rows.append(
                    {
                        "k": len(phrases),
                        "sent_bytes": sent,
                        "received_bytes": received,
                        "kept_masks": masks,
                        "instances": sum(len(v) for v in found.values()),
                        "bytes_per_photo": total,
                        "bytes_goal": goal,
                        "bytes_met": total <= goal,
                        "analyze_s": round(total_s, 3),
                        "resize_s": round(resize_s, 4),
                        "sam3_queue_s": round((after[1] - before[1]) / 1e9, 3),
                        "sam3_compute_s": round((after[2] - before[2]) / 1e9, 3),
                        "triton_tree_peak_bytes": memory.peak_bytes,
                    }
                )
        finally:
            await segmenter.close()
    return rows


def run(full: bool = False, ks: tuple[int, ...] = KS) -> dict[str, Any]:
    if full:
        checkpoint = FULL_DIR / "checkpoint"
        if not (checkpoint / "config.json").is_file():
            raise SystemExit(f"no full-size checkpoint in {checkpoint}: run `make test-full` first")
        artifact = asyncio.run(ensure_artifact(FULL_DIR / "serve", checkpoint))
    else:
        artifact = asyncio.run(ensure_artifact(REPO_ROOT / ".artifacts", None))
        checkpoint = artifact.root / "checkpoint"
    image = photo()
    square = sam3_core.resize_square(image, artifact.geometry.image_size)
    sets = phrase_sets(ks)
    with tempfile.TemporaryDirectory(prefix="sam3-cost-") as tmp:
        work = Path(tmp)
        reference = eager(checkpoint, square, sets, work)
        rows = asyncio.run(triton(artifact, image, sets, work))
    for row, ref in zip(rows, reference["runs"], strict=True):
        row["eager_s"] = round(ref["total_s"], 3)
        row["eager_vision_s"] = round(ref["vision_s"], 3)
        row["eager_text_s"] = round(ref["text_s"], 3)
        row["eager_decoder_s"] = round(ref["decoder_s"], 3)
        row["eager_ratio"] = round(row["analyze_s"] / max(ref["total_s"], 1e-9), 3)
        row["eager_met"] = row["eager_ratio"] <= EAGER_RATIO_GOAL
        row["memory_ratio"] = round(row["triton_tree_peak_bytes"] / max(reference["peak_rss_bytes"], 1), 3)
        row["memory_met"] = row["memory_ratio"] <= MEMORY_RATIO_GOAL
    return {
        "model": artifact.name,
        "image_size": artifact.geometry.image_size,
        "photo": list(image.shape),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "eager_peak_rss_bytes": reference["peak_rss_bytes"],
        "eager_load_s": round(reference["load_s"], 2),
        "rows": rows,
    }


def markdown(results: dict[str, Any]) -> str:
    mb = 1e6
    lines = [
        f"Model `{results['model']}` ({results['image_size']} px), photo {results['photo'][1]}x{results['photo'][0]}, "
        f"{results['cpus']} CPUs, load average {results['load_average']}; eager peak "
        f"{results['eager_peak_rss_bytes'] / 1e9:.2f} GB.",
        "",
        "| K | sent MB | received MB | kept masks | bytes/photo MB | goal MB | met | Triton s | eager s | ratio | met "
        "| resize s | sam3 compute s | eager vision / text / decoder s | Triton tree GB | x eager | met |",
        "|" + "---|" * 17,
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['k']} | {r['sent_bytes'] / mb:.2f} | {r['received_bytes'] / mb:.2f} | {r['kept_masks']} "
            f"| {r['bytes_per_photo'] / mb:.2f} | {r['bytes_goal'] / mb:.2f} | {'met' if r['bytes_met'] else 'NOT met'} "
            f"| {r['analyze_s']:.2f} | {r['eager_s']:.2f} | {r['eager_ratio']:.2f} | {'met' if r['eager_met'] else 'NOT met'} "
            f"| {r['resize_s']:.3f} | {r['sam3_compute_s']:.2f} "
            f"| {r['eager_vision_s']:.2f} / {r['eager_text_s']:.2f} / {r['eager_decoder_s']:.2f} "
            f"| {r['triton_tree_peak_bytes'] / 1e9:.2f} | {r['memory_ratio']:.2f} | {'met' if r['memory_met'] else 'NOT met'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--full", action="store_true", default=os.environ.get("BENCH_FULL") == "1")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--ks", default=",".join(map(str, KS)), help="phrase counts to measure (comma-separated)")
    args = parser.parse_args()
    results = run(full=args.full, ks=tuple(int(k) for k in args.ks.split(",")))
    print(markdown(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
