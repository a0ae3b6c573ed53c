"""Export SAM3 to ONNX (three graphs) and, where TensorRT is present, to TensorRT plans; gate on parity.

Runs in the model environment (``.venv-model``: torch, transformers, onnx, onnxruntime), from the
repository root::

    python -m scripts.export_onnx_trt --checkpoint /path/to/sam3 --data-dir .s3data
    python -m scripts.export_onnx_trt --tiny --data-dir .s3data

The artefact lands in ``<data-dir>/models/<name>-<key>/`` where ``key`` hashes the checkpoint and
:data:`EXPORT_CODE_VERSION`; a finished artefact is reused, so the export runs once. Every graph is
checked against PyTorch on the same inputs and refused (exit code 3, nothing written) when parity
fails. The last stdout line is a JSON object with ``artifact_dir``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from server.inference import sam3_core
from server.inference.triton_repository import GRAPHS, Geometry, Sam3Parameters, assemble

EXPORT_CODE_VERSION = "1"
"""Bump when anything that changes the exported graphs or the artefact layout changes."""
TINY_SEED = 0
TINY_WORDS = ("wall", "floor", "door", "window", "ceiling", "person")
ONNX_MAX_ABS_DIFF = 1e-4
TRT_MIN_COSINE = 0.999
TRT_MIN_MASK_IOU = 0.98
PREPROCESS_MAX_LEVELS = 1.0
"""Largest difference, in uint8 levels, between our resize and torch's antialiased one."""
EXPORT_BATCH = 2
"""Example batch of the export; parity runs at other batch sizes to prove the dynamic axis."""
PARITY_BATCHES = (1, 3)
TOKEN_PROBES = ("wall", "Floor", "a  red DOOR!", "window frame", "x" * 200, "ceiling " * 40)
TRT_PROFILES = {"vision": (1, 4, 8), "text": (1, 16, 64), "decoder": (1, 4, 16)}
"""min / opt / max batch of each graph's TensorRT optimisation profile (max = Triton's max_batch_size)."""

log = logging.getLogger("export")


class ParityError(RuntimeError):
    """An exported artefact does not match PyTorch closely enough."""


# --- where the artefact goes ------------------------------------------------------------------------


def artifact_key(checkpoint: Path | None) -> str:
    """Hash of the checkpoint files (names, sizes, mtimes) and of the export code (this file)."""
    h = hashlib.sha256(f"export:{EXPORT_CODE_VERSION}".encode())
    h.update(Path(__file__).read_bytes())
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


