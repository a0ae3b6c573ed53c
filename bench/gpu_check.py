"""SAM3 on one GPU: the prepared check of the ``torch`` serving flavour against PyTorch eager.

``make gpu-check`` (or ``python -m bench.gpu_check --out DIR``, in the model environment) writes
``gpu_check.json`` and ``gpu_check.md`` to one folder (``$OUT`` when set). Parts:

1. ``model``: on a CUDA host, a seeded full-size random-weight SAM3 (default ``Sam3Config``, the
   published layout) built on the host; elsewhere the tiny export. Random weights give honest speed
   figures, not accuracy figures.
2. ``eager``: PyTorch eager (bf16 on CUDA, fp32 on CPU): vision once per photo, the detection head per
   prompt, images/s at K = 1, 4, 12, batch 1 and the best batch.
3. ``serving``: the bundled ``tritonserver`` with the ``torch`` flavour, ``tritonclient`` requests of
   square uint8 photos with K phrases at concurrency 1, 8, 32: images/s, p50/p99, average vision
   batch (Triton statistics), bytes host <-> device per photo (counted by the graph models).
4. ``parity``: the flavour vs eager fp32 on the same weights (admitted set, score diff, mask IoU), in
   fp32 and in bf16 (bf16 only on CUDA).
5. ``memory``: peak GPU memory (eager; the graph models; the device as a whole).

What cannot run here is said, with the reason (no CUDA device; the TensorRT flavour: no TensorRT).
Tiny model on CPU: the whole check in about a minute (a test runs it so).

The device run (the ``run`` tool: working tree + carried paths <= 64 MiB, no network, Python 3.12 with
torch and transformers already there, no Triton). Here, once, with network: ``make gpu-kit``
(downloads nvidia-pytriton 0.7.0, numpy 1.26.4, tritonclient 2.73.0, grpcio, python-rapidjson and
ml_dtypes for cp312 into ``.gpu-wheels/`` and packs what the check needs into ``.gpu-kit/kit.tar.xz``, git-ignored). Then the
one command, carrying ``.gpu-kit`` (``run`` with ``carry=[".gpu-kit"]``, ``timeout_s=540``)::

    bash bench/gpu_check_device.sh

It makes a venv over the host's site-packages with the kit unpacked into it (numpy < 2: the bundled
python backend stub needs it) and runs ``python -m bench.gpu_check --out $OUT``. Budget on an H200,
estimated (not measured): checkpoint build ~1 min, eager ~1.5 min, two Triton starts ~1 min each,
serving cells ~1 min: under 8 minutes with ``--seconds 5`` (the CUDA default).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bench.sam3_cost import phrase_sets
from server.inference import sam3_core, torch_graphs
from server.inference import triton_repository as tr

PARTS = ("model", "eager", "serving", "parity", "memory")
KS = (1, 4, 12)
CONCURRENCY = (1, 8, 32)
GOAL_IMAGES_PER_S = 60.0
GOAL_EAGER_RATIO = 3.0
GOAL_BYTES_FIXED = 4 * 10**6
GOAL_BYTES_PER_MASK = 90 * 10**3
GOAL_BF16_MASK_IOU = 0.98
GOAL_K = 4
RANDOM_NOTE = "random weights: speed figures, not accuracy figures"


# --- where we are ---------------------------------------------------------------------------------


def host_facts() -> dict[str, Any]:
    import torch

    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "cpus": os.cpu_count(),
        "cuda": bool(torch.cuda.is_available()),
    }
    if facts["cuda"]:
        facts["gpu"] = torch.cuda.get_device_name(0)
        facts["gpu_memory_bytes"] = int(torch.cuda.get_device_properties(0).total_memory)
    try:
        import tensorrt

        facts["tensorrt"] = tensorrt.__version__
    except ImportError:
        facts["tensorrt"] = None
    return facts


# --- 1. the model ---------------------------------------------------------------------------------


def prepare_model(cuda: bool, work: Path) -> dict[str, Any]:
    """The checkpoint and what the repository needs of it: full-size random weights on CUDA, else tiny."""
    from server.inference.export import checkpoints
    from server.inference.export.sam3_export import save_tokenizer

    if cuda:
        checkpoint = work / "checkpoint-full"
        t0 = time.perf_counter()
        if not (checkpoint / "config.json").is_file():
            checkpoints.build_checkpoint(checkpoint, "full")
        tokenizer = work / "tokenizer.json"
        save_tokenizer(checkpoint, tokenizer)
        params = tr.Sam3Parameters(
            model_name="sam3-random",
            meaningful=False,
            score_threshold=0.0,
            decoder_bytes_per_phrase=tr.FULL_SIZE_DECODER_BYTES_PER_PHRASE,
        )
        return {
            "name": "sam3-random (full size)",
            "checkpoint": checkpoint,
            "tokenizer": tokenizer,
            "geometry": tr.FULL_SIZE,
            "params": params,
            "build_s": round(time.perf_counter() - t0, 1),
        }
    import asyncio

    from server.inference.artifacts import REPO_ROOT, ensure_artifact

    artifact = asyncio.run(ensure_artifact(REPO_ROOT / ".artifacts", None))
    return {
        "name": f"{artifact.name} (tiny)",
        "checkpoint": artifact.root / "checkpoint",
        "tokenizer": artifact.tokenizer_json,
        "geometry": artifact.geometry,
        "params": artifact.parameters(),
        "build_s": 0.0,
    }


def photos(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _timed(step: Callable[[], Any], min_s: float, sync: Callable[[], None]) -> tuple[int, float]:
    step()  # warm-up (allocator, kernels)
    sync()
    runs, t0 = 0, time.perf_counter()
    while runs < 2 or time.perf_counter() - t0 < min_s:
        step()
        sync()
        runs += 1
    return runs, time.perf_counter() - t0


# --- 2. eager, and the fp32 reference of the parity part --------------------------------------------


class Eager:
    """SAM3 in PyTorch eager on the check's device (the reference and the baseline)."""

    def __init__(self, checkpoint: Path, device: str, dtype: str) -> None:
        import torch
        from transformers import AutoTokenizer, Sam3Model

        self.torch = torch
        self.device = torch.device(device)
        self.model = (
            Sam3Model.from_pretrained(str(checkpoint), local_files_only=True, dtype=getattr(torch, dtype))
            .eval()
            .to(self.device)
        )
        self.tokenizer = AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True)

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def segment(self, images: np.ndarray, phrases: Sequence[str]) -> list[Any]:
        from bench.sam3_eager import detect_per_prompt
        from server.inference.export.graphs import normalise

        torch = self.torch
        with torch.inference_mode():
            x = normalise(torch.from_numpy(images).to(self.device)).to(self.model.dtype)
            vision = self.model.vision_encoder(x)
            tokens = self.tokenizer(
                list(phrases), padding="max_length", max_length=32, truncation=True, return_tensors="pt"
            )
            ids, mask = tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)
            text = self.model.get_text_features(input_ids=ids, attention_mask=mask)
            return detect_per_prompt(self.model, vision, text.pooler_output, mask)

    def raw(self, image: np.ndarray, phrases: Sequence[str]) -> list[np.ndarray]:
        """One photo's raw outputs per prompt, stacked as the export's reference: masks, boxes, logits, presence."""
        outs = self.segment(image[None], phrases)
        names = ("pred_masks", "pred_boxes", "pred_logits", "presence_logits")
        return [np.concatenate([getattr(o, n).float().cpu().numpy() for o in outs]) for n in names]

    def throughput(self, size: int, ks: Sequence[int], batches: Sequence[int], min_s: float) -> list[dict[str, Any]]:
        rows = []
        for k, phrases in zip(ks, phrase_sets(tuple(ks)), strict=True):
            for b in batches:
                images = photos(b, size, seed=b)
                runs, elapsed = _timed(functools.partial(self.segment, images, phrases), min_s, self.sync)
                rows.append({"k": k, "batch": b, "images_per_s": round(b * runs / elapsed, 3)})
        return rows

    def peak_bytes(self) -> int:
        return int(self.torch.cuda.max_memory_allocated(self.device)) if self.device.type == "cuda" else 0

    def close(self) -> None:
        del self.model
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()


