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
import contextlib
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
from server.inference.export import attention as export_attention
from server.inference.export.attention import chunked_detector_attention
from server.inference.triton_repository import GRAPHS, Geometry, Sam3Parameters, assemble

EXPORT_CODE_VERSION = "3"
"""Bump when anything that changes the exported graphs or the artefact layout changes."""
TINY_SEED = 0
TINY_WORDS = ("wall", "floor", "door", "window", "ceiling", "person")
ONNX_MAX_ABS_DIFF = 1e-4
TRT_MIN_COSINE = 0.999
TRT_MIN_MASK_IOU = 0.98
PREPROCESS_MAX_LEVELS = 1.0
"""Largest difference, in uint8 levels, between our resize and torch's antialiased one."""
EXPORT_SHAPE = (2, 3)
"""Photos and prompts of the traced example; the gates run other sizes to prove the dynamic axes."""
PARITY_SHAPE = (3, 5)
"""Photos and prompts of the gates (models over 1 GiB: 1 photo, 2 prompts, to bound memory)."""
SELECTION_MIN_MASK_IOU = 0.99
TINY_MAX_DETECTIONS = 4
"""The tiny model has 8 queries: a cap of 4 makes the gates exercise the top-K."""
TOKEN_PROBES = ("wall", "Floor", "a  red DOOR!", "window frame", "x" * 200, "ceiling " * 40)
TRT_PROFILES = {"vision": (1, 4, 8), "text": (1, 16, 64), "decoder": (1, 8, 64)}
"""min / opt / max batch (decoder: prompts) of each graph's TensorRT optimisation profile."""
TRT_PHOTO_PROFILE = (1, 1, 8)
"""min / opt / max photos of the decoder's image features."""

log = logging.getLogger("export")


class ParityError(RuntimeError):
    """An exported artefact does not match PyTorch closely enough."""


# --- where the artefact goes ------------------------------------------------------------------------


def artifact_key(checkpoint: Path | None) -> str:
    """Hash of the checkpoint files (names, sizes, mtimes) and of the export code (this file and the
    attention it exports the decoder with)."""
    h = hashlib.sha256(f"export:{EXPORT_CODE_VERSION}".encode())
    for code in (__file__, export_attention.__file__):
        h.update(Path(code).read_bytes())
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


def full_config(vocab_size: int, bos: int, eos: int) -> Any:
    """The default (published) SAM3 detector configuration, with the tokenizer's special tokens."""
    from transformers import Sam3Config

    config = Sam3Config()
    text = config.text_config
    text.vocab_size = max(int(text.vocab_size), vocab_size)
    text.bos_token_id, text.eos_token_id, text.pad_token_id = bos, eos, eos
    return config


def build_checkpoint(target: Path, size: str) -> Path:
    """Write a seeded random-weight SAM3 (``tiny`` or ``full``) in the layout of the published checkpoint
    (sam3_video config, ``detector_model.*`` weights, tokenizer files), so that it loads through the
    production loader; a marker file says the weights are random."""
    import torch
    from safetensors.torch import save_file
    from transformers import Sam3Model, Sam3VideoConfig

    torch.manual_seed(TINY_SEED)
    tok = tiny_tokenizer()
    make = tiny_config if size == "tiny" else full_config
    detector = make(len(tok), tok.bos_token_id, tok.eos_token_id)
    model = Sam3Model(detector).eval()
    target.mkdir(parents=True, exist_ok=True)
    Sam3VideoConfig(detector_config=detector).save_pretrained(target)
    weights = {"detector_model." + k: v.contiguous() for k, v in model.state_dict().items()}
    del model
    save_file(weights, str(target / "model.safetensors"), metadata={"format": "pt"})
    del weights
    tok.save_pretrained(target)
    (target / RANDOM_MARKER).write_text(json.dumps({"seed": TINY_SEED, "size": size}))
    return target


# --- the three graphs -------------------------------------------------------------------------------


