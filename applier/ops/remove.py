"""Remove: inpaint small regions; turn large ones (a seller Background) transparent or a solid colour.

For transparency the matte edge is cleaned: a pixel that is part foreground, part old background has
the old background's colour mixed in, which shows as a fringe on any new backdrop. Its foreground colour
is recovered from the compositing equation ``I = a F + (1 - a) B`` with ``B`` estimated from nearby
pure-background pixels.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from applier.action_params import REMOVE, default
from applier.colors import hex_to_rgb
from applier.masks import feather as feather_alpha
from applier.ops.region import Box, bounding_box, edit_region

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

AUTO_INPAINT_MAX_FRACTION = 0.05
"""``mode=auto`` inpaints regions up to this share of the photo; larger ones become transparent."""

_INPAINT_WORK_SIDE = 768


def inpaint(image: U8, alpha: F32, *, feather_px: float = 1.0) -> U8:
    """Fill the region from its surroundings (OpenCV Telea), at a bounded resolution for large crops."""
    grow = max(2, round(min(image.shape[:2]) * 0.003))

    def edit(box: Box) -> tuple[U8, F32]:
        hole = (alpha > 0.05).astype(np.uint8)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        hole = np.asarray(cv2.dilate(hole, kernel), np.uint8)
        sl = box.slices
        crop = np.ascontiguousarray(image[sl][..., :3])
        hole_crop = hole[sl]
        k = min(1.0, _INPAINT_WORK_SIDE / max(box.height, box.width))
        if k < 1.0:
            size = (max(1, round(box.width * k)), max(1, round(box.height * k)))
            small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
            small_hole = (cv2.resize(hole_crop, size, interpolation=cv2.INTER_AREA) > 0).astype(np.uint8)
            filled = cv2.inpaint(small, small_hole, 5, cv2.INPAINT_TELEA)
            filled = cv2.resize(filled, (box.width, box.height), interpolation=cv2.INTER_CUBIC)
        else:
            filled = cv2.inpaint(crop, hole_crop, 5, cv2.INPAINT_TELEA)
        weights = feather_alpha(hole.astype(np.float32), max(feather_px, 1.0) + grow)
        weights = np.maximum(weights, alpha)  # never less than the region itself
        return np.asarray(filled, np.uint8), np.asarray(weights, np.float32)

    return edit_region(image, alpha, edit, pad=lambda _: grow * 4 + 8)


def _decontaminate(image: U8, fg_alpha: F32) -> U8:
    """Foreground colours (RGB uint8) with the old background's spill removed at the matte's edge.

    Only partially transparent pixels change. The local pure-background and pure-foreground colours
    they are solved against are smooth, so they are estimated at a reduced resolution and sampled at
    the edge pixels only: the cost follows the edge's length, not the photo's area.
    """
    result = np.ascontiguousarray(image[..., :3]).copy()
    edge = (fg_alpha > 0.02) & (fg_alpha < 0.98)
    ys, xs = np.nonzero(edge)
    if ys.size == 0:
        return result
    h, w = fg_alpha.shape
    sigma = max(2.0, min(h, w) * 0.004)
    step = max(1, int(sigma / 2))
    size = (max(1, w // step), max(1, h // step))
    rgb_small = cv2.resize(result, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    a_small = np.asarray(cv2.resize(fg_alpha, size, interpolation=cv2.INTER_AREA), np.float32)
    # remap wants 2-D maps under 32767 on each side: lay the edge pixels out in rows of 1024.
    n = ys.size
    rows = -(-n // 1024)
    flat_x = np.zeros(rows * 1024, np.float32)
    flat_y = np.zeros(rows * 1024, np.float32)
    flat_x[:n] = (xs.astype(np.float32) + 0.5) / step - 0.5
    flat_y[:n] = (ys.astype(np.float32) + 0.5) / step - 0.5
    map_x = flat_x.reshape(rows, 1024)
    map_y = flat_y.reshape(rows, 1024)

    def sample(img: F32, channels: int) -> F32:
        out = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return np.asarray(out, np.float32).reshape(-1, channels)[:n]

    def local_mean(weight: F32) -> F32:
        num = np.asarray(cv2.GaussianBlur(rgb_small * weight[..., None], (0, 0), sigma / step), np.float32)
        den = np.asarray(cv2.GaussianBlur(weight, (0, 0), sigma / step), np.float32)
        return np.asarray(sample(num, 3) / np.maximum(sample(den, 1), 1e-3), np.float32)

    background = local_mean((a_small <= 0.1).astype(np.float32))
    foreground_near = local_mean((a_small >= 0.9).astype(np.float32))
    colour = result[ys, xs].astype(np.float32)
    a = fg_alpha[ys, xs][:, None]
    solved = (colour - (1 - a) * background) / np.maximum(a, 0.05)
    # Where the solve is ill-conditioned (tiny alpha) lean on nearby pure-foreground colour.
    trust = np.clip((a - 0.05) / 0.3, 0.0, 1.0)
    result[ys, xs] = np.clip(solved * trust + foreground_near * (1 - trust) + 0.5, 0, 255).astype(np.uint8)
    return result


def remove(
    image: U8,
    alpha: F32,
    *,
    mode: str = default(REMOVE, "mode", str),
    color: str = default(REMOVE, "color", str),
    feather: float = default(REMOVE, "feather", float),
) -> U8:
    """Erase the region ``alpha``. Returns RGBA for ``mode=transparent`` (or auto on a large region)."""
    box = bounding_box(alpha)
    if box is None:
        return image.copy()
    h, w = alpha.shape
    if mode == "auto":
        fraction = float(cv2.countNonZero((alpha > 0.5).astype(np.uint8))) / (h * w)
        mode = "inpaint" if fraction <= AUTO_INPAINT_MAX_FRACTION else "transparent"
    if mode == "inpaint":
        return inpaint(image, alpha, feather_px=feather)
    removed = feather_alpha(alpha, feather) if feather > 0 else alpha
    keep = np.float32(1.0) - np.clip(removed, 0.0, 1.0)
    if image.shape[2] == 4:
        keep = np.minimum(keep, image[..., 3].astype(np.float32) / 255)
    fg = _decontaminate(image, keep)
    if mode == "transparent":
        out = np.empty((h, w, 4), np.uint8)
        out[..., :3] = fg
        out[..., 3] = cv2.convertScaleAbs(keep, alpha=255.0)
        # Fully transparent pixels carry no colour: zero them so encoders compress and nothing leaks.
        out[out[..., 3] == 0] = 0
        return out
    backdrop = np.array(hex_to_rgb(color), np.float32)
    solid = np.empty_like(fg)
    solid[:] = backdrop.astype(np.uint8)
    keep = np.ascontiguousarray(keep, np.float32)
    new = np.asarray(cv2.blendLinear(fg, solid, keep, np.float32(1) - keep), np.uint8)
    if image.shape[2] == 4:
        new = np.dstack([new, np.full((h, w), 255, np.uint8)])
    # Away from the region keep == 1 and the decontaminated colour is the photo's own, so every
    # pixel outside the region comes out unchanged.
    return new
