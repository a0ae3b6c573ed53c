"""Segmenter adapter over Triton's gRPC API (``tritonclient.grpc.aio``) calling the ``sam3`` model.

Resizes the photo here, on the caller's side (``sam3_core.resize_square``, Pillow's C resampler), and
sends the model-size square as uint8 (3 MB at full size, never float32), all phrases of a request at
once, with a deadline that scales with the request (:class:`Deadline`: a photo's share plus one per
phrase); retries with exponential backoff while Triton answers UNAVAILABLE; reads the model's name,
image size and whether its masks are meaningful from its config. The deadline travels twice: as the
gRPC deadline (the call is cancelled when it passes, and the ``sam3`` model skips its remaining graph
calls) and as the request's own timeout (the model stops by itself too). Readiness is every served
model's (which models the repository serves follows from the ``sam3`` model's ``graphs`` parameter).
Every tritonclient error becomes ``InferenceUnavailable`` here: no tritonclient type leaves this module.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import tritonclient.grpc.aio as grpcclient
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from server.errors import InferenceUnavailable
from server.inference.port import SegmenterInfo
from server.inference.postprocess import DUPLICATE_IOU, SegmentsFromCandidates
from server.inference.sam3_core import DETECTION_OUTPUTS, Candidates, Detections, in_photo, resize_square
from server.inference.triton_repository import SAM3_MODEL, SERVED_MODELS, served_models_for

log = logging.getLogger(__name__)
OUTPUTS = DETECTION_OUTPUTS
RETRYABLE = frozenset({"StatusCode.UNAVAILABLE"})


@dataclass(frozen=True)
class Deadline:
    """How long one ``sam3`` request may take: a share per photo (the vision graph) plus one per phrase."""

    photo_s: float
    phrase_s: float = 0.0

    def for_request(self, phrases: int) -> float:
        return self.photo_s + self.phrase_s * phrases


def check_image(image: npt.NDArray[np.uint8]) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be HxWx3 uint8, got shape {image.shape} dtype {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must not be empty, got shape {image.shape}")


class TritonSegmenter(SegmentsFromCandidates):
    """The ``sam3`` model of one Triton server. Build with :meth:`connect`; call :meth:`close` at the end."""

    def __init__(
        self,
        client: Any,
        info: SegmenterInfo,
        *,
        timeout_s: float,
        phrase_timeout_s: float = 0.0,
        score_threshold: float,
        image_size: int,
        retries: int = 3,
        backoff_s: float = 0.2,
        duplicate_iou: float = DUPLICATE_IOU,
        model: str = SAM3_MODEL,
        ready_models: Sequence[str] = SERVED_MODELS,
    ) -> None:
        self._client = client
        self._info = info
        self._deadline = Deadline(photo_s=timeout_s, phrase_s=phrase_timeout_s)
        self._control_timeout_s = timeout_s
        self._score_threshold = score_threshold
        self._image_size = image_size
        self.last_transfer: dict[str, int] = {}
        """Bytes of the last request's tensors (sent, received) and its ``kept`` detections: what crossed
        to and from Triton."""
        self._retries = retries
        self._backoff_s = backoff_s
        self._duplicate_iou = duplicate_iou
        self._model = model
        self._ready_models = tuple(ready_models)

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        timeout_s: float,
        phrase_timeout_s: float = 0.0,
        score_threshold: float | None = None,
        retries: int = 3,
        model: str = SAM3_MODEL,
    ) -> TritonSegmenter:
        """Open a channel to ``url`` (host:port) and read the model's config; raises InferenceUnavailable.

        A request's deadline is ``timeout_s`` (its photo) plus ``phrase_timeout_s`` per phrase."""
        client = grpcclient.InferenceServerClient(url)
        try:
            config = await client.get_model_config(model, as_json=True, client_timeout=timeout_s)
        except InferenceServerException as e:
            await client.close()
            raise InferenceUnavailable(f"Triton at {url} has no usable {model!r} model: {e.message()}") from e
        params = {k: v.get("string_value", "") for k, v in config["config"].get("parameters", {}).items()}
        name = params.get("model_name", model)
        info = SegmenterInfo(name=f"triton:{name}", meaningful=params.get("meaningful") == "true")
        threshold = score_threshold if score_threshold is not None else float(params.get("score_threshold", 0.5))
        try:
            image_size = int(params["image_size"])
        except (KeyError, ValueError) as e:
            await client.close()
            raise InferenceUnavailable(f"Triton {model!r} does not state its image_size: {e}") from e
        return cls(
            client,
            info,
            timeout_s=timeout_s,
            phrase_timeout_s=phrase_timeout_s,
            score_threshold=threshold,
            image_size=image_size,
            ready_models=served_models_for(params.get("graphs", "")),
            retries=retries,
            model=model,
        )

    @property
    def info(self) -> SegmenterInfo:
        return self._info

    async def ready(self) -> bool:
        """True when every served model is ready (``sam3`` alone can be ready while a graph model is not)."""
        try:
            for model in self._ready_models:
                if not await self._client.is_model_ready(model, client_timeout=self._control_timeout_s):
                    return False
            return True
        except InferenceServerException:
            return False

    async def close(self) -> None:
        await self._client.close()

    async def candidates(self, image: npt.NDArray[np.uint8], phrases: Sequence[str]) -> Candidates:
        """One ``sam3`` call: the detections of every phrase above the score threshold, in photo pixels."""
        check_image(image)
        square = await asyncio.to_thread(resize_square, image, self._image_size)
        sent = {
            "image": square,
            "phrases": np.array([p.encode() for p in phrases], dtype=np.object_),
            "score_threshold": np.array([self._score_threshold], dtype=np.float32),
        }
        inputs = [
            InferInput("image", list(square.shape), "UINT8"),
            InferInput("phrases", [len(phrases)], "BYTES"),
            InferInput("score_threshold", [1], "FP32"),
        ]
        for given in inputs:
            given.set_data_from_numpy(sent[given.name()])
        outputs = [InferRequestedOutput(name) for name in OUTPUTS]
        result = await self._infer(inputs, outputs, self._deadline.for_request(len(phrases)))
        arrays = {name: result.as_numpy(name) for name in OUTPUTS}
        self.last_transfer = {
            # BYTES elements travel as a 4-byte length and the bytes; the threshold is one float32.
            "sent_bytes": int(square.nbytes) + sum(4 + len(p) for p in sent["phrases"]) + 4,
            "received_bytes": sum(int(a.nbytes) for a in arrays.values()),
            "kept": len(arrays["scores"]),
        }
        return in_photo(Detections.from_arrays(arrays), (int(image.shape[0]), int(image.shape[1])))

    async def _infer(self, inputs: list[InferInput], outputs: list[InferRequestedOutput], timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise InferenceUnavailable(f"Triton did not answer within {timeout_s:.1f}s")
                return await self._client.infer(
                    self._model,
                    inputs,
                    outputs=outputs,
                    timeout=max(int(remaining * 1e6), 1),  # microseconds: the model's own stop
                    client_timeout=remaining,  # the gRPC deadline: the call is cancelled when it passes
                )
            except InferenceServerException as e:
                attempt += 1
                delay = self._backoff_s * 2 ** (attempt - 1)
                if e.status() not in RETRYABLE or attempt > self._retries or delay >= deadline - time.monotonic():
                    raise InferenceUnavailable(f"Triton {self._model}: {e.message()}") from e
                log.warning("Triton unavailable (%s), retry %d in %.1fs", e.message(), attempt, delay)
                await asyncio.sleep(delay)