def graph_modules(model: Any, max_detections: int) -> dict[str, Any]:
    """torch modules with the exact inputs and outputs of the vision, text and decoder graphs.

    ``raw_decoder`` is the decoder before selection (SAM3's own outputs): the reference of the gates.
    """
    import torch
    from torch import nn
    from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

    class Vision(nn.Module):  # type: ignore[misc]
        """Square uint8 image ``[B, S, S, 3]`` → FPN levels; the normalisation is part of the graph."""

        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, image: Any) -> Any:
            f = self.m.vision_encoder(normalise(image)).fpn_hidden_states
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

    class RawDecoder(nn.Module):  # type: ignore[misc]
        """Features of B photos, K prompts each naming its photo (``image_index``): broadcast in the graph."""

        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(
            self, fpn0: Any, fpn1: Any, fpn2: Any, image_index: Any, text_features: Any, attention_mask: Any
        ) -> Any:
            encoding = self.m.vision_encoder.neck.position_encoding
            picked = (fpn0[image_index], fpn1[image_index], fpn2[image_index])
            # Sam3Model drops the last FPN level ([:-1]); a fourth entry keeps its indexing intact.
            levels = (*picked, picked[2])
            vision = Sam3VisionEncoderOutput(
                fpn_hidden_states=levels,
                fpn_position_encoding=tuple(encoding(f.shape, f.device, f.dtype) for f in levels),
            )
            o = self.m(vision_embeds=vision, text_embeds=_TextEmbeds(text_features), attention_mask=attention_mask)
            return o.pred_masks, o.pred_boxes, o.pred_logits, o.presence_logits

    class Decoder(nn.Module):  # type: ignore[misc]
        """RawDecoder plus the selection: score, top-K cap, threshold; only the kept queries leave."""

        def __init__(self, raw: Any) -> None:
            super().__init__()
            self.raw = raw

        def forward(
            self,
            fpn0: Any,
            fpn1: Any,
            fpn2: Any,
            image_index: Any,
            text_features: Any,
            attention_mask: Any,
            score_threshold: Any,
        ) -> Any:
            masks, boxes, logits, presence = self.raw(fpn0, fpn1, fpn2, image_index, text_features, attention_mask)
            scores = torch.sigmoid(logits) * torch.sigmoid(presence)  # [K, Q] * [K, 1]
            top, query = torch.topk(scores, k=max_detections, dim=1)  # sorted, best first
            phrase, rank = torch.nonzero(top >= score_threshold, as_tuple=True)
            kept = query[phrase, rank]
            probs = torch.sigmoid(masks[phrase, kept])
            return (
                phrase.to(torch.int32),
                kept.to(torch.int32),
                top[phrase, rank],
                boxes[phrase, kept],
                torch.round(probs * 255.0).to(torch.uint8),
            )

    raw = RawDecoder(model).eval()
    return {"vision": Vision(model).eval(), "text": Text(model).eval(), "decoder": Decoder(raw).eval(), "raw": raw}


IMAGE_MEAN = IMAGE_STD = 0.5
"""SAM3's image normalisation (its processor's values), applied inside the vision graph."""


def normalise(image: Any) -> Any:
    """uint8 ``[B, S, S, 3]`` → ``pixel_values [B, 3, S, S]``: /255, then (x - mean) / std."""
    x = image.permute(0, 3, 1, 2).float() / 255.0
    return (x - IMAGE_MEAN) / IMAGE_STD


GRAPH_INPUTS = {
    "vision": [sam3_core.VISION_INPUT],
    "text": ["input_ids", "attention_mask"],
    "decoder": list(sam3_core.DECODER_INPUTS),
}
GRAPH_OUTPUTS = {
    "vision": list(sam3_core.FPN_OUTPUTS),
    "text": ["text_features"],
    "decoder": list(sam3_core.DETECTION_OUTPUTS),
}


