"""Where an op works: the bounding box of a layer's alpha, compositing a crop back, and the envelope
of both that every region op shares (``edit_region``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Box:
    """Half-open pixel rectangle [y0, y1) x [x0, x1)."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    def padded(self, pad: int, shape: tuple[int, ...]) -> Box:
        return Box(
            max(0, self.y0 - pad),
            min(shape[0], self.y1 + pad),
            max(0, self.x0 - pad),
            min(shape[1], self.x1 + pad),
        )


def bounding_box(alpha: F32, threshold: float = 0.0) -> Box | None:
    """The box of pixels with alpha > ``threshold``; None when there are none."""
    x, y, w, h = cv2.boundingRect((alpha > threshold).astype(np.uint8))
    if w == 0 or h == 0:
        return None
    return Box(y, y + h, x, x + w)


def composite(base: U8, new: U8, alpha: F32, box: Box) -> U8:
    """A copy of ``base`` with ``new`` (the crop at ``box``) blended in by ``alpha`` (full-size)."""
    out = base.copy()
    sl = box.slices
    a = alpha[sl]
    if base.shape[2] != new.shape[2]:
        raise ValueError("channel count of the crop differs from the image")
    weights_new = np.ascontiguousarray(a, dtype=np.float32)
    weights_old = np.float32(1.0) - weights_new
    out[sl] = cv2.blendLinear(np.ascontiguousarray(new), np.ascontiguousarray(base[sl]), weights_new, weights_old)
    return out


Edit = Callable[[Box], "U8 | tuple[U8, F32] | None"]
"""What an op computes for its box: the new crop (blended in by the layer's alpha), or the new crop
and its own full-size blend weights, or None for "nothing to change"."""


def edit_region(image: U8, alpha: F32, edit: Edit, *, pad: Callable[[Box], int] | None = None) -> U8:
    """The envelope every region op shares, stated once.

    The op works on the bounding box of ``alpha`` (grown by ``pad(box)`` pixels, within the photo),
    returns the new pixels of that crop, and they are blended back by ``alpha`` (or the op's own
    weights). An empty layer changes nothing; on an RGBA photo a 3-channel crop keeps the photo's
    opacity. Always a new image: the input is never modified.
    """
    box = bounding_box(alpha)
    if box is None:
        return image.copy()
    if pad is not None:
        box = box.padded(pad(box), image.shape)
    result = edit(box)
    if result is None:
        return image.copy()
    new, weights = result if isinstance(result, tuple) else (result, alpha)
    if image.shape[2] == 4 and new.shape[2] == 3:
        new = np.dstack([new, image[box.slices][..., 3]])
    return composite(image, new, weights, box)