# --- the tiny random-weight model -------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: every byte gets a printable character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def tiny_tokenizer() -> Any:
    """A byte-level CLIP BPE tokenizer (full byte coverage, no unknown token) with one token per tiny word."""
    from transformers import CLIPTokenizer

    merges: list[tuple[str, str]] = []
    for word in TINY_WORDS:
        symbols = [*word[:-1], word[-1] + "</w>"]
        while len(symbols) > 1:
            pair = (symbols[0], symbols[1])
            if pair not in merges:
                merges.append(pair)
            symbols = ["".join(pair), *symbols[2:]]
    base = list(_bytes_to_unicode().values())
    tokens = [*base, *(b + "</w>" for b in base), *("".join(m) for m in merges), "<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges)


def tiny_config(vocab_size: int, bos: int, eos: int, image_size: int = 112, hidden: int = 32) -> Any:
    """SAM3 with every part kept but shrunk: 2 ViT layers, 1 text layer, 8 queries (~256k parameters)."""
    from transformers import Sam3Config

    grid = image_size // 14
    small = {"hidden_size": hidden, "num_attention_heads": 2, "intermediate_size": 2 * hidden}
    return Sam3Config(
        vision_config={
            "backbone_config": {
                "model_type": "sam3_vit_model",
                **small,
                "num_hidden_layers": 2,
                "image_size": image_size,
                "patch_size": 14,
                "window_size": grid // 2,
                "global_attn_indexes": [1],
                "pretrain_image_size": image_size // 2,
            },
            "fpn_hidden_size": hidden,
            "backbone_feature_sizes": [[4 * grid] * 2, [2 * grid] * 2, [grid] * 2],
        },
        text_config={
            "model_type": "clip_text_model",
            **small,
            "vocab_size": vocab_size,
            "projection_dim": hidden,
            "num_hidden_layers": 1,
            "max_position_embeddings": sam3_core.TEXT_LENGTH,
            "bos_token_id": bos,
            "eos_token_id": eos,
            "pad_token_id": eos,
        },
        geometry_encoder_config={**small, "num_layers": 1},
        detr_encoder_config={**small, "num_layers": 1},
        detr_decoder_config={**small, "num_layers": 1, "num_queries": 8},
        mask_decoder_config={"hidden_size": hidden, "num_attention_heads": 2},
    )


def build_tiny_checkpoint(target: Path) -> Path:
    """Write a seeded random-weight SAM3 in the layout of the published checkpoint (sam3_video config,
    ``detector_model.*`` weights, tokenizer files), so that it loads through the production loader."""
    import torch
    from safetensors.torch import save_file
    from transformers import Sam3Model, Sam3VideoConfig

    torch.manual_seed(TINY_SEED)
    tok = tiny_tokenizer()
    detector = tiny_config(len(tok), tok.bos_token_id, tok.eos_token_id)
    model = Sam3Model(detector).eval()
    target.mkdir(parents=True, exist_ok=True)
    Sam3VideoConfig(detector_config=detector).save_pretrained(target)
    weights = {"detector_model." + k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(target / "model.safetensors"), metadata={"format": "pt"})
    tok.save_pretrained(target)
    return target


# --- the three graphs -------------------------------------------------------------------------------


def graph_modules(model: Any) -> dict[str, Any]:
    """torch modules with the exact inputs and outputs of the vision, text and decoder graphs."""
    from torch import nn
    from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

    class Vision(nn.Module):  # type: ignore[misc]
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, pixel_values: Any) -> Any:
            f = self.m.vision_encoder(pixel_values).fpn_hidden_states
            return f[0], f[1], f[2]

    class Text(nn.Module):  # type: ignore[misc]
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.m.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output

    class _TextEmbeds:
        def __init__(self, pooler_output: Any) -> None:
            self.pooler_output = pooler_output

    class Decoder(nn.Module):  # type: ignore[misc]
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, fpn0: Any, fpn1: Any, fpn2: Any, text_features: Any, attention_mask: Any) -> Any:
            encoding = self.m.vision_encoder.neck.position_encoding
            # Sam3Model drops the last FPN level ([:-1]); a fourth entry keeps its indexing intact.
            levels = (fpn0, fpn1, fpn2, fpn2)
            vision = Sam3VisionEncoderOutput(
                fpn_hidden_states=levels,
                fpn_position_encoding=tuple(encoding(f.shape, f.device, f.dtype) for f in levels),
            )
            o = self.m(vision_embeds=vision, text_embeds=_TextEmbeds(text_features), attention_mask=attention_mask)
            return o.pred_masks, o.pred_boxes, o.pred_logits, o.presence_logits, o.semantic_seg

    return {"vision": Vision(model).eval(), "text": Text(model).eval(), "decoder": Decoder(model).eval()}


GRAPH_INPUTS = {
    "vision": ["pixel_values"],
    "text": ["input_ids", "attention_mask"],
    "decoder": ["fpn0", "fpn1", "fpn2", "text_features", "attention_mask"],
}
GRAPH_OUTPUTS = {
    "vision": ["fpn0", "fpn1", "fpn2"],
    "text": ["text_features"],
    "decoder": list(sam3_core.DECODER_OUTPUTS),
}


class Examples:
    """Seeded example inputs of every graph at a given batch size, with the PyTorch outputs."""

    def __init__(self, model: Any, modules: dict[str, Any], seed: int) -> None:
        import torch

        self.torch = torch
        self.model = model
        self.modules = modules
        self.generator = torch.Generator().manual_seed(seed)
        self.size = int(model.config.vision_config.backbone_config.image_size)
        self.bos = int(model.config.text_config.bos_token_id)
        self.eos = int(model.config.text_config.eos_token_id)
        self.vocab = int(model.config.text_config.vocab_size)

    def inputs(self, batch: int) -> dict[str, dict[str, Any]]:
        torch = self.torch
        pixels = torch.rand(batch, 3, self.size, self.size, generator=self.generator) * 2 - 1
        ids = torch.full((batch, sam3_core.TEXT_LENGTH), self.eos, dtype=torch.long)
        mask = torch.zeros(batch, sam3_core.TEXT_LENGTH, dtype=torch.long)
        for row in range(batch):
            n = int(torch.randint(3, 9, (1,), generator=self.generator))  # bos, words, eos
            ids[row, 0] = self.bos
            ids[row, 1 : n - 1] = torch.randint(0, self.vocab - 2, (n - 2,), generator=self.generator)
            mask[row, :n] = 1
        with torch.no_grad():  # not inference_mode: torch.export rejects inference tensors
            fpn = self.modules["vision"](pixels)
            features = self.modules["text"](ids, mask)
        return {
            "vision": {"pixel_values": pixels},
            "text": {"input_ids": ids, "attention_mask": mask},
            "decoder": {
                "fpn0": fpn[0],
                "fpn1": fpn[1],
                "fpn2": fpn[2],
                "text_features": features,
                "attention_mask": mask,
            },
        }

    def reference(self, graph: str, feeds: dict[str, Any]) -> list[np.ndarray]:
        with self.torch.no_grad():
            out = self.modules[graph](*feeds.values())
        out = out if isinstance(out, tuple) else (out,)
        return [t.float().numpy() for t in out]