class Examples:
    """Seeded inputs of every graph and the PyTorch outputs the gates compare against."""

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
        self.vision_config = model.config.vision_config

    def images(self, batch: int) -> Any:
        torch = self.torch
        return torch.randint(0, 256, (batch, self.size, self.size, 3), generator=self.generator, dtype=torch.uint8)

    def tokens(self, batch: int) -> tuple[Any, Any]:
        torch = self.torch
        ids = torch.full((batch, sam3_core.TEXT_LENGTH), self.eos, dtype=torch.long)
        mask = torch.zeros(batch, sam3_core.TEXT_LENGTH, dtype=torch.long)
        for row in range(batch):
            n = int(torch.randint(3, 9, (1,), generator=self.generator))  # bos, words, eos
            ids[row, 0] = self.bos
            ids[row, 1 : n - 1] = torch.randint(0, min(self.vocab, self.eos) - 2, (n - 2,), generator=self.generator)
            mask[row, :n] = 1
        return ids, mask

    def export_inputs(self, graph: str, photos: int, prompts: int) -> dict[str, Any]:
        """Inputs with the right shapes and types for tracing (values need not be realistic)."""
        torch = self.torch
        if graph == "vision":
            return {sam3_core.VISION_INPUT: self.images(photos)}
        ids, mask = self.tokens(prompts)
        if graph == "text":
            return {"input_ids": ids, "attention_mask": mask}
        channels = int(self.vision_config.fpn_hidden_size)
        sizes = [int(s[0]) for s in self.vision_config.backbone_feature_sizes]
        feeds: dict[str, Any] = {
            name: torch.randn(photos, channels, s, s, generator=self.generator)
            for name, s in zip(sam3_core.FPN_OUTPUTS, sizes, strict=False)
        }
        width = int(self.model.config.detr_encoder_config.hidden_size)
        feeds["image_index"] = torch.arange(prompts, dtype=torch.long) % photos
        feeds["text_features"] = torch.randn(prompts, sam3_core.TEXT_LENGTH, width, generator=self.generator)
        feeds["attention_mask"] = mask
        feeds["score_threshold"] = torch.tensor([0.0])
        return feeds

    def run(self, module: str, *args: Any) -> list[np.ndarray]:
        with self.torch.no_grad():  # not inference_mode: torch.export rejects inference tensors
            out = self.modules[module](*args)
        out = out if isinstance(out, tuple) else (out,)
        return [t.numpy() for t in out]


def export_onnx(module: Any, example: dict[str, Any], graph: str, folder: Path, external_data: bool) -> Path:
    """One graph to ``folder/model.onnx``; big weights go straight to an external data file."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    photos = torch.export.Dim("photos", min=1, max=64)
    prompts = torch.export.Dim("prompts", min=1, max=1024)
    axes = {
        "vision": ({0: photos},),
        "text": ({0: prompts}, {0: prompts}),
        "decoder": ({0: photos}, {0: photos}, {0: photos}, {0: prompts}, {0: prompts}, {0: prompts}, None),
    }[graph]
    with torch.no_grad():
        torch.onnx.export(
            module,
            tuple(example.values()),
            str(path),
            input_names=GRAPH_INPUTS[graph],
            output_names=GRAPH_OUTPUTS[graph],
            dynamic_shapes=axes,
            opset_version=18,
            dynamo=True,
            external_data=external_data,
        )
    return path


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = False  # measure and free the graph's working memory per call
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def max_abs_diff(graph: str, got: Sequence[np.ndarray], ref: Sequence[np.ndarray]) -> float:
    worst = 0.0
    for name, g, r in zip(GRAPH_OUTPUTS[graph], got, ref, strict=True):
        if g.shape != r.shape:
            raise ParityError(f"{graph}.{name}: onnx shape {g.shape} != torch {r.shape}")
        worst = max(worst, float(np.abs(g.astype(np.float64) - r.astype(np.float64)).max(initial=0.0)))
    return worst


# --- selection: reference and gate -------------------------------------------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x.astype(np.float64)))


def reference_selection(
    raw: Sequence[np.ndarray], threshold: float, max_detections: int
) -> dict[tuple[int, int], dict[str, Any]]:
    """PyTorch's decoder outputs → the admitted (phrase, query) pairs with score, box and mask (numpy, float64)."""
    masks, boxes, logits, presence = raw
    scores = _sigmoid(logits) * _sigmoid(presence)
    kept: dict[tuple[int, int], dict[str, Any]] = {}
    for phrase in range(scores.shape[0]):
        order = np.argsort(-scores[phrase], kind="stable")[:max_detections]
        for query in order:
            if scores[phrase, query] >= threshold:
                kept[(phrase, int(query))] = {
                    "score": float(scores[phrase, query]),
                    "box": boxes[phrase, query].astype(np.float64),
                    "mask": _sigmoid(masks[phrase, query]) >= 0.5,
                }
    return kept


