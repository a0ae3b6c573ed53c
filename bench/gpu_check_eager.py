"""The GPU check's baseline and parity reference: SAM3 in PyTorch eager on the check's device.

Vision once per photo, the detection head per prompt (``bench.sam3_eager``), timed per K and batch.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.sam3_cost import phrase_sets


def photos(n: int, size: int, seed: int = 0) -> np.ndarray:
    """``n`` seeded random square photos: the check's inputs (speed does not depend on content)."""
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def timed(step: Callable[[], Any], min_s: float, sync: Callable[[], None]) -> tuple[int, float]:
    """(runs, seconds) of ``step`` repeated for at least ``min_s`` (and twice), after one warm-up."""
    step()  # warm-up (allocator, kernels)
    sync()
    runs, t0 = 0, time.perf_counter()
    while runs < 2 or time.perf_counter() - t0 < min_s:
        step()
        sync()
        runs += 1
    return runs, time.perf_counter() - t0


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
                runs, elapsed = timed(functools.partial(self.segment, images, phrases), min_s, self.sync)
                rows.append({"k": k, "batch": b, "images_per_s": round(b * runs / elapsed, 3)})
        return rows

    def peak_bytes(self) -> int:
        return int(self.torch.cuda.max_memory_allocated(self.device)) if self.device.type == "cuda" else 0

    def close(self) -> None:
        del self.model
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()
