"""Parity gates of the vision and text graphs, the tokenizer and the caller's resize."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from server.inference import sam3_core
from server.inference.export.checkpoints import TINY_SEED
from server.inference.export.graphs import GRAPH_OUTPUTS

ONNX_MAX_ABS_DIFF = 1e-4
PREPROCESS_MAX_LEVELS = 1.0
"""Largest difference, in uint8 levels, between our resize and torch's antialiased one."""
TOKEN_PROBES = ("wall", "Floor", "a  red DOOR!", "window frame", "x" * 200, "ceiling " * 40)


class ParityError(RuntimeError):
    """An exported artefact does not match PyTorch closely enough."""


GATE_FAILED_EXIT = 3
"""Exit code of an export command whose artefact a parity gate refused (nothing is written then)."""


def exit_status(build: Callable[[], object], out: Path) -> int:
    """An export command's ending: ``build()``, then the artefact folder printed as JSON (what the
    service reads back) and 0; a refused gate is a message on stderr and :data:`GATE_FAILED_EXIT`."""
    try:
        build()
    except ParityError as e:
        print(f"error: parity gate failed, artefact refused: {e}", file=sys.stderr)
        return GATE_FAILED_EXIT
    print(json.dumps({"artifact_dir": str(out.resolve())}))
    return 0


def max_abs_diff(graph: str, got: Sequence[np.ndarray], ref: Sequence[np.ndarray]) -> float:
    worst = 0.0
    for name, g, r in zip(GRAPH_OUTPUTS[graph], got, ref, strict=True):
        if g.shape != r.shape:
            raise ParityError(f"{graph}.{name}: onnx shape {g.shape} != torch {r.shape}")
        worst = max(worst, float(np.abs(g.astype(np.float64) - r.astype(np.float64)).max(initial=0.0)))
    return worst


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
