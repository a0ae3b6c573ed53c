"""Inference latency: a ``Segmenter`` that times every call of the one it wraps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Histogram

from server.inference.port import Instance, Segmenter, SegmenterInfo

# From a warm GPU model (tens of ms) to the tiny CPU model on a large photo (seconds).
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class InferenceMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram(
            "s3_inference_duration_seconds",
            "Time of one Segmenter.segment call (one photo, every concept of the request).",
            ("model", "outcome"),
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )


class TimedSegmenter:
    """Delegates to ``inner`` and records each ``segment`` call's duration, ok or error."""

    def __init__(self, inner: Segmenter, metrics: InferenceMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    @property
    def info(self) -> SegmenterInfo:
        return self._inner.info

    async def segment(
        self, image: npt.NDArray[np.uint8], concepts: Mapping[str, Sequence[str]]
    ) -> dict[str, list[Instance]]:
        started = time.perf_counter()
        outcome = "error"
        try:
            found = await self._inner.segment(image, concepts)
            outcome = "ok"
            return found
        except asyncio.CancelledError:
            outcome = "canceled"  # a lost lease or a shutdown, not a model failure
            raise
        finally:
            self._metrics.latency.labels(self._inner.info.name, outcome).observe(time.perf_counter() - started)

    async def ready(self) -> bool:
        return await self._inner.ready()

    async def close(self) -> None:
        await self._inner.close()