def gate_thresholds(raw: Sequence[np.ndarray], max_detections: int) -> list[float]:
    """Thresholds where queries are admitted and others refused: 0 (the whole top-K) and the middle of
    the widest gap among the middle half of the top-K scores (no score sits near it)."""
    _, _, logits, presence = raw
    scores = _sigmoid(logits) * _sigmoid(presence)
    top = np.sort(-np.sort(-scores, axis=1)[:, :max_detections].ravel())
    lo, hi = len(top) // 4, max(len(top) // 4 + 1, 3 * len(top) // 4)
    middle = top[lo : hi + 1]
    gaps = np.diff(middle)
    i = int(np.argmax(gaps)) if len(gaps) else 0
    cut = float((middle[i] + middle[min(i + 1, len(middle) - 1)]) / 2)
    return [0.0, cut]


def selection_parity(
    got: Sequence[np.ndarray], raw: Sequence[np.ndarray], threshold: float, max_detections: int
) -> dict[str, Any]:
    """The decoder graph's kept queries vs the reference at one threshold; raises ParityError on a mismatch."""
    phrase, query, scores, boxes, masks = got
    ref = reference_selection(raw, threshold, max_detections)
    admitted = {(int(p), int(q)) for p, q in zip(phrase, query, strict=True)}
    if admitted != set(ref):
        raise ParityError(
            f"decoder admits {len(admitted)} queries at threshold {threshold:.6f}, PyTorch {len(ref)} "
            f"({len(admitted ^ set(ref))} differ)"
        )
    total = int(raw[2].size)
    if threshold > 0 and not 0 < len(ref) < min(total, raw[2].shape[0] * max_detections):
        raise ParityError(f"threshold {threshold:.6f} admits {len(ref)} of {total}: it does not test the selection")
    score_diff, box_diff, worst_iou = 0.0, 0.0, 1.0
    for i, key in enumerate(zip(phrase.tolist(), query.tolist(), strict=True)):
        r = ref[key]
        score_diff = max(score_diff, abs(float(scores[i]) - r["score"]))
        box_diff = max(box_diff, float(np.abs(boxes[i] - r["box"]).max()))
        on = masks[i] >= 128
        union = np.logical_or(on, r["mask"]).sum()
        iou = float(np.logical_and(on, r["mask"]).sum() / union) if union else 1.0
        worst_iou = min(worst_iou, iou)
    return {
        "threshold": threshold,
        "admitted": len(ref),
        "of": total,
        "score_max_abs_diff": score_diff,
        "box_max_abs_diff": box_diff,
        "mask_min_iou": worst_iou,
    }


# --- memory -----------------------------------------------------------------------------------------


def reset_peak_rss() -> None:
    """Restart the kernel's high-water mark of this process (``VmHWM``), so each stage reports its own peak."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def release_memory() -> None:
    """Give freed memory back to the system between graphs (Python's gc, then glibc's free lists)."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


# --- the other gates --------------------------------------------------------------------------------


def preprocess_parity(size: int) -> float:
    """The caller's resize (``sam3_core.resize_square``, Pillow) vs torch's antialiased bilinear on uint8
    (what SAM3's image processor does), in uint8 levels."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(TINY_SEED)
    worst = 0.0
    for h, w in ((size * 3 + 7, size * 2 + 5), (size // 2 + 3, size + 11), (size, size), (size * 4, size * 3)):
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


def _profile(graph: str, name: str) -> tuple[int, int, int] | None:
    """min / opt / max of an input's first axis; None for inputs without one (the threshold)."""
    if name == "score_threshold":
        return None
    if graph == "decoder" and name.startswith("fpn"):
        return TRT_PHOTO_PROFILE
    return TRT_PROFILES[graph]


def build_plan(onnx_path: Path, plan_path: Path, graph: str, precision: str, example: dict[str, Any]) -> None:
    """ONNX → serialized TensorRT engine with one optimisation profile over the batch axes."""
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
    for name, tensor in example.items():
        axis = _profile(graph, name)
        shape = tuple(tensor.shape)
        if axis is None:
            profile.set_shape(name, shape, shape, shape)
        else:
            rest = shape[1:]
            profile.set_shape(name, (axis[0], *rest), (axis[1], *rest), (axis[2], *rest))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build {graph}")
    plan_path.write_bytes(bytes(serialized))


