"""The Triton adapter wraps every tritonclient failure as InferenceUnavailable (no server needed)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from server.errors import InferenceUnavailable
from server.inference.local_triton import free_port
from server.inference.port import SegmenterInfo
from server.inference.triton import TritonSegmenter, check_image


def test_connect_to_nothing_is_inference_unavailable() -> None:
    url = f"127.0.0.1:{free_port()}"
    with pytest.raises(InferenceUnavailable) as caught:
        asyncio.run(TritonSegmenter.connect(url, timeout_s=2.0))
    assert caught.value.code == "INFERENCE_UNAVAILABLE"
    assert caught.value.__cause__ is not None  # chained: the tritonclient error is kept for the logs


def test_images_must_be_rgb_uint8() -> None:
    check_image(np.zeros((2, 3, 3), np.uint8))
    for bad in (np.zeros((2, 3, 3), np.float32), np.zeros((2, 3), np.uint8), np.zeros((0, 3, 3), np.uint8)):
        with pytest.raises(ValueError, match="image"):
            check_image(bad)


class FlakyClient:
    """Stands in for tritonclient's aio client at the adapter boundary: fails ``failures`` times first."""

    def __init__(self, failures: list[str]) -> None:
        self.failures = failures
        self.calls = 0
        self.timeouts: list[float] = []

    async def infer(self, model: str, inputs: list[Any], outputs: list[Any], client_timeout: float) -> Any:
        self.calls += 1
        self.timeouts.append(client_timeout)
        if self.failures:
            raise InferenceServerException(msg="nope", status=self.failures.pop(0))
        return EmptyResult()

    async def close(self) -> None:
        return None


class EmptyResult:
    def as_numpy(self, name: str) -> np.ndarray:
        shapes = {"boxes": (0, 4), "masks": (0, 4, 4)}
        return np.zeros(shapes.get(name, (0,)), np.float32)


def segmenter(client: FlakyClient, timeout_s: float = 5.0) -> TritonSegmenter:
    info = SegmenterInfo(name="triton:test", meaningful=False)
    return TritonSegmenter(
        client, info, timeout_s=timeout_s, score_threshold=0.5, image_size=16, retries=3, backoff_s=0.01
    )


def test_unavailable_is_retried_with_backoff_then_succeeds() -> None:
    client = FlakyClient(["StatusCode.UNAVAILABLE", "StatusCode.UNAVAILABLE"])
    found = asyncio.run(segmenter(client).segment(np.zeros((4, 4, 3), np.uint8), {"Wall": ["wall"]}))
    assert found == {"Wall": []}
    assert client.calls == 3
    assert all(0 < t <= 5.0 for t in client.timeouts) and client.timeouts == sorted(client.timeouts, reverse=True)


def test_retries_stop_after_the_limit() -> None:
    client = FlakyClient(["StatusCode.UNAVAILABLE"] * 10)
    with pytest.raises(InferenceUnavailable):
        asyncio.run(segmenter(client).segment(np.zeros((4, 4, 3), np.uint8), {"Wall": ["wall"]}))
    assert client.calls == 4  # the first try and 3 retries


@pytest.mark.parametrize(
    "status", ["StatusCode.DEADLINE_EXCEEDED", "StatusCode.INVALID_ARGUMENT", "StatusCode.INTERNAL"]
)
def test_other_errors_are_not_retried(status: str) -> None:
    client = FlakyClient([status])
    with pytest.raises(InferenceUnavailable) as caught:
        asyncio.run(segmenter(client).segment(np.zeros((4, 4, 3), np.uint8), {"Wall": ["wall"]}))
    assert client.calls == 1 and isinstance(caught.value.__cause__, InferenceServerException)


def test_no_prompts_means_no_call() -> None:
    client = FlakyClient([])
    assert asyncio.run(segmenter(client).segment(np.zeros((4, 4, 3), np.uint8), {"Wall": []})) == {"Wall": []}
    assert client.calls == 0
