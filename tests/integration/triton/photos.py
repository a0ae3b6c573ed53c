"""Seeded synthetic photos for the SAM3 serving tests."""

from __future__ import annotations

import numpy as np


def photo(seed: int, hw: tuple[int, int] = (120, 160)) -> np.ndarray:
    """A seeded synthetic photo: smooth colour regions plus noise (not all noise, not all flat)."""
    rng = np.random.default_rng(seed)
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], axis=-1)
    image = base + rng.normal(0, 20, (h, w, 3))
    image[h // 3 : 2 * h // 3, w // 4 : w // 2] = rng.integers(0, 255, 3)
    return np.clip(image, 0, 255).astype(np.uint8)
