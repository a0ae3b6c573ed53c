"""Material: replace a surface with a texture scaled to the region, re-lit by the photo's shading.

The photo's illumination over the region is estimated as its smoothed luminance, normalised inside
the region only (so a dark neighbour does not bleed in), and multiplied onto the texture in linear
light: albedo times illumination, which is how the original surface got its shading.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import numpy.typing as npt

from applier.action_params import MATERIAL, default
from applier.colors import hex_to_rgb, rgb_to_lab
from applier.ops.region import Box, edit_region
from applier.textures import BASE_SIZE, procedural, tile_texture

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


def _srgb_to_linear(c: F32) -> F32:
    return np.asarray(np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4), np.float32)


def _linear_to_srgb(c: F32) -> F32:
    c = np.clip(c, 0.0, 1.0)
    return np.asarray(np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055), np.float32)


def illumination(image: U8, alpha: F32, box: Box, *, smooth: float = 0.06) -> F32:
    """Relative illumination over ``box`` (mean 1 inside the region), smoothed over ``smooth`` of its
    short side, from the linear luminance of the photo."""
    sl = box.slices
    lab = cv2.cvtColor(np.ascontiguousarray(image[sl][..., :3]), cv2.COLOR_RGB2Lab)
    lightness = lab[..., 0].astype(np.float32) * np.float32(100 / 255)
    luminance = ((lightness + 16) / 116) ** 3
    weight = (alpha[sl] >= 0.5).astype(np.float32)
    # Solve at a reduced resolution: illumination is smooth, and this keeps 12 MP affordable.
    k = min(1.0, 256 / max(box.height, box.width))
    sw, sh = max(1, round(box.width * k)), max(1, round(box.height * k))
    lum_s = np.asarray(cv2.resize(luminance, (sw, sh), interpolation=cv2.INTER_AREA), np.float32)
    # The old surface's own pattern (grout lines, plank seams) is not lighting: a closing removes dark
    # structures thinner than a few pixels before smoothing, so they do not print through the texture.
    lum_s = np.asarray(cv2.morphologyEx(lum_s, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8)), np.float32)
    w_s = np.asarray(cv2.resize(weight, (sw, sh), interpolation=cv2.INTER_AREA), np.float32)
    lum_s = lum_s * w_s
    sigma = max(1.0, smooth * min(sw, sh))
    num = cv2.GaussianBlur(lum_s, (0, 0), sigma)
    den = cv2.GaussianBlur(w_s, (0, 0), sigma)
    smooth_lum = num / np.maximum(den, 1e-4)
    inside = w_s > 0.5
    mean = float(smooth_lum[inside].mean()) if inside.any() else float(smooth_lum.mean())
    ratio = np.clip(smooth_lum / max(mean, 1e-4), 0.05, 4.0).astype(np.float32)
    return np.asarray(cv2.resize(ratio, (box.width, box.height), interpolation=cv2.INTER_LINEAR), np.float32)


def _rotated(make: Callable[[int, int], F32], h: int, w: int, degrees: float) -> F32:
    if degrees == 0:
        out: F32 = make(h, w)
        return out
    side = int(np.ceil(np.hypot(h, w))) + 2
    big: F32 = make(side, side)
    rot = cv2.getRotationMatrix2D((side / 2, side / 2), degrees, 1.0)
    turned = cv2.warpAffine(big, rot, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    y0, x0 = (side - h) // 2, (side - w) // 2
    return np.asarray(turned[y0 : y0 + h, x0 : x0 + w], np.float32)


def _ground_plane(make: Callable[[int, int, float], F32], h: int, w: int, perspective: float) -> F32:
    """The texture laid on a ground plane seen from above the region's bottom edge: full size at the
    bottom row, shrinking towards a horizon above the region as ``perspective`` grows."""
    horizon = h * (0.25 + 2.0 * (1.0 - perspective))  # distance from the region's top to the horizon
    far = (h + horizon) / horizon  # magnification of the texture needed at the top row
    src_h_full = (h + horizon) * h / horizon
    src_w_full = w * far
    # Far rows need a large source; cap its pixel count (far rows are minified anyway).
    f = min(1.0, float(np.sqrt(6.0 * h * w / (src_h_full * src_w_full))))
    src_h, src_w = max(2, int(src_h_full * f) + 2), max(2, int(src_w_full * f) + 2)
    source: F32 = make(src_h, src_w, f)
    ys = np.arange(h, dtype=np.float32)[:, None]
    xs = np.arange(w, dtype=np.float32)[None, :]
    depth = (h + horizon) / (ys + horizon)
    ty = (h + horizon) * depth - (h + horizon)  # 0 at the bottom row, growing upwards
    map_y = np.broadcast_to((src_h_full - 1 - ty) * f, (h, w)).astype(np.float32)
    map_x = ((src_w_full / 2 + (xs - w / 2) * depth) * f).astype(np.float32)
    out = cv2.remap(source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return np.asarray(out, np.float32)


def _tint(texture: F32, color: str) -> F32:
    """Move the texture's mean colour to ``color`` in Lab, keeping its variation."""
    lab = cv2.cvtColor(texture, cv2.COLOR_RGB2Lab)
    target = rgb_to_lab(np.array(hex_to_rgb(color), dtype=np.float64))
    mean = lab.reshape(-1, 3).mean(axis=0)
    lab = lab + (target - mean).astype(np.float32)
    return np.asarray(np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0, 1), np.float32)


def material(
    image: U8,
    alpha: F32,
    *,
    texture: str,
    scale: float = default(MATERIAL, "scale", float),
    rotation: float = default(MATERIAL, "rotation", float),
    perspective: float = default(MATERIAL, "perspective", float),
    shading: float = default(MATERIAL, "shading", float),
    seed: int = default(MATERIAL, "seed", int),
    color: str | None = None,
    uploaded: U8 | None = None,
) -> U8:
    """Cover the region ``alpha`` of ``image`` with ``texture`` (a procedural name, or ``upload`` with
    ``uploaded`` an RGB uint8 texture), re-lit by the photo's shading."""

    def edit(box: Box) -> U8:
        if texture == "upload" and uploaded is None:
            raise ValueError("texture 'upload' needs the uploaded texture array")
        size_px = BASE_SIZE[texture] * min(box.height, box.width) * scale

        def make_scaled(h: int, w: int, k: float) -> F32:
            if uploaded is not None and texture == "upload":
                return tile_texture(uploaded, h, w, size_px * k)
            return procedural(texture, h, w, size_px * k, seed)

        def make(h: int, w: int) -> F32:
            return make_scaled(h, w, 1.0)

        if perspective > 0:

            def make_rotated(h: int, w: int, k: float) -> F32:
                return _rotated(lambda hh, ww: make_scaled(hh, ww, k), h, w, rotation)

            tex = _ground_plane(make_rotated, box.height, box.width, perspective)
        else:
            tex = _rotated(make, box.height, box.width, rotation)
        if color is not None:
            tex = _tint(tex, color)
        if shading > 0:
            light = illumination(image, alpha, box) ** np.float32(shading)
            tex = _linear_to_srgb(_srgb_to_linear(tex) * light[..., None])
        return np.asarray(np.clip(tex * 255 + 0.5, 0, 255), np.uint8)

    return edit_region(image, alpha, edit)
