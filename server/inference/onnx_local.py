"""Segmenter adapter running the three SAM3 graphs with onnxruntime inside this process.

For hosts where the Triton binary cannot run (``S3_INFERENCE=onnx``). Same graphs, same
``sam3_core`` code path as the Triton ``sam3`` model, same post-processing: the same instances.
Inference runs in a worker thread, one request at a time (onnxruntime already uses every core).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Tokenizer

from server.errors import InferenceUnavailable
from server.inference import sam3_core
from server.inference.artifacts import ModelArtifact
from server.inference.port import Instance, SegmenterInfo
from server.inference.postprocess import DUPLICATE_IOU, segment_concepts
from server.inference.triton import check_image

F32 = sam3_core.F32
I64 = sam3_core.I64


class OnnxRunners:
    """sam3_core.GraphRunners over three onnxruntime sessions."""

    def __init__(self, artifact: ModelArtifact, intra_op_threads: int = 0) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        self._sessions = {
            graph: ort.InferenceSession(str(artifact.onnx(graph)), options, providers=["CPUExecutionProvider"])
            for graph in ("vision", "text", "decoder")
        }

    def _run(self, graph: str, feeds: dict[str, Any]) -> list[F32]:
        outputs: list[F32] = self._sessions[graph].run(None, feeds)
        return outputs

    def vision(self, pixel_values: F32) -> tuple[F32, F32, F32]:
        f = self._run("vision", {"pixel_values": pixel_values})
        return f[0], f[1], f[2]

    def text(self, input_ids: I64, attention_mask: I64) -> F32:
        return self._run("text", {"input_ids": input_ids, "attention_mask": attention_mask})[0]

    def decoder(self, fpn: tuple[F32, F32, F32], text_features: F32, attention_mask: I64) -> dict[str, F32]:
        feeds: dict[str, Any] = {"fpn0": fpn[0], "fpn1": fpn[1], "fpn2": fpn[2]}
        feeds.update(text_features=text_features, attention_mask=attention_mask)
        out = self._run("decoder", feeds)
        return dict(zip(sam3_core.DECODER_OUTPUTS, out, strict=True))


class OnnxLocalSegmenter:
    """In-process SAM3 from an exported artefact."""

    def __init__(
        self,
        artifact: ModelArtifact,
        *,
        score_threshold: float | None = None,
        duplicate_iou: float = DUPLICATE_IOU,
        intra_op_threads: int = 0,
    ) -> None:
        try:
            self._runners = OnnxRunners(artifact, intra_op_threads)
            self._tokenizer = Tokenizer.from_file(str(artifact.tokenizer_json))
        except Exception as e:  # onnxruntime raises its own untyped errors on bad or missing files
            raise InferenceUnavailable(f"cannot load SAM3 from {artifact.root}: {e}") from e
        self._artifact = artifact
        self._cache = sam3_core.TextFeatureCache()
        self._score_threshold = artifact.score_threshold if score_threshold is None else score_threshold
        self._duplicate_iou = duplicate_iou
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
        try:
            return sam3_core.run_sam3(
                image,
                phrases,
                runners=self._runners,
                tokenizer=self._tokenizer,
                cache=self._cache,
                image_size=self._artifact.geometry.image_size,
                score_threshold=self._score_threshold,
                decoder_batch=self._artifact.decoder_batch,
            )
        except Exception as e:  # onnxruntime's errors (Fail, InvalidArgument, ...) share no base class
            raise InferenceUnavailable(f"onnxruntime failed: {e}") from e

    async def candidates(self, image: npt.NDArray[np.uint8], phrases: Sequence[str]) -> sam3_core.Candidates:
        check_image(image)
        async with self._lock:
            return await asyncio.to_thread(self._candidates_sync, image, phrases)

    async def segment(
        self,
        image: npt.NDArray[np.uint8],
        concepts: Mapping[str, Sequence[str]],
    ) -> dict[str, list[Instance]]:
        return await segment_concepts(self.candidates, image, concepts, duplicate_iou=self._duplicate_iou)
