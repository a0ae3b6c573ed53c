"""The Triton adapter wraps every tritonclient failure as InferenceUnavailable (no server needed)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from server.errors import InferenceUnavailable
from server.inference.local_triton import free_port
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