def export_onnx(module: Any, example: dict[str, Any], graph: str, folder: Path, external_data: bool) -> Path:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.onnx.export(
        module,
        tuple(example.values()),
        str(path),
        input_names=GRAPH_INPUTS[graph],
        output_names=GRAPH_OUTPUTS[graph],
        dynamic_shapes=tuple({0: batch} for _ in GRAPH_INPUTS[graph]),
        opset_version=18,
        dynamo=True,
        external_data=external_data,
    )
    return path


def onnx_parity(graph: str, path: Path, examples: Examples) -> float:
    """Largest |onnxruntime - torch| over every output at batch sizes other than the export's."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in PARITY_BATCHES:
        feeds = examples.inputs(batch)[graph]
        got = session.run(None, {k: v.numpy() for k, v in feeds.items()})
        for name, g, r in zip(GRAPH_OUTPUTS[graph], got, examples.reference(graph, feeds), strict=True):
            if g.shape != r.shape:
                raise ParityError(f"{graph}.{name}: onnx shape {g.shape} != torch {r.shape} (batch {batch})")
            worst = max(worst, float(np.abs(g - r).max()))
    return worst


def split_parity(model: Any, examples: Examples) -> float:
    """The three torch graphs chained must equal Sam3Model's own forward pass (the split loses nothing)."""
    feeds = examples.inputs(1)
    with examples.torch.no_grad():
        whole = model(
            pixel_values=feeds["vision"]["pixel_values"],
            input_ids=feeds["text"]["input_ids"],
            attention_mask=feeds["text"]["attention_mask"],
        )
    chained = examples.reference("decoder", feeds["decoder"])
    names = sam3_core.DECODER_OUTPUTS
    return max(float(np.abs(c - getattr(whole, n).float().numpy()).max()) for n, c in zip(names, chained, strict=True))


def preprocess_parity(size: int) -> float:
    """Our numpy resize vs torch's antialiased bilinear on uint8 (what SAM3's image processor does)."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(TINY_SEED)
    worst = 0.0
    for h, w in ((size * 3 + 7, size * 2 + 5), (size // 2 + 3, size + 11), (size, size)):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ours = sam3_core.resize_square(image, size).astype(np.float32)
        x = torch.from_numpy(image).permute(2, 0, 1)[None]
        ref = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        worst = max(worst, float(np.abs(ours - ref[0].permute(1, 2, 0).float().numpy()).max()))
    return worst


def tokenizer_parity(checkpoint: Path, tokenizer_json: Path) -> int:
    """Number of probe phrases where our tokenization differs from transformers' (must be 0)."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True)
    ours = Tokenizer.from_file(str(tokenizer_json))
    ids, mask = sam3_core.tokenize(ours, TOKEN_PROBES)
    ref = reference(
        list(TOKEN_PROBES), padding="max_length", max_length=sam3_core.TEXT_LENGTH, truncation=True, return_tensors="np"
    )
    return int(np.sum(np.any(ids != ref["input_ids"], axis=1) | np.any(mask != ref["attention_mask"], axis=1)))


# --- TensorRT (GPU hosts) ---------------------------------------------------------------------------


