"""Recolour: replace chroma, move lightness to the target, keep the photo's lightness detail.

With the target's a* and b* fixed, the output colour depends on the input's L* alone, so the whole op
is a 256-entry table from OpenCV's 8-bit L* to RGB, built exactly in float64 and applied with
``cv2.LUT``. The per-photo part is one statistic, the region's mean L*, which the table recentres on
the target: the same rule gives the same colour on every photo of an album, with each photo's own
shading and texture.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from applier.action_params import RECOLOR, default
from applier.colors import hex_to_rgb, lab_to_rgb, rgb_to_lab
from applier.ops.region import Box, edit_region

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]

# Lightness values are kept inside [_L_LOW, _L_HIGH] with soft knees, so that a white or black target
# compresses the photo's shading near the limit instead of clipping it flat.
_L_LOW, _L_HIGH, _KNEE = 1.0, 99.5, 6.0


def _soft_limit(lightness: F64) -> F64:
    hi_knee, lo_knee = _L_HIGH - _KNEE, _L_LOW + _KNEE
    out = lightness.copy()
    over = lightness > hi_knee
    out[over] = _L_HIGH - _KNEE * np.exp(-(lightness[over] - hi_knee) / _KNEE)
    under = lightness < lo_knee
    out[under] = _L_LOW + _KNEE * np.exp((lightness[under] - lo_knee) / _KNEE)
    return out


def lightness_map(histogram: F64, target_l: float, detail: float) -> F64:
    """Output L* for each 8-bit input L* level, given the region's histogram over those levels."""
    levels = np.arange(256, dtype=np.float64) * (100.0 / 255.0)
    total = histogram.sum()
    mean = float((histogram * levels).sum() / total) if total > 0 else target_l
    if total > 0:
        # Headroom: a white (or black) target on a photo with shading is placed so that the region's
        # brightest (darkest) 1% just reaches the limit, as a real white wall photographs a little
        # below paper white with its shading intact, instead of clipping flat.
        cdf = np.cumsum(histogram) / total
        low = float(levels[np.searchsorted(cdf, 0.01)])
        high = float(levels[np.searchsorted(cdf, 0.99)])
        target_l = min(target_l, _L_HIGH - 0.5 * detail * (high - mean))
        target_l = max(target_l, _L_LOW + 0.5 * detail * (mean - low))
    base = target_l + detail * (levels - mean)
    # The knees pull the mean off the target near white or black: shift back, a bounded amount,
    # so that shading is compressed rather than flattened.
    shift = 0.0
    for _ in range(20):
        mapped = _soft_limit(base + shift)
        out_mean = float((histogram * mapped).sum() / total) if total > 0 else target_l
        step = target_l - out_mean
        if abs(step) < 0.01:
            break
        shift = float(np.clip(shift + step, -8.0, 8.0))
    return _soft_limit(base + shift)


def recolor_table(histogram: F64, color: str, detail: float) -> U8:
    """The 256x1x3 RGB table for ``cv2.LUT`` indexed by OpenCV 8-bit L*."""
    target = rgb_to_lab(np.array(hex_to_rgb(color), dtype=np.float64))
    out_l = lightness_map(histogram, float(target[0]), detail)
    lab = np.stack([out_l, np.full(256, target[1]), np.full(256, target[2])], axis=-1)
    return lab_to_rgb(lab).reshape(256, 1, 3)


def recolor(
    image: U8,
    alpha: F32,
    *,
    value: str,
    strength: float = default(RECOLOR, "strength", float),
    detail: float = default(RECOLOR, "detail", float),
) -> U8:
    """Recolour the region ``alpha`` of ``image`` (HxWx3 or HxWx4 uint8) to ``value`` (``#rrggbb``)."""

    def edit(box: Box) -> tuple[U8, F32]:
        sl = box.slices
        lab = cv2.cvtColor(np.ascontiguousarray(image[sl][..., :3]), cv2.COLOR_RGB2Lab)
        lightness = cv2.extractChannel(lab, 0)
        core = (alpha[sl] >= 0.5).astype(np.uint8)
        hist = cv2.calcHist([lightness], [0], core, [256], [0, 256]).ravel().astype(np.float64)
        table = recolor_table(hist, value, detail)
        new = np.asarray(cv2.LUT(cv2.merge([lightness, lightness, lightness]), table), np.uint8)
        return new, (alpha if strength >= 1.0 else alpha * np.float32(strength))

    return edit_region(image, alpha, edit)
