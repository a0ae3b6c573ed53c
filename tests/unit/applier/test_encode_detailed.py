"""A photo with more detail than one byte per pixel still encodes as JPEG."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from applier.templates import Template, encode


def test_high_entropy_photo_encodes_as_jpeg() -> None:
    noise = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    data = encode(noise, Template(id="t", width=640, height=480, fit="fit", format="jpeg", quality=95))
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and im.size == (640, 480)
    assert len(data) > 640 * 480  # the case where optimised Huffman tables overflow Pillow's buffer