def tensorrt_available() -> str | None:
    """None when plans can be built and checked here, else the reason why not."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT is not installed"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device (TensorRT plans are built and checked on the GPU that serves them)"
    return None


def build_plan(onnx_path: Path, plan_path: Path, graph: str, precision: str, example: dict[str, Any]) -> None:
    """ONNX → serialized TensorRT engine with one optimisation profile over the batch axis."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16 if precision == "fp16" else trt.BuilderFlag.BF16)
    profile = builder.create_optimization_profile()
    low, opt, high = TRT_PROFILES[graph]
    for name, tensor in example.items():
        rest = tuple(tensor.shape[1:])
        profile.set_shape(name, (low, *rest), (opt, *rest), (high, *rest))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build {graph}")
    plan_path.write_bytes(bytes(serialized))


def run_plan(plan_path: Path, graph: str, feeds: dict[str, Any]) -> list[np.ndarray]:
    """Execute a plan once on the GPU with torch tensors as device buffers."""
    import tensorrt as trt
    import torch

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(plan_path.read_bytes())
    context = engine.create_execution_context()
    keep = []
    for name, value in feeds.items():
        t = value.contiguous().cuda()
        context.set_input_shape(name, tuple(t.shape))
        context.set_tensor_address(name, t.data_ptr())
        keep.append(t)
    outputs = []
    for name in GRAPH_OUTPUTS[graph]:
        shape = tuple(context.get_tensor_shape(name))
        out = torch.empty(shape, dtype=torch.float32, device="cuda")
        context.set_tensor_address(name, out.data_ptr())
        outputs.append(out)
    stream = torch.cuda.Stream()
    if not context.execute_async_v3(stream.cuda_stream):
        raise RuntimeError(f"TensorRT execution of {graph} failed")
    stream.synchronize()
    return [o.float().cpu().numpy() for o in outputs]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    norm = float(np.linalg.norm(a64)) * float(np.linalg.norm(b64))
    return float(a64 @ b64) / max(norm, 1e-30)


def plan_parity(plan_path: Path, graph: str, examples: Examples) -> dict[str, float]:
    """Cosine of every feature output; for the decoder also the IoU of the binarised masks."""
    feeds = examples.inputs(PARITY_BATCHES[-1])[graph]
    got = run_plan(plan_path, graph, feeds)
    ref = examples.reference(graph, feeds)
    result = {"cosine": min(_cosine(g, r) for g, r in zip(got, ref, strict=True))}
    if graph == "decoder":
        g, r = got[0] > 0, ref[0] > 0
        union = np.logical_or(g, r).sum()
        result["mask_iou"] = float(np.logical_and(g, r).sum() / union) if union else 1.0
    return result


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


def _save_tokenizer(checkpoint: Path, target: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True)
    tok.backend_tokenizer.save(str(target))