def best_eager(rows: list[dict[str, Any]], k: int) -> dict[str, Any]:
    return max((r for r in rows if r["k"] == k), key=lambda r: r["images_per_s"])


# --- 3. serving -----------------------------------------------------------------------------------


def _infer(client: Any, image: np.ndarray, phrases: Sequence[str], threshold: float) -> dict[str, np.ndarray]:
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
                    out = _infer(client, image, phrases, 0.0)
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
    goal = GOAL_BYTES_FIXED + GOAL_BYTES_PER_MASK * masks
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


def serve(model: dict[str, Any], runtime: tr.TorchRuntime, work: Path, model_venv: Path | None = None) -> Any:
    """A started LocalTriton serving the torch flavour of ``model`` (caller stops it)."""
    from server.inference.artifacts import MODEL_VENV
    from server.inference.local_triton import LocalTriton

    repository = tr.assemble_torch(work / "repository", model["geometry"], model["params"], runtime, model["tokenizer"])
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


# --- 4. parity ------------------------------------------------------------------------------------


def compare(got: dict[str, np.ndarray], raw: Sequence[np.ndarray], threshold: float, cap: int) -> dict[str, Any]:
    """Served detections vs the eager fp32 reference selection at one threshold."""
    from server.inference.export.selection import reference_selection

    ref = reference_selection(raw, threshold, cap)
    mine = {(int(p), int(q)): i for i, (p, q) in enumerate(zip(got["phrase_index"], got["query_index"], strict=True))}
    common = sorted(set(mine) & set(ref))
    score_diff = max((abs(float(got["scores"][mine[k]]) - ref[k]["score"]) for k in common), default=0.0)
    ious = []
    for key in common:
        on, theirs = got["masks"][mine[key]] >= 128, ref[key]["mask"]
        union = np.logical_or(on, theirs).sum()
        ious.append(float(np.logical_and(on, theirs).sum() / union) if union else 1.0)
    return {
        "threshold": round(threshold, 6),
        "admitted_equal": set(mine) == set(ref),
        "admitted": len(mine),
        "reference_admitted": len(ref),
        "common": len(common),
        "score_max_abs_diff": score_diff,
        "mask_min_iou": min(ious, default=1.0),
        "mask_mean_iou": statistics.fmean(ious) if ious else 1.0,
    }