def run_plan(plan_path: Path, graph: str, feeds: dict[str, Any]) -> list[np.ndarray]:
    """Execute a plan once on the GPU with torch tensors as buffers; outputs of data-dependent size (the
    decoder's kept queries) are allocated by TensorRT's output allocator once their shape is known."""
    import tensorrt as trt
    import torch

    class Outputs(trt.IOutputAllocator):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.buffers: dict[str, Any] = {}
            self.shapes: dict[str, tuple[int, ...]] = {}

        def reallocate_output(self, name: str, memory: int, size: int, alignment: int) -> int:
            self.buffers[name] = torch.empty(max(size, 1), dtype=torch.uint8, device="cuda")
            return int(self.buffers[name].data_ptr())

        def notify_shape(self, name: str, shape: Any) -> None:
            self.shapes[name] = tuple(shape)

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(plan_path.read_bytes())
    context = engine.create_execution_context()
    keep = []
    for name, value in feeds.items():
        t = value.contiguous().cuda()
        context.set_input_shape(name, tuple(t.shape))
        context.set_tensor_address(name, t.data_ptr())
        keep.append(t)
    allocator = Outputs()
    for name in GRAPH_OUTPUTS[graph]:
        context.set_output_allocator(name, allocator)
    stream = torch.cuda.Stream()
    if not context.execute_async_v3(stream.cuda_stream):
        raise RuntimeError(f"TensorRT execution of {graph} failed")
    stream.synchronize()
    dtypes = {trt.float32: torch.float32, trt.int32: torch.int32, trt.uint8: torch.uint8, trt.int64: torch.int64}
    outputs = []
    for name in GRAPH_OUTPUTS[graph]:
        shape = allocator.shapes[name]
        dtype = dtypes[engine.get_tensor_dtype(name)]
        count = int(np.prod(shape)) if shape else 1
        flat = allocator.buffers[name].view(dtype)[:count]
        outputs.append(flat.reshape(shape).cpu().numpy())
    return outputs


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    norm = float(np.linalg.norm(a64)) * float(np.linalg.norm(b64))
    return float(a64 @ b64) / max(norm, 1e-30)


def plan_parity(
    plan_path: Path, graph: str, feeds: dict[str, Any], reference: Sequence[np.ndarray]
) -> dict[str, float]:
    """Cosine of every feature output; for the decoder, the mask IoU of the queries both keep."""
    got = run_plan(plan_path, graph, feeds)
    if graph != "decoder":
        return {"cosine": min(_cosine(g, r) for g, r in zip(got, reference, strict=True))}
    mine = {(int(p), int(q)): i for i, (p, q) in enumerate(zip(got[0], got[1], strict=True))}
    theirs = {(int(p), int(q)): i for i, (p, q) in enumerate(zip(reference[0], reference[1], strict=True))}
    both = sorted(set(mine) & set(theirs))
    inter = sum(int(np.logical_and(got[4][mine[k]] >= 128, reference[4][theirs[k]] >= 128).sum()) for k in both)
    union = sum(int(np.logical_or(got[4][mine[k]] >= 128, reference[4][theirs[k]] >= 128).sum()) for k in both)
    agree = len(both) / max(len(set(mine) | set(theirs)), 1)
    return {"cosine": agree, "mask_iou": inter / union if union else 1.0}


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


def decoder_floor_bytes(geometry: Geometry) -> int:
    """Smallest plausible working memory of one phrase in the decoder: its gathered features plus the
    full fp32 mask logits of every query (used when the measured figure is noise, as for tiny models)."""
    features = sum(geometry.fpn_channels * s * s for s in geometry.fpn_sizes) * 4
    return features + geometry.num_queries * geometry.mask_size**2 * 4


