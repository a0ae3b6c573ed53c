"""SAM3 around its three graphs: the resize contract, tokens, text-feature cache, decoder chunks.

One code path for every runtime: the Triton ``sam3`` model (python backend, numpy 1.x; graphs run
in its own process on CPU, or called through BLS with device tensors on GPU) and the in-process
onnxruntime backend (numpy 2.x) both call :func:`run_sam3` with their own :class:`GraphRunners`.
Selection (score, threshold, top-K cap) happens inside the decoder graph: only kept queries leave
it. Only numpy (and ``tokenizers`` for the phrase tokens) is needed on the Triton side, so the
module is copied as-is into the Triton model directory; the resize (Pillow) runs on the caller's
side. It never mutates its inputs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from tokenizers import Tokenizer

TEXT_LENGTH = 32
"""SAM3 pads and truncates every phrase to 32 CLIP tokens."""
END_TOKEN = "<|endoftext|>"
"""CLIP's end token, also its padding token."""
VISION_INPUT = "image"
"""The vision graph takes the caller's square uint8 image ``[B, S, S, 3]`` and normalises it itself."""
FPN_OUTPUTS = ("fpn0", "fpn1", "fpn2")
DECODER_INPUTS = ("fpn0", "fpn1", "fpn2", "image_index", "text_features", "attention_mask", "score_threshold")
DETECTION_OUTPUTS = ("phrase_index", "query_index", "scores", "boxes", "masks")
"""What the decoder graph (and the ``sam3`` model) return: the kept queries only, flattened over prompts."""
MAX_DETECTIONS = 32
"""Top-K cap per phrase applied inside the decoder graph (before the score threshold)."""

F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]