def parity(
    url: str, references: list[tuple[np.ndarray, list[np.ndarray]]], phrases: Sequence[str], cap: int
) -> list[dict[str, Any]]:
    import tritonclient.grpc as grpcclient

    from server.inference.export.selection import gate_thresholds

    client = grpcclient.InferenceServerClient(url)
    rows = []
    try:
        for image, raw in references:
            for threshold in gate_thresholds(raw, cap):
                rows.append(compare(_infer(client, image, phrases, threshold), raw, threshold, cap))
    finally:
        client.close()
    return rows


def summarise_parity(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "admitted_equal": all(r["admitted_equal"] for r in rows),
        "score_max_abs_diff": max(r["score_max_abs_diff"] for r in rows),
        "mask_min_iou": min(r["mask_min_iou"] for r in rows),
        "checks": rows,
    }


# --- the run --------------------------------------------------------------------------------------


def run(
    out: Path,
    work: Path,
    *,
    ks: Sequence[int],
    concurrency: Sequence[int],
    seconds: float,
    model_venv: Path | None = None,
) -> dict[str, Any]:
    facts = host_facts()
    cuda = facts["cuda"]
    device: Literal["cuda", "cpu"] = "cuda" if cuda else "cpu"
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "host": facts}
    ran: dict[str, bool] = {}
    why_not: dict[str, str] = {}
    started = time.perf_counter()
    if facts["tensorrt"] is None:
        why_not["tensorrt_flavour"] = "TensorRT is not installed: the gpu (TensorRT) flavour was not built or measured"
    elif not cuda:
        why_not["tensorrt_flavour"] = "no CUDA device: TensorRT plans cannot be built here"
    else:
        why_not["tensorrt_flavour"] = "not part of this check (TensorRT plans are built by the export)"

    model = prepare_model(cuda, work)
    geometry: tr.Geometry = model["geometry"]
    cap = int(model["params"].max_detections)
    report["model"] = {
        "name": model["name"],
        "image_size": geometry.image_size,
        "note": RANDOM_NOTE,
        "build_s": model["build_s"],
    }
    ran["model"] = True
    size = geometry.image_size
    parity_phrases = phrase_sets((GOAL_K,))[0]
    parity_photos = photos(2, size, seed=99)

    # Eager fp32: the parity reference (kept on the host), then eager at the serving precision.
    reference = Eager(model["checkpoint"], device, "float32")
    references = [(img, reference.raw(img, parity_phrases)) for img in parity_photos]
    precision: Literal["bfloat16", "float32"] = "bfloat16" if cuda else "float32"
    if cuda:
        reference.close()
        eager = Eager(model["checkpoint"], device, precision)
        eager.torch.cuda.reset_peak_memory_stats()
    else:
        eager = reference
    batches = (1, 2, 4, 8) if cuda else (1, 2)
    report["eager"] = {"precision": precision, "rows": eager.throughput(size, ks, batches, seconds)}
    ran["eager"] = True
    eager_peak = eager.peak_bytes()
    eager.close()

    serving_runtime = tr.TorchRuntime(
        checkpoint=model["checkpoint"], device=device, precision=precision, stats_dir=work / "stats-serving"
    )
    server = serve(model, serving_runtime, work / "triton-serving", model_venv)
    device_peak = device_used_bytes()
    try:
        rows = []
        for phrases in phrase_sets(tuple(ks)):
            _infer_once(server.url, size, phrases)  # text features cached, as in service
            for c in concurrency:
                rows.append(load_cell(server.url, serving_runtime.stats_dir or work, size, phrases, c, seconds))
                device_peak = max(device_peak, device_used_bytes())
        report["serving"] = {"precision": precision, "flavour": "torch", "rows": rows}
        ran["serving"] = True
        served_parity = parity(server.url, references, parity_phrases, cap)
        graph_stats = torch_graphs.read_stats(serving_runtime.stats_dir or work)
    finally:
        server.stop()
    report["parity"] = {precision: summarise_parity(served_parity)}
    if cuda:  # the bf16 flavour was served above; the fp32 one for the admitted-set gate
        fp32 = tr.TorchRuntime(checkpoint=model["checkpoint"], device=device, precision="float32")
        server = serve(model, fp32, work / "triton-fp32", model_venv)
        try:
            report["parity"]["float32"] = summarise_parity(parity(server.url, references, parity_phrases, cap))
        finally:
            server.stop()
    else:
        why_not["parity_bf16"] = "no CUDA device: bf16 runs on the GPU only (CPU checks fp32)"
    ran["parity"] = True

    if cuda:
        report["memory"] = {
            "eager_peak_bytes": eager_peak,
            "graph_peak_bytes": {g: s["peak_device_bytes"] for g, s in graph_stats.items()},
            "device_used_peak_bytes": device_peak,
        }
        ran["memory"] = True
    else:
        why_not["memory"] = "no CUDA device: peak GPU memory cannot be measured"
        ran["memory"] = False
    for part in ("eager", "serving", "parity"):
        if not cuda:
            why_not.setdefault(f"{part}_gpu", f"no CUDA device: {part} ran on the CPU with the tiny model")
    report["ran"] = ran
    report["not_run"] = why_not
    report["goals"] = goals(report, cuda)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    return report


