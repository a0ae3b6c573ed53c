"""The Triton adapter wraps every tritonclient failure as InferenceUnavailable (no server needed)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from server.errors import InferenceUnavailable
from server.inference.port import SegmenterInfo
from server.inference.triton import TritonSegmenter, check_image
from server.inference.triton_repository import FLAVOURS, SERVED_MODELS, Flavour, served_models, served_models_for
from server.ports import free_port


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
            check_image(bad)  # type: ignore[arg-type]  # float32 is refused on purpose


class FlakyClient:
    """Stands in for tritonclient's aio client at the adapter boundary: fails ``failures`` times first."""

    def __init__(self, failures: list[str], ready: dict[str, bool] | None = None) -> None:
        self.failures = failures
        self.calls = 0
        self.timeouts: list[float] = []
        self.request_timeouts_us: list[int] = []
        self.ready = ready or {}

    async def infer(
        self, model: str, inputs: list[Any], outputs: list[Any], timeout: int, client_timeout: float
    ) -> Any:
        self.calls += 1
        self.timeouts.append(client_timeout)
        self.request_timeouts_us.append(timeout)
        if self.failures:
            raise InferenceServerException(msg="nope", status=self.failures.pop(0))
        return EmptyResult()

    async def is_model_ready(self, model: str, client_timeout: float) -> bool:
        return self.ready.get(model, True)

    async def close(self) -> None:
        return None


class EmptyResult:
    def as_numpy(self, name: str) -> np.ndarray:
        shapes = {"boxes": (0, 4), "masks": (0, 4, 4)}
        return np.zeros(shapes.get(name, (0,)), np.float32)


def segmenter(
    client: FlakyClient,
    timeout_s: float = 5.0,
    phrase_timeout_s: float = 0.0,
    ready_models: tuple[str, ...] = SERVED_MODELS,
) -> TritonSegmenter:
    info = SegmenterInfo(name="triton:test", meaningful=False)
    return TritonSegmenter(
        client,
        info,
        timeout_s=timeout_s,
        phrase_timeout_s=phrase_timeout_s,
        score_threshold=0.5,
        image_size=16,
        retries=3,
        backoff_s=0.01,
        ready_models=ready_models,
    )


def test_the_deadline_scales_with_the_phrases_and_travels_as_the_request_timeout() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    for phrases in (1, 12):
        client = FlakyClient([])
        asyncio.run(segmenter(client, timeout_s=5.0, phrase_timeout_s=2.0).candidates(image, ["wall"] * phrases))
        [grpc_deadline], [request_timeout_us] = client.timeouts, client.request_timeouts_us
        assert 5.0 + 2.0 * phrases - 0.5 < grpc_deadline <= 5.0 + 2.0 * phrases
        # The model is told the same deadline (microseconds), so it stops by itself too.
        assert abs(request_timeout_us / 1e6 - grpc_deadline) < 0.5


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_ready_means_every_served_model_is_ready(flavour: Flavour) -> None:
    models = served_models(flavour)
    assert asyncio.run(segmenter(FlakyClient([]), ready_models=models).ready())
    for model in models:
        client = FlakyClient([], ready={model: False})
        assert not asyncio.run(segmenter(client, ready_models=models).ready()), f"{model} not loaded yet: not ready"


def test_the_served_models_follow_the_sam3_graphs_parameter() -> None:
    assert served_models_for("in_process") == SERVED_MODELS == ("sam3",)  # CPU: the graphs run inside sam3
    assert served_models_for("bls") == served_models("gpu") == ("sam3", "sam3_vision", "sam3_text", "sam3_decoder")
    assert served_models_for("") == served_models("gpu")  # an unknown server: wait for every model


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
