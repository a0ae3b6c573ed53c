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

The parts live beside this runner: ``gpu_check_eager``, ``gpu_check_serving``, ``gpu_check_parity``,
and the judging and the markdown in ``gpu_check_goals`` and ``gpu_check_report``.

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
import json
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from bench.gpu_check_eager import Eager, photos
from bench.gpu_check_goals import GOAL_K, goals
from bench.gpu_check_parity import parity, summarise_parity
from bench.gpu_check_report import markdown
from bench.gpu_check_serving import device_used_bytes, infer_once, load_cell, serve
from bench.sam3_cost import phrase_sets
from server.inference import torch_graphs
from server.inference import triton_repository as tr
from server.inference.torch_repository import TorchRuntime

PARTS = ("model", "eager", "serving", "parity", "memory")
KS = (1, 4, 12)
CONCURRENCY = (1, 8, 32)
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

    serving_runtime = TorchRuntime(
        checkpoint=model["checkpoint"], device=device, precision=precision, stats_dir=work / "stats-serving"
    )
    server = serve(model, serving_runtime, work / "triton-serving", model_venv)
    device_peak = device_used_bytes()
    try:
        rows = []
        for phrases in phrase_sets(tuple(ks)):
            infer_once(server.url, size, phrases)  # text features cached, as in service
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
        fp32 = TorchRuntime(checkpoint=model["checkpoint"], device=device, precision="float32")
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