def _infer_once(url: str, size: int, phrases: Sequence[str]) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        _infer(client, photos(1, size, seed=7)[0], phrases, 0.0)
    finally:
        client.close()


def goals(report: dict[str, Any], cuda: bool) -> list[dict[str, Any]]:
    """Every goal of the issue, met or not, with the measured value and the ratio to the goal."""
    rows = [r for r in report["serving"]["rows"] if r["k"] == GOAL_K] if "serving" in report else []
    found: list[dict[str, Any]] = []
    if rows:
        best = max(rows, key=lambda r: r["images_per_s"])
        eager = best_eager(report["eager"]["rows"], GOAL_K)
        speed_note = "" if cuda else "not assessed: the goal is for one H200, this ran on a CPU with the tiny model"
        found.append(_goal("Triton images/s at K=4", best["images_per_s"], GOAL_IMAGES_PER_S, ">=", speed_note))
        ratio = best["images_per_s"] / max(eager["images_per_s"], 1e-9)
        found.append(
            _goal(
                "Triton / eager images/s at K=4 (eager best batch)", round(ratio, 3), GOAL_EAGER_RATIO, ">=", speed_note
            )
        )
        for r in report["serving"]["rows"]:
            found.append(
                _goal(
                    f"bytes host<->device per photo, K={r['k']} c={r['concurrency']}",
                    r["bytes_per_photo"],
                    r["bytes_goal"],
                    "<=",
                    "",
                )
            )
    parity_report = report.get("parity", {})
    if "float32" in parity_report:
        p = parity_report["float32"]
        found.append(
            {
                "goal": "admitted set equal to eager (fp32)",
                "value": p["admitted_equal"],
                "target": True,
                "met": p["admitted_equal"],
                "ratio": None,
                "note": "",
            }
        )
    if "bfloat16" in parity_report:
        p = parity_report["bfloat16"]
        found.append(
            _goal("mask IoU bf16 vs eager fp32 (worst)", round(p["mask_min_iou"], 4), GOAL_BF16_MASK_IOU, ">=", "")
        )
    return found