class Stage:
    """Wall time and peak RSS of one export stage (the high-water mark is reset at its start)."""

    def __init__(self, stages: dict[str, dict[str, float]], name: str) -> None:
        self.stages, self.name = stages, name

    def __enter__(self) -> Stage:
        release_memory()
        reset_peak_rss()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stages[self.name] = {"s": round(time.perf_counter() - self.t0, 2), "peak_rss_bytes": peak_rss_bytes()}
        log.info("%s: %.1fs, peak RSS %.2f GB", self.name, self.stages[self.name]["s"], peak_rss_bytes() / 1e9)
        release_memory()


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
                # The references above ran SAM3's own attention: the gate below checks the chunked graph.
                chunked = chunked_detector_attention(model) if graph == "decoder" else contextlib.nullcontext()
                with chunked:
                    path = export_onnx(modules[graph], example, graph, work / "onnx" / graph, external_data=big)
                del example
            with Stage(stages, f"gate_{graph}"):
                session = _session(path)
                if graph == "decoder":
                    parity["selection"], decoder_bytes = _decoder_gate(
                        session, feeds["decoder"], raw_ref, cap, onnx_tol
                    )
                    parity["onnx_decoder_max_abs_diff"] = max(g["score_max_abs_diff"] for g in parity["selection"])
                else:
                    diff = max_abs_diff(graph, session.run(GRAPH_OUTPUTS[graph], feeds[graph]), references[graph])
                    parity[f"onnx_{graph}_max_abs_diff"] = diff
                    if not diff <= onnx_tol:
                        raise ParityError(f"ONNX {graph} differs from PyTorch by {diff:.2e} > {onnx_tol:.0e}")
                del session
            log.info("onnx %s: max|diff| %.2e", graph, parity[f"onnx_{graph}_max_abs_diff"])
            onnx_files[graph] = str(path.relative_to(work))
        _save_tokenizer(source, work / "tokenizer.json")
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
                build_plan(work / onnx_files[graph], plan, graph, precision, example)
                graph_feeds = {k: torch.from_numpy(np.asarray(v)) for k, v in feeds[graph].items()}
                if graph == "decoder":
                    graph_feeds["score_threshold"] = torch.tensor([0.0])
                    session = _session(work / onnx_files[graph])
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


def _decoder_gate(
    session: Any, feeds: dict[str, Any], raw_ref: Sequence[np.ndarray], cap: int, tol: float
) -> tuple[list[dict[str, Any]], int]:
    """The selection gate at thresholds that admit some queries and refuse others, and the decoder's
    working memory per phrase (peak RSS of a call with every prompt minus one with a single prompt)."""
    results = []
    for threshold in gate_thresholds(raw_ref, cap):
        run = {**feeds, "score_threshold": np.array([threshold], np.float32)}
        got = session.run(GRAPH_OUTPUTS["decoder"], run)
        check = selection_parity(got, raw_ref, threshold, cap)
        if check["score_max_abs_diff"] > tol or check["box_max_abs_diff"] > tol:
            raise ParityError(f"ONNX decoder differs from PyTorch at threshold {threshold:.6f}: {check}")
        if check["mask_min_iou"] < SELECTION_MIN_MASK_IOU:
            raise ParityError(f"ONNX decoder masks differ from PyTorch at threshold {threshold:.6f}: {check}")
        results.append(check)
    prompts = len(feeds["image_index"])
    peaks = []
    for k in (1, prompts):
        one = {
            name: (v[:k] if name in ("image_index", "text_features", "attention_mask") else v)
            for name, v in feeds.items()
        }
        one["score_threshold"] = np.array([0.0], np.float32)
        release_memory()
        before = rss_bytes()
        reset_peak_rss()
        session.run(GRAPH_OUTPUTS["decoder"], one)
        peaks.append(peak_rss_bytes() - before)
    per_phrase = (peaks[1] - peaks[0]) // max(prompts - 1, 1) if prompts > 1 else peaks[0]
    return results, max(int(per_phrase), 0)


# --- random-weight checkpoints ------------------------------------------------------------------------


RANDOM_MARKER = "s3_random_weights.json"
"""Written into a random-weight checkpoint: the export then marks the model as not meaningful."""


def random_spec(checkpoint: Path) -> dict[str, Any] | None:
    marker = checkpoint / RANDOM_MARKER
    return json.loads(marker.read_text()) if marker.is_file() else None


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
    else:
        log.info("exporting %s to %s", "the tiny model" if checkpoint is None else checkpoint, out)
        try:
            export(checkpoint, out, args.trt, args.precision, args.onnx_tol, args.force, args.max_detections)
        except ParityError as e:
            print(f"error: parity gate failed, artefact refused: {e}", file=sys.stderr)
            return 3
    print(json.dumps({"artifact_dir": str(out.resolve())}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
