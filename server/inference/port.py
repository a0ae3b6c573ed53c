"""The inference port: what the pipeline asks of a segmenter, whatever serves it.

Adapters: ``server.inference.triton`` (tritonclient gRPC to a Triton server) and
``server.inference.onnx_local`` (onnxruntime in this process). Both return the same instances
for the same input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Instance:
    """One instance of a concept in one photo, numbered #1..#N deterministically per concept."""

    concept: str
    number: int
    score: float
    box_xyxy: tuple[float, float, float, float]
    """Pixel coordinates in the photo (x0, y0, x1, y1)."""
    area: int
    """Pixels of the photo covered by the mask (at the photo's size)."""
    mask: npt.NDArray[np.uint8]
    """Low-resolution probability mask (0..255) covering the whole photo, aspect not kept
    (SAM3: 288x288). ``applier`` upsamples and refines it to the photo."""


@dataclass(frozen=True)
class SegmenterInfo:
    name: str
    """Adapter and model, e.g. ``triton:sam3`` or ``onnx:sam3-tiny``."""
    meaningful: bool
    """False when masks come from the tiny random-weight model and mean nothing."""


class Segmenter(Protocol):
    """Segments every requested concept of one photo."""

    @property
    def info(self) -> SegmenterInfo: ...

    async def segment(
        self,
        image: npt.NDArray[np.uint8],
        concepts: Mapping[str, Sequence[str]],
    ) -> dict[str, list[Instance]]:
        """``image`` is HxWx3 RGB uint8; ``concepts`` maps a concept id to its SAM3 text prompts.

        Returns every concept id of the request, each with its instances ordered #1..#N.
        Raises ``server.errors.InferenceUnavailable`` when the backend cannot answer.
        """
        ...

    async def ready(self) -> bool:
        """True when the model can serve a request now."""
        ...

    async def close(self) -> None: ...
