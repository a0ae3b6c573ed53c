"""SAM3 around its three graphs: preprocessing, tokens, text-feature cache, candidate selection.

One code path for every runtime: the Triton ``sam3`` model (python backend, numpy 1.x, graphs called
through BLS) and the in-process onnxruntime backend (numpy 2.x) both call :func:`run_sam3` with their
own :class:`GraphRunners`. Only numpy (and ``tokenizers`` for the phrase tokens) is needed, so the
module is copied as-is into the Triton model directory. It never mutates its inputs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from tokenizers import Tokenizer

TEXT_LENGTH = 32
"""SAM3 pads and truncates every phrase to 32 CLIP tokens."""
END_TOKEN = "<|endoftext|>"
"""CLIP's end token, also its padding token."""
DECODER_OUTPUTS = ("pred_masks", "pred_boxes", "pred_logits", "presence_logits", "semantic_seg")

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]


def _aa_weights(in_size: int, out_size: int) -> tuple[npt.NDArray[np.intp], F32]:
    """Taps of the antialiased bilinear (triangle) filter, as PIL and torch's ``antialias=True`` define it.

    Returns ``(index, weight)`` of shape ``[out_size, taps]``; padding taps have weight 0.
    """
    scale = in_size / out_size
    support_scale = max(scale, 1.0)  # widen the triangle when shrinking: that is the antialiasing
    support = support_scale
    centers = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    lo = np.clip((centers - support + 0.5).astype(np.int64), 0, in_size)
    hi = np.clip((centers + support + 0.5).astype(np.int64), 0, in_size)
    taps = int((hi - lo).max())
    offsets = np.arange(taps, dtype=np.int64)
    index = lo[:, None] + offsets[None, :]
    valid = index < hi[:, None]
    x = (index.astype(np.float64) - centers[:, None] + 0.5) / support_scale
    weight = np.where(valid, np.clip(1.0 - np.abs(x), 0.0, None), 0.0)
    weight /= weight.sum(axis=1, keepdims=True)
    return np.minimum(index, in_size - 1).astype(np.intp), weight.astype(np.float32)


def _resize_axis(image: npt.NDArray[np.uint8], out_size: int, axis: int) -> U8:
    index, weight = _aa_weights(image.shape[axis], out_size)
    # Gather whole rows from a contiguous uint8 copy: 2-3x faster than strided float gathers.
    moved = np.ascontiguousarray(np.moveaxis(image, axis, 0))
    out = np.zeros((out_size, *moved.shape[1:]), dtype=np.float32)
    for tap in range(index.shape[1]):
        w = weight[:, tap].reshape((out_size,) + (1,) * (moved.ndim - 1))
        out += w * moved[index[:, tap]]
    # torch resizes uint8 images in uint8: round after each pass like it does.
    return np.moveaxis(np.clip(np.rint(out), 0.0, 255.0), 0, axis).astype(np.uint8)


def resize_square(image: U8, size: int) -> U8:
    """``HxWx3`` uint8 → ``size x size x 3`` uint8: bilinear with antialiasing, aspect not kept."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be HxWx3 uint8, got {image.shape} {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must not be empty, got {image.shape}")
    out = image
    if out.shape[1] != size:
        out = _resize_axis(out, size, axis=1)  # horizontal pass first, as torch does
    if out.shape[0] != size:
        out = _resize_axis(out, size, axis=0)
    return out if out is not image else image.copy()


def preprocess(image: U8, size: int) -> F32:
    """RGB uint8 photo → SAM3 ``pixel_values [1, 3, size, size]``: resize, /255, mean = std = 0.5."""
    square = resize_square(image, size).astype(np.float32)
    chw = np.transpose(square, (2, 0, 1))[None]
    return np.ascontiguousarray((chw / np.float32(255.0) - np.float32(0.5)) / np.float32(0.5))


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
    """The three exported graphs, however they are executed (onnxruntime, Triton BLS, TensorRT)."""

    def vision(self, pixel_values: F32) -> tuple[F32, F32, F32]: ...

    def text(self, input_ids: I64, attention_mask: I64) -> F32: ...

    def decoder(self, fpn: tuple[F32, F32, F32], text_features: F32, attention_mask: I64) -> dict[str, F32]: ...


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
class Candidates:
    """Detections above the score threshold, flattened over the phrases of one request."""

    phrase_index: npt.NDArray[np.int32]
    """Position of the phrase in the request, per detection."""
    query_index: npt.NDArray[np.int32]
    """SAM3 query slot, per detection (a stable tie-break)."""
    scores: F32
    """sigmoid(logit) x sigmoid(presence), per detection."""
    boxes: F32
    """``[N, 4]`` x0, y0, x1, y1 in photo pixels."""
    masks: U8
    """``[N, M, M]`` probabilities x 255 over the whole photo (aspect not kept)."""


def sigmoid(x: npt.NDArray[np.float32]) -> F32:
    # exp(-logaddexp(0, -x)) never overflows, unlike 1 / (1 + exp(-x)).
    return np.exp(-np.logaddexp(np.float32(0.0), -x.astype(np.float32))).astype(np.float32)


def select_candidates(
    outputs: dict[str, F32],
    photo_hw: tuple[int, int],
    score_threshold: float,
) -> Candidates:
    """Decoder outputs for K phrases → the detections whose score reaches ``score_threshold``."""
    scores = sigmoid(outputs["pred_logits"]) * sigmoid(outputs["presence_logits"])  # [K, Q] * [K, 1]
    phrase, query = np.nonzero(scores >= np.float32(score_threshold))
    h, w = photo_hw
    scale = np.array([w, h, w, h], dtype=np.float32)
    boxes = outputs["pred_boxes"][phrase, query].astype(np.float32) * scale
    boxes = np.clip(boxes, 0.0, scale).astype(np.float32)
    probs = sigmoid(outputs["pred_masks"][phrase, query])
    masks = np.rint(probs * np.float32(255.0)).astype(np.uint8)
    return Candidates(
        phrase_index=phrase.astype(np.int32),
        query_index=query.astype(np.int32),
        scores=scores[phrase, query].astype(np.float32),
        boxes=boxes.reshape(-1, 4),
        masks=masks,
    )


def run_sam3(
    image: U8,
    phrases: Sequence[str],
    *,
    runners: GraphRunners,
    tokenizer: Tokenizer,
    cache: TextFeatureCache,
    image_size: int,
    score_threshold: float,
    decoder_batch: int,
) -> Candidates:
    """Encode once, prompt many: the vision graph once, cached text features, the decoder per chunk of phrases."""
    if not phrases:
        raise ValueError("phrases must not be empty")
    fpn = runners.vision(preprocess(image, image_size))
    features, masks = cache.get_many(phrases, tokenizer, runners)
    chunks: list[dict[str, F32]] = []
    for start in range(0, len(phrases), decoder_batch):
        stop = min(start + decoder_batch, len(phrases))
        n = stop - start
        tiled = (np.repeat(fpn[0], n, axis=0), np.repeat(fpn[1], n, axis=0), np.repeat(fpn[2], n, axis=0))
        chunks.append(runners.decoder(tiled, features[start:stop], masks[start:stop]))
    outputs = {name: np.concatenate([c[name] for c in chunks], axis=0) for name in DECODER_OUTPUTS}
    return select_candidates(outputs, (int(image.shape[0]), int(image.shape[1])), score_threshold)
