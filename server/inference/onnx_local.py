"""Segmenter adapter running the three SAM3 graphs with onnxruntime inside this process.

For hosts where the Triton binary cannot run (``S3_INFERENCE=onnx``). Same graphs, same
``sam3_core`` code path and graph sessions as the Triton ``sam3`` model (CPU flavour), same resize
and post-processing: the same instances. Inference runs in a worker thread, one request at a time
(onnxruntime already uses every core).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from server.errors import InferenceUnavailable
from server.inference import sam3_core
from server.inference.artifacts import ModelArtifact
from server.inference.graph_sessions import OnnxRunners
from server.inference.port import SegmenterInfo
from server.inference.postprocess import DUPLICATE_IOU, SegmentsFromCandidates
from server.inference.triton import check_image
from server.inference.triton_repository import DECODER_MEMORY_BUDGET_BYTES


class OnnxLocalSegmenter(SegmentsFromCandidates):
    """In-process SAM3 from an exported artefact."""

    def __init__(
        self,
        artifact: ModelArtifact,
        *,
        score_threshold: float | None = None,
        duplicate_iou: float = DUPLICATE_IOU,
        intra_op_threads: int = 0,
        decoder_memory_budget_bytes: int = DECODER_MEMORY_BUDGET_BYTES,
    ) -> None:
        try:
            self._runners = OnnxRunners(artifact.onnx_files(), intra_op_threads)
            self._tokenizer = Tokenizer.from_file(str(artifact.tokenizer_json))
        except Exception as e:  # onnxruntime raises its own untyped errors on bad or missing files
            raise InferenceUnavailable(f"cannot load SAM3 from {artifact.root}: {e}") from e
        self._artifact = artifact
        self._cache = sam3_core.TextFeatureCache()
        self._score_threshold = artifact.score_threshold if score_threshold is None else score_threshold
        self._duplicate_iou = duplicate_iou
        self._phrases_per_call = sam3_core.phrases_per_call(
            decoder_memory_budget_bytes, artifact.decoder_bytes_per_phrase
        )
        self._lock = asyncio.Lock()
        self._info = SegmenterInfo(name=f"onnx:{artifact.name}", meaningful=artifact.meaningful)

    @property
    def info(self) -> SegmenterInfo:
        return self._info

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None

    def _candidates_sync(self, image: npt.NDArray[np.uint8], phrases: Sequence[str]) -> sam3_core.Candidates:
        square = sam3_core.resize_square(image, self._artifact.geometry.image_size)
        try:
            found = sam3_core.run_sam3(
                square,
                phrases,
                runners=self._runners,
                tokenizer=self._tokenizer,
                cache=self._cache,
                score_threshold=self._score_threshold,
                phrases_per_call=self._phrases_per_call,
            )
        except Exception as e:  # onnxruntime's errors (Fail, InvalidArgument, ...) share no base class
            raise InferenceUnavailable(f"onnxruntime failed: {e}") from e
        return sam3_core.in_photo(found, (int(image.shape[0]), int(image.shape[1])))

    async def candidates(self, image: npt.NDArray[np.uint8], phrases: Sequence[str]) -> sam3_core.Candidates:
        check_image(image)
        async with self._lock:
            return await asyncio.to_thread(self._candidates_sync, image, phrases)
