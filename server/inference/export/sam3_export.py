"""Export SAM3 to ONNX (three graphs) and, where TensorRT is present, to TensorRT plans; gate on parity.

Runs in the model environment (``.venv-model``: torch, transformers, onnx, onnxruntime), from the
repository root::

    python -m scripts.export_onnx_trt --checkpoint /path/to/sam3 --data-dir .s3data
    python -m scripts.export_onnx_trt --tiny --data-dir .s3data

The artefact lands in ``<data-dir>/models/<name>-<key>/`` where ``key`` hashes the checkpoint and
the export package's code (:data:`EXPORT_CODE_VERSION` and every module of it); a finished artefact is
reused, so the export runs once. Every graph is checked against PyTorch on the same inputs and refused
(exit code 3, nothing written) when parity fails. The last stdout line is a JSON object with
``artifact_dir``. The parts: ``checkpoints`` (seeded random weights), ``graphs`` (the torch modules and
the ONNX export), ``decoder_graph`` / ``decoder_export`` / ``attention`` / ``fused_attention`` (the
decoder), ``gates`` / ``selection`` (parity), ``memory``, ``tensorrt``; ``decoder_reexport`` replaces
only the decoder graph of an existing artefact.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from server.inference import sam3_core
from server.inference.export.checkpoints import TINY_SEED, TINY_WORDS, build_checkpoint, random_spec
from server.inference.export.decoder_export import export_decoder, gate_decoder
from server.inference.export.gates import (
    ONNX_MAX_ABS_DIFF,
    PREPROCESS_MAX_LEVELS,
    ParityError,
    exit_status,
    max_abs_diff,
    preprocess_parity,
    tokenizer_parity,
)
from server.inference.export.graphs import (
    EXPORT_SHAPE,
    GRAPH_OUTPUTS,
    Examples,
    export_onnx,
    graph_modules,
    normalise,
    open_session,
)
from server.inference.export.memory import Stage
from server.inference.export.tensorrt import (
    TRT_MIN_COSINE,
    TRT_MIN_MASK_IOU,
    TRT_PROFILES,
    build_plan,
    plan_parity,
    tensorrt_available,
)
from server.inference.triton_repository import GRAPHS, Geometry, Sam3Parameters, assemble

EXPORT_CODE_VERSION = "4"
"""Bump when anything that changes the exported graphs or the artefact layout changes."""
PARITY_SHAPE = (3, 5)
"""Photos and prompts of the gates (models over 1 GiB: 1 photo, 2 prompts, to bound memory)."""
TINY_MAX_DETECTIONS = 4
"""The tiny model has 8 queries: a cap of 4 makes the gates exercise the top-K."""
PACKAGE = Path(__file__).parent

log = logging.getLogger("export")


# --- where the artefact goes ------------------------------------------------------------------------


def artifact_key(checkpoint: Path | None) -> str:
    """Hash of the checkpoint files (names, sizes, mtimes) and of the export code (every module of this
    package: the graphs, the attention they export with, the gates)."""
    h = hashlib.sha256(f"export:{EXPORT_CODE_VERSION}".encode())
    for code in sorted(PACKAGE.glob("*.py")):
        h.update(code.name.encode() + code.read_bytes())
    if checkpoint is None:
        h.update(f"tiny:{TINY_SEED}:{','.join(TINY_WORDS)}".encode())
    else:
        for path in sorted(p for p in checkpoint.rglob("*") if p.is_file()):
            st = path.stat()
            h.update(f"{path.relative_to(checkpoint)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def artifact_dir(data_dir: Path, checkpoint: Path | None) -> Path:
    name = "sam3-tiny" if checkpoint is None else "sam3"
    return data_dir / "models" / f"{name}-{artifact_key(checkpoint)}"


# --- the artefact -----------------------------------------------------------------------------------


def geometry_of(model: Any, fpn_shapes: Sequence[Sequence[int]], text_dim: int) -> Geometry:
    return Geometry(
        image_size=int(model.config.vision_config.backbone_config.image_size),
        fpn_channels=int(fpn_shapes[0][1]),
        fpn_sizes=(int(fpn_shapes[0][2]), int(fpn_shapes[1][2]), int(fpn_shapes[2][2])),
        text_length=sam3_core.TEXT_LENGTH,
        text_dim=text_dim,
        num_queries=int(model.config.detr_decoder_config.num_queries),
    )


def save_tokenizer(checkpoint: Path, target: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True)
    tok.backend_tokenizer.save(str(target))


def decoder_floor_bytes(geometry: Geometry) -> int:
    """Smallest plausible working memory of one phrase in the decoder: its gathered features plus the
    full fp32 mask logits of every query (used when the measured figure is noise, as for tiny models)."""
    features = sum(geometry.fpn_channels * s * s for s in geometry.fpn_sizes) * 4
    return features + geometry.num_queries * geometry.mask_size**2 * 4


def export(
    checkpoint: Path | None,
    out: Path,
    trt_mode: str,
    precision: str,
    onnx_tol: float,
    replace: bool = False,
    max_detections: int | None = None,
) -> dict[str, Any]:
    """Build the artefact in a scratch folder next to ``out`` and move it into place when every gate passes.

    Memory: the checkpoint is loaded once (fp32, what the gates compare against); the PyTorch references
    are computed first at the smallest batch that proves the dynamic axes, then each graph is exported
    straight to disk, loaded in onnxruntime, gated and released before the next one.
    """
    import torch
    from transformers import Sam3Model

    torch.manual_seed(TINY_SEED)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        started = time.perf_counter()
        stages: dict[str, dict[str, float]] = {}
        source = build_checkpoint(work / "checkpoint", "tiny") if checkpoint is None else checkpoint
        random_weights = random_spec(source)
        with Stage(stages, "load"):
            # eager attention: the sdpa path does not export (decoder) and fuses attention in TensorRT badly.
            model = Sam3Model.from_pretrained(
                str(source), local_files_only=True, attn_implementation="eager", dtype=torch.float32
            ).eval()
        queries = int(model.config.detr_decoder_config.num_queries)
        default_cap = TINY_MAX_DETECTIONS if checkpoint is None else sam3_core.MAX_DETECTIONS
        cap = min(max_detections or default_cap, queries)
        modules = graph_modules(model, cap)
        examples = Examples(model, modules, seed=TINY_SEED)
        big = sum(p.numel() for p in model.parameters()) * 4 > 1 << 30
        photos, prompts = (1, 2) if big else PARITY_SHAPE
        parity: dict[str, Any] = {}

        with Stage(stages, "reference"):
            images = examples.images(photos)
            ids, mask = examples.tokens(prompts)
            index = torch.arange(prompts, dtype=torch.long) % photos
            fpn_ref = examples.run("vision", images)
            text_ref = examples.run("text", ids, mask)
            fpn_t = tuple(torch.from_numpy(f) for f in fpn_ref)
            raw_ref = examples.run("raw", *fpn_t, index, torch.from_numpy(text_ref[0]), mask)
            with torch.no_grad():  # the split loses nothing: Sam3Model's own forward on the first prompt
                whole = model(pixel_values=normalise(images[index[:1]]), input_ids=ids[:1], attention_mask=mask[:1])
            names = ("pred_masks", "pred_boxes", "pred_logits", "presence_logits")
            parity["split_max_abs_diff"] = max(
                float(np.abs(r[:1] - getattr(whole, n).numpy()).max()) for n, r in zip(names, raw_ref, strict=True)
            )
            del whole
        if parity["split_max_abs_diff"] > onnx_tol:
            raise ParityError(f"three-graph split differs from Sam3Model by {parity['split_max_abs_diff']:.2e}")

        feeds = {
            "vision": {sam3_core.VISION_INPUT: images.numpy()},
            "text": {"input_ids": ids.numpy(), "attention_mask": mask.numpy()},
            "decoder": {
                **dict(zip(sam3_core.FPN_OUTPUTS, fpn_ref, strict=True)),
                "image_index": index.numpy(),
                "text_features": text_ref[0],
                "attention_mask": mask.numpy(),
            },
        }
        references = {"vision": fpn_ref, "text": text_ref}
        onnx_files: dict[str, str] = {}
        decoder_bytes = 0
        for graph in GRAPHS:
            with Stage(stages, f"export_{graph}"):
                example = examples.export_inputs(graph, EXPORT_SHAPE[0], EXPORT_SHAPE[1])
                folder = work / "onnx" / graph
                if graph == "decoder":  # the references above ran SAM3's own head: the gates check this graph
                    path = export_decoder(model, modules[graph], example, folder, external_data=big)
                else:
                    path = export_onnx(modules[graph], example, graph, folder, external_data=big)
                del example
            with Stage(stages, f"gate_{graph}"):
                if graph == "decoder":
                    gated = gate_decoder(path, feeds["decoder"], raw_ref, cap, onnx_tol)
                    parity["selection"], decoder_bytes = gated["selection"], gated["bytes_per_phrase"]
                    parity["mask_queries"] = gated["mask_queries"]
                    parity["onnx_decoder_max_abs_diff"] = max(g["score_max_abs_diff"] for g in parity["selection"])
                else:
                    session = open_session(path)
                    diff = max_abs_diff(graph, session.run(GRAPH_OUTPUTS[graph], feeds[graph]), references[graph])
                    del session
                    parity[f"onnx_{graph}_max_abs_diff"] = diff
                    if not diff <= onnx_tol:
                        raise ParityError(f"ONNX {graph} differs from PyTorch by {diff:.2e} > {onnx_tol:.0e}")
            log.info("onnx %s: max|diff| %.2e", graph, parity[f"onnx_{graph}_max_abs_diff"])
            onnx_files[graph] = str(path.relative_to(work))
        save_tokenizer(source, work / "tokenizer.json")
        parity["tokenizer_mismatches"] = tokenizer_parity(source, work / "tokenizer.json")
        if parity["tokenizer_mismatches"]:
            raise ParityError(f"tokenizers disagrees with transformers on {parity['tokenizer_mismatches']} probes")
        size = examples.size
        parity["preprocess_max_levels"] = preprocess_parity(size)
        if parity["preprocess_max_levels"] > PREPROCESS_MAX_LEVELS:
            raise ParityError(f"resize differs from torch by {parity['preprocess_max_levels']} levels")

        geometry = geometry_of(model, [f.shape for f in fpn_ref], int(text_ref[0].shape[-1]))
        decoder_bytes = max(decoder_bytes, decoder_floor_bytes(geometry))
        tiny = checkpoint is None
        name = "sam3-tiny" if tiny else ("sam3-random" if random_weights else "sam3")
        params = Sam3Parameters(
            model_name=name,
            meaningful=random_weights is None,
            # Random weights score about 0.25 everywhere: keep every query so the model shows instances.
            score_threshold=0.0 if random_weights is not None else 0.5,
            decoder_bytes_per_phrase=decoder_bytes,
        )
        tensorrt: dict[str, Any] = {"built": False}
        reason = tensorrt_available() if trt_mode != "off" else "disabled (--trt off)"
        if reason is None:
            plans: dict[str, Path] = {}
            (work / "plans").mkdir()
            for graph in GRAPHS:
                plan = work / "plans" / f"{graph}.plan"
                example = examples.export_inputs(graph, EXPORT_SHAPE[0], EXPORT_SHAPE[1])
                source_graph = work / onnx_files[graph]
                if graph == "decoder":  # TensorRT parses no contrib ops: the decoder without the fused attention
                    folder = work / "onnx_tensorrt" / graph
                    source_graph = export_decoder(model, modules[graph], example, folder, big, fused=False)
                build_plan(source_graph, plan, graph, precision, example)
                graph_feeds = {k: torch.from_numpy(np.asarray(v)) for k, v in feeds[graph].items()}
                if graph == "decoder":
                    graph_feeds["score_threshold"] = torch.tensor([0.0])
                    session = open_session(work / onnx_files[graph])
                    reference = session.run(GRAPH_OUTPUTS[graph], {k: v.numpy() for k, v in graph_feeds.items()})
                    del session
                else:
                    reference = references[graph]
                check = plan_parity(plan, graph, graph_feeds, reference)
                parity[f"trt_{graph}"] = check
                if check["cosine"] < TRT_MIN_COSINE or check.get("mask_iou", 1.0) < TRT_MIN_MASK_IOU:
                    raise ParityError(f"TensorRT {graph} ({precision}) fails parity: {check}")
                plans[graph] = plan
            assemble(work / "repository_gpu", "gpu", geometry, params, plans, work / "tokenizer.json")
            tensorrt = {"built": True, "precision": precision, "profiles": TRT_PROFILES}
        elif trt_mode == "require":
            raise RuntimeError(f"TensorRT plans required but cannot be built: {reason}")
        else:
            tensorrt["reason"] = reason
        del model, modules, examples
        manifest: dict[str, Any] = {
            "format": 2,
            "name": params.model_name,
            "key": out.name.rsplit("-", 1)[-1],
            "meaningful": params.meaningful,
            "score_threshold": params.score_threshold,
            "max_detections": cap,
            "decoder_bytes_per_phrase": decoder_bytes,
            "checkpoint": f"tiny (random weights, seed {TINY_SEED})" if tiny else str(checkpoint),
            "random_weights": random_weights,
            "export_code_version": EXPORT_CODE_VERSION,
            "geometry": geometry.__dict__ | {"fpn_sizes": list(geometry.fpn_sizes)},
            "onnx": onnx_files,
            "tokenizer": "tokenizer.json",
            "repository_gpu": "repository_gpu" if tensorrt["built"] else None,
            "tensorrt": tensorrt,
            "parity": parity,
            "export_s": round(time.perf_counter() - started, 2),
            # Each stage resets the kernel's high-water mark (which ru_maxrss reads too): the peak is theirs.
            "export_peak_rss_bytes": max(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                *(int(stage["peak_rss_bytes"]) for stage in stages.values()),
            ),
            "stages": stages,
            "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        if out.exists() and replace:
            shutil.rmtree(out)
        if out.exists():
            log.info("another process finished %s first: keeping its artefact", out)
        else:
            os.replace(work, out)  # atomic: a half-written artefact is never seen as finished
        log.info(
            "export done in %.1fs, peak RSS %.2f GB", manifest["export_s"], manifest["export_peak_rss_bytes"] / 1e9
        )
        return manifest
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export SAM3 to ONNX / TensorRT with parity gates.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="local SAM3 directory (Hugging Face layout)")
    source.add_argument("--tiny", action="store_true", help="seeded tiny random-weight SAM3 (tests, no weights)")
    source.add_argument(
        "--random-full",
        type=Path,
        metavar="DIR",
        help="build (once) a seeded full-size random-weight SAM3 in DIR, export it",
    )
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("S3_DATA_DIR", ".s3data")))
    parser.add_argument("--out", type=Path, help="artefact folder (default: <data-dir>/models/<name>-<key>)")
    parser.add_argument("--trt", choices=("auto", "off", "require"), default="auto")
    parser.add_argument("--precision", choices=("fp16", "bf16"), default="fp16")
    parser.add_argument("--onnx-tol", type=float, default=ONNX_MAX_ABS_DIFF, help="ONNX parity gate, max |diff|")
    parser.add_argument("--max-detections", type=int, help=f"top-K cap per phrase (default {sam3_core.MAX_DETECTIONS})")
    parser.add_argument("--force", action="store_true", help="export again even when the artefact exists")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    log.setLevel(logging.INFO)  # ours only: the exporters' own INFO lines run to thousands

    if args.random_full is not None:
        args.checkpoint = args.random_full
        if not (args.random_full / "config.json").is_file():
            log.info("building the seeded full-size random-weight SAM3 in %s", args.random_full)
            build_checkpoint(args.random_full, "full")
    checkpoint = None if args.tiny else args.checkpoint.resolve()
    if checkpoint is not None and not (checkpoint / "config.json").is_file():
        print(f"error: {checkpoint} has no config.json (expected a Hugging Face SAM3 directory)", file=sys.stderr)
        return 2
    out = args.out or artifact_dir(args.data_dir, checkpoint)
    if (out / "manifest.json").is_file() and not args.force:
        log.info("artefact %s exists: nothing to export", out)
        return exit_status(lambda: None, out)
    log.info("exporting %s to %s", "the tiny model" if checkpoint is None else checkpoint, out)
    return exit_status(
        lambda: export(checkpoint, out, args.trt, args.precision, args.onnx_tol, args.force, args.max_detections),
        out,
    )


if __name__ == "__main__":
    raise SystemExit(main())