def resize_square(image: U8, size: int) -> U8:
    """``HxWx3`` uint8 → ``size x size x 3`` uint8: bilinear with antialiasing, aspect not kept.

    The one resize contract of the serving path, run by the caller (Pillow's C resampler; torch's
    ``antialias=True`` bilinear derives from it and the export gates the two within 1 level).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be HxWx3 uint8, got {image.shape} {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must not be empty, got {image.shape}")
    if image.shape[0] == size and image.shape[1] == size:
        return image.copy()
    from PIL import Image  # caller side only: the Triton model never resizes

    resized = Image.fromarray(np.ascontiguousarray(image), mode="RGB").resize(
        (size, size), resample=Image.Resampling.BILINEAR, reducing_gap=None
    )
    return np.asarray(resized, dtype=np.uint8).copy()


def tokenize(tokenizer: Tokenizer, phrases: Sequence[str]) -> tuple[I64, I64]:
    """Phrases → ``input_ids, attention_mask [K, 32]`` (CLIP BPE; padded with the end token)."""
    end = tokenizer.token_to_id(END_TOKEN)
    if end is None:
        raise ValueError(f"the tokenizer has no {END_TOKEN} token")
    ids = np.full((len(phrases), TEXT_LENGTH), end, dtype=np.int64)
    mask = np.zeros((len(phrases), TEXT_LENGTH), dtype=np.int64)
    for row, encoding in enumerate(tokenizer.encode_batch(list(phrases))):
        n = min(len(encoding.ids), TEXT_LENGTH)
        ids[row, :n] = encoding.ids[:n]
        mask[row, :n] = 1
        if len(encoding.ids) > TEXT_LENGTH:
            ids[row, -1] = encoding.ids[-1]  # keep the end token when truncating, as CLIP does
    return ids, mask


class GraphRunners(Protocol):
    """The three exported graphs, however they are executed (onnxruntime, Triton BLS, TensorRT).

    Image features are opaque here (numpy arrays in process, Triton tensors on device through BLS):
    they go from ``vision`` to ``decoder`` untouched, once per photo, never tiled on the host.
    """

    def vision(self, image: U8) -> tuple[Any, Any, Any]: ...

    def text(self, input_ids: I64, attention_mask: I64) -> F32: ...

    def decoder(
        self,
        fpn: tuple[Any, Any, Any],
        image_index: I64,
        text_features: F32,
        attention_mask: I64,
        score_threshold: F32,
    ) -> dict[str, npt.NDArray[Any]]: ...


class TextFeatureCache:
    """Text features per phrase, least recently used evicted first; safe to share between threads."""

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, tuple[F32, I64]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_many(
        self,
        phrases: Sequence[str],
        tokenizer: Tokenizer,
        runners: GraphRunners,
    ) -> tuple[F32, I64]:
        """Features ``[K, 32, D]`` and attention masks ``[K, 32]``, running the text graph once for the misses."""
        with self._lock:
            found = {p: self._items[p] for p in phrases if p in self._items}
            for p in found:
                self._items.move_to_end(p)
        missing = list(dict.fromkeys(p for p in phrases if p not in found))
        self.hits += len(phrases) - len(missing)
        self.misses += len(missing)
        if missing:
            ids, mask = tokenize(tokenizer, missing)
            features = runners.text(ids, mask)
            with self._lock:
                for i, phrase in enumerate(missing):
                    item = (np.array(features[i]), np.array(mask[i]))
                    found[phrase] = item
                    self._items[phrase] = item
                while len(self._items) > self._capacity:
                    self._items.popitem(last=False)
        feats = np.stack([found[p][0] for p in phrases]).astype(np.float32)
        masks = np.stack([found[p][1] for p in phrases]).astype(np.int64)
        return feats, masks


@dataclass(frozen=True)
class Detections:
    """The kept queries of one photo, flattened over its phrases, as the decoder graph returns them."""

    phrase_index: I32
    """Position of the phrase in the request, per detection."""
    query_index: I32
    """SAM3 query slot, per detection (a stable tie-break)."""
    scores: F32
    """sigmoid(logit) x sigmoid(presence), per detection."""
    boxes: F32
    """``[N, 4]`` x0, y0, x1, y1 normalised to the image (0..1)."""
    masks: U8
    """``[N, M, M]`` probabilities x 255 over the whole photo (aspect not kept)."""

    @classmethod
    def empty(cls, mask_size: int) -> Detections:
        return cls(
            phrase_index=np.zeros(0, np.int32),
            query_index=np.zeros(0, np.int32),
            scores=np.zeros(0, np.float32),
            boxes=np.zeros((0, 4), np.float32),
            masks=np.zeros((0, mask_size, mask_size), np.uint8),
        )

    @classmethod
    def from_arrays(cls, arrays: dict[str, npt.NDArray[Any]]) -> Detections:
        return cls(
            phrase_index=np.asarray(arrays["phrase_index"]).astype(np.int32).reshape(-1),
            query_index=np.asarray(arrays["query_index"]).astype(np.int32).reshape(-1),
            scores=np.asarray(arrays["scores"]).astype(np.float32).reshape(-1),
            boxes=np.asarray(arrays["boxes"]).astype(np.float32).reshape(-1, 4),
            masks=np.asarray(arrays["masks"]).astype(np.uint8),
        )

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {name: getattr(self, name) for name in DETECTION_OUTPUTS}


@dataclass(frozen=True)
class Candidates:
    """Detections of one request in photo coordinates (what post-processing numbers into instances)."""

    phrase_index: I32
    query_index: I32
    scores: F32
    boxes: F32
    """``[N, 4]`` x0, y0, x1, y1 in photo pixels."""
    masks: U8


def in_photo(found: Detections, photo_hw: tuple[int, int]) -> Candidates:
    """Normalised boxes → photo pixels (clipped to the photo)."""
    h, w = photo_hw
    scale = np.array([w, h, w, h], dtype=np.float32)
    boxes = np.clip(found.boxes * scale, 0.0, scale).astype(np.float32).reshape(-1, 4)
    return Candidates(found.phrase_index, found.query_index, found.scores, boxes, found.masks)


def phrases_per_call(memory_budget_bytes: int, bytes_per_phrase: int) -> int:
    """How many phrases one decoder call may take so that its working memory stays within the budget."""
    if bytes_per_phrase <= 0:
        raise ValueError(f"bytes_per_phrase must be positive, got {bytes_per_phrase}")
    return max(1, memory_budget_bytes // bytes_per_phrase)


def concat_detections(parts: Sequence[tuple[int, Detections]], mask_size: int) -> Detections:
    """Detections of several decoder calls, phrase indices shifted by each call's first phrase."""
    if not parts:
        return Detections.empty(mask_size)
    return Detections(
        phrase_index=np.concatenate([d.phrase_index + np.int32(start) for start, d in parts]).astype(np.int32),
        query_index=np.concatenate([d.query_index for _, d in parts]),
        scores=np.concatenate([d.scores for _, d in parts]),
        boxes=np.concatenate([d.boxes for _, d in parts]).reshape(-1, 4),
        masks=np.concatenate([d.masks for _, d in parts]),
    )


def run_sam3(
    image: U8,
    phrases: Sequence[str],
    *,
    runners: GraphRunners,
    tokenizer: Tokenizer,
    cache: TextFeatureCache,
    score_threshold: float,
    phrases_per_call: int,
) -> Detections:
    """Encode once, prompt many: the vision graph once for the (already square) image, cached text
    features, then the decoder for chunks of ``phrases_per_call`` phrases, each broadcasting the same
    features inside the graph (``image_index`` all 0: every phrase looks at photo 0)."""
    if not phrases:
        raise ValueError("phrases must not be empty")
    if image.ndim != 3 or image.shape[0] != image.shape[1] or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be a square SxSx3 uint8 image, got {image.shape} {image.dtype}")
    fpn = runners.vision(np.ascontiguousarray(image)[None])
    features, masks = cache.get_many(phrases, tokenizer, runners)
    threshold = np.array([score_threshold], dtype=np.float32)
    parts: list[tuple[int, Detections]] = []
    for start in range(0, len(phrases), phrases_per_call):
        stop = min(start + phrases_per_call, len(phrases))
        index = np.zeros(stop - start, dtype=np.int64)
        out = runners.decoder(fpn, index, features[start:stop], masks[start:stop], threshold)
        parts.append((start, Detections.from_arrays(out)))
    return concat_detections(parts, mask_size=int(parts[0][1].masks.shape[-1]))