def _goal(name: str, value: float, target: float, sense: str, note: str) -> dict[str, Any]:
    met = value >= target if sense == ">=" else value <= target
    return {
        "goal": f"{name} {sense} {target:g}",
        "value": value,
        "target": target,
        "met": None if note else met,
        "ratio": round(value / target, 3) if target else None,
        "note": note,
    }


def markdown(report: dict[str, Any]) -> str:
    h = report["host"]
    where = f"{h.get('gpu', 'no GPU')}, torch {h['torch']}, Python {h['python']}, {h['cpus']} CPUs"
    lines = [
        f"GPU check {report['date']}: model `{report['model']['name']}` ({report['model']['image_size']} px; "
        f"{report['model']['note']}), {where}; wall {report['wall_s']} s.",
        "",
        "Parts that ran: " + ", ".join(p for p, ok in report["ran"].items() if ok) + ".",
        "",
        "Not run or not on a GPU:",
        *(f"- {part}: {why}" for part, why in report["not_run"].items()),
        "",
        f"**Eager ({report['eager']['precision']})**: images/s",
        "",
        "| K | batch | images/s |",
        "|---|---|---|",
        *(f"| {r['k']} | {r['batch']} | {r['images_per_s']} |" for r in report["eager"]["rows"]),
        "",
        f"**Triton, torch flavour ({report['serving']['precision']})**",
        "",
        "| K | concurrency | requests | images/s | p50 ms | p99 ms | avg vision batch | bytes/photo | kept masks | bytes goal | met |",
        "|" + "---|" * 11,
    ]
    for r in report["serving"]["rows"]:
        lines.append(
            f"| {r['k']} | {r['concurrency']} | {r['requests']} | {r['images_per_s']} | {r['p50_ms']} | {r['p99_ms']} "
            f"| {r['avg_vision_batch']} | {r['bytes_per_photo']} | {r['kept_masks_per_photo']} | {r['bytes_goal']} "
            f"| {'met' if r['bytes_met'] else 'NOT met'} |"
        )
    lines += [
        "",
        "**Parity vs eager fp32**",
        "",
        "| precision | admitted set equal | max score diff | worst mask IoU |",
        "|---|---|---|---|",
    ]
    for precision, p in report["parity"].items():
        lines.append(
            f"| {precision} | {p['admitted_equal']} | {p['score_max_abs_diff']:.2e} | {p['mask_min_iou']:.4f} |"
        )
    if "memory" in report:
        m = report["memory"]
        lines += [
            "",
            f"**Peak GPU memory**: eager {m['eager_peak_bytes'] / 2**30:.2f} GiB; graph models "
            + ", ".join(f"{g} {b / 2**30:.2f} GiB" for g, b in m["graph_peak_bytes"].items())
            + f"; device in use {m['device_used_peak_bytes'] / 2**30:.2f} GiB.",
        ]
    lines += ["", "**Goals**", "", "| goal | value | met | ratio | note |", "|---|---|---|---|---|"]
    for g in report["goals"]:
        met = "not assessed" if g["met"] is None else ("met" if g["met"] else "NOT met")
        lines.append(f"| {g['goal']} | {g['value']} | {met} | {g['ratio']} | {g['note']} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None)
    parser.add_argument("--work", type=Path, help="scratch folder (checkpoint, repositories); default: a temporary one")
    parser.add_argument("--model-venv", type=Path, help="environment of the Triton stubs (default .venv-model)")
    parser.add_argument("--ks", default=",".join(map(str, KS)))
    parser.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)))
    parser.add_argument("--seconds", type=float, help="measuring time per cell (default: 5 on CUDA, 1 on CPU)")
    args = parser.parse_args(argv)
    if args.out is None:
        parser.error("--out (or $OUT) is required")
    import torch

    seconds = args.seconds if args.seconds is not None else (5.0 if torch.cuda.is_available() else 1.0)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="s3-gpu-check-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        report = run(
            args.out,
            work,
            ks=[int(k) for k in args.ks.split(",")],
            concurrency=[int(c) for c in args.concurrency.split(",")],
            seconds=seconds,
            model_venv=args.model_venv,
        )
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    (args.out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