def export(
    checkpoint: Path | None, out: Path, trt_mode: str, precision: str, onnx_tol: float, replace: bool = False
) -> dict[str, Any]:
    """Build the artefact in a scratch folder next to ``out`` and move it into place when every gate passes."""
    import torch
    from transformers import Sam3Model

    torch.manual_seed(TINY_SEED)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        started = time.perf_counter()
        tiny = checkpoint is None
        source = build_tiny_checkpoint(work / "checkpoint") if checkpoint is None else checkpoint
        # eager attention: the sdpa path does not export (decoder) and fuses attention in TensorRT badly.
        model = Sam3Model.from_pretrained(str(source), local_files_only=True, attn_implementation="eager").eval()
        modules = graph_modules(model)
        examples = Examples(model, modules, seed=TINY_SEED)
        example = examples.inputs(EXPORT_BATCH)
        big = sum(p.numel() for p in model.parameters()) * 4 > 1 << 30
        parity: dict[str, Any] = {"split_max_abs_diff": split_parity(model, examples)}
        if parity["split_max_abs_diff"] > onnx_tol:
            raise ParityError(f"three-graph split differs from Sam3Model by {parity['split_max_abs_diff']:.2e}")
        onnx_files: dict[str, str] = {}
        for graph in GRAPHS:
            t0 = time.perf_counter()
            path = export_onnx(modules[graph], example[graph], graph, work / "onnx" / graph, external_data=big)
            diff = onnx_parity(graph, path, examples)
            log.info("onnx %s: exported in %.1fs, max|diff| %.2e", graph, time.perf_counter() - t0, diff)
            parity[f"onnx_{graph}_max_abs_diff"] = diff
            if not diff <= onnx_tol:
                raise ParityError(f"ONNX {graph} differs from PyTorch by {diff:.2e} > {onnx_tol:.0e}")
            onnx_files[graph] = str(path.relative_to(work))
        _save_tokenizer(source, work / "tokenizer.json")
        parity["tokenizer_mismatches"] = tokenizer_parity(source, work / "tokenizer.json")
        if parity["tokenizer_mismatches"]:
            raise ParityError(f"tokenizers disagrees with transformers on {parity['tokenizer_mismatches']} probes")
        size = examples.size
        parity["preprocess_max_levels"] = preprocess_parity(size)
        if parity["preprocess_max_levels"] > PREPROCESS_MAX_LEVELS:
            raise ParityError(f"resize differs from torch by {parity['preprocess_max_levels']} levels")

        fpn_shapes = [tuple(t.shape) for t in example["decoder"].values()][:3]
        geometry = geometry_of(model, fpn_shapes, int(example["decoder"]["text_features"].shape[-1]))
        params = Sam3Parameters(
            model_name="sam3-tiny" if tiny else "sam3",
            meaningful=not tiny,
            # Random weights score about 0.25 everywhere: keep every query so the tiny model shows instances.
            score_threshold=0.0 if tiny else 0.5,
        )
        tensorrt: dict[str, Any] = {"built": False}
        reason = tensorrt_available() if trt_mode != "off" else "disabled (--trt off)"
        if reason is None:
            plans: dict[str, Path] = {}
            (work / "plans").mkdir()
            for graph in GRAPHS:
                plan = work / "plans" / f"{graph}.plan"
                build_plan(work / onnx_files[graph], plan, graph, precision, example[graph])
                check = plan_parity(plan, graph, examples)
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
        manifest = {
            "format": 1,
            "name": params.model_name,
            "key": out.name.rsplit("-", 1)[-1],
            "meaningful": params.meaningful,
            "score_threshold": params.score_threshold,
            "decoder_batch": params.decoder_batch,
            "checkpoint": f"tiny (random weights, seed {TINY_SEED})" if tiny else str(checkpoint),
            "export_code_version": EXPORT_CODE_VERSION,
            "geometry": geometry.__dict__ | {"fpn_sizes": list(geometry.fpn_sizes)},
            "onnx": onnx_files,
            "tokenizer": "tokenizer.json",
            "repository_gpu": "repository_gpu" if tensorrt["built"] else None,
            "tensorrt": tensorrt,
            "parity": parity,
            "export_s": round(time.perf_counter() - started, 2),
            "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        if out.exists() and replace:
            shutil.rmtree(out)
        if out.exists():
            log.info("another process finished %s first: keeping its artefact", out)
        else:
            os.replace(work, out)  # atomic: a half-written artefact is never seen as finished
        return manifest
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export SAM3 to ONNX / TensorRT with parity gates.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="local SAM3 directory (Hugging Face layout)")
    source.add_argument("--tiny", action="store_true", help="seeded tiny random-weight SAM3 (tests, no weights)")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("S3_DATA_DIR", ".s3data")))
    parser.add_argument("--out", type=Path, help="artefact folder (default: <data-dir>/models/<name>-<key>)")
    parser.add_argument("--trt", choices=("auto", "off", "require"), default="auto")
    parser.add_argument("--precision", choices=("fp16", "bf16"), default="fp16")
    parser.add_argument("--onnx-tol", type=float, default=ONNX_MAX_ABS_DIFF, help="ONNX parity gate, max |diff|")
    parser.add_argument("--force", action="store_true", help="export again even when the artefact exists")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    log.setLevel(logging.INFO)  # ours only: the exporters' own INFO lines run to thousands

    checkpoint = None if args.tiny else args.checkpoint.resolve()
    if checkpoint is not None and not (checkpoint / "config.json").is_file():
        print(f"error: {checkpoint} has no config.json (expected a Hugging Face SAM3 directory)", file=sys.stderr)
        return 2
    out = args.out or artifact_dir(args.data_dir, checkpoint)
    if (out / "manifest.json").is_file() and not args.force:
        log.info("artefact %s exists: nothing to export", out)
    else:
        log.info("exporting %s to %s", "the tiny model" if checkpoint is None else checkpoint, out)
        try:
            export(checkpoint, out, args.trt, args.precision, args.onnx_tol, replace=args.force)
        except ParityError as e:
            print(f"error: parity gate failed, artefact refused: {e}", file=sys.stderr)
            return 3
    print(json.dumps({"artifact_dir": str(out.resolve())}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
