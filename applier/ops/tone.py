"""Blur, tone adjustments and shadows: ops that re-weight the photo's own pixels."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from applier.action_params import ADJUST, BLUR, SHADOW, default
from applier.ops.region import Box, bounding_box, edit_region

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


def blur(image: U8, alpha: F32, *, radius: float = default(BLUR, "radius", float)) -> U8:
    """Gaussian blur inside the region; ``radius`` is percent of the short side.

    Only region pixels feed the blur (normalised convolution), so a blurred background does not smear
    the sharp foreground's colours into a halo around it.
    """
    sigma = max(0.5, radius / 100 * min(image.shape[:2]) / 2)

    def edit(box: Box) -> U8:
        sl = box.slices
        crop = image[sl].astype(np.float32)  # every channel: an RGBA photo's opacity is blurred too
        weight = np.ascontiguousarray(np.clip(alpha[sl] * 2, 0, 1), np.float32)
        num = cv2.GaussianBlur(crop * weight[..., None], (0, 0), sigma)
        den = cv2.GaussianBlur(weight, (0, 0), sigma)[..., None]
        soft = np.where(den > 1e-3, num / np.maximum(den, 1e-3), crop)
        return np.clip(soft + 0.5, 0, 255).astype(np.uint8)

    return edit_region(image, alpha, edit, pad=lambda _: int(sigma * 3) + 1)


def adjust(
    image: U8,
    alpha: F32,
    *,
    brightness: float = default(ADJUST, "brightness", float),
    contrast: float = default(ADJUST, "contrast", float),
    saturation: float = default(ADJUST, "saturation", float),
    warmth: float = default(ADJUST, "warmth", float),
) -> U8:
    """Brightness, contrast (about the region's mean), saturation and warmth, in CIE Lab."""

    def edit(box: Box) -> U8:
        sl = box.slices
        rgb = np.ascontiguousarray(image[sl][..., :3]).astype(np.float32) * np.float32(1 / 255)
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)
        lightness, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
        core = alpha[sl] >= 0.5
        mean_l = float(lightness[core].mean()) if core.any() else float(lightness.mean())
        lightness = (lightness - mean_l) * np.float32(1 + contrast) + mean_l + np.float32(brightness * 30)
        chroma = np.float32(1 + saturation)
        a = a * chroma + np.float32(warmth * 4)
        b = b * chroma + np.float32(warmth * 16)
        out = cv2.cvtColor(np.dstack([np.clip(lightness, 0, 100), a, b]).astype(np.float32), cv2.COLOR_Lab2RGB)
        return np.asarray(np.clip(out * 255 + 0.5, 0, 255), np.uint8)

    return edit_region(image, alpha, edit)


def lift_shadow(
    image: U8, alpha: F32, *, strength: float = default(SHADOW, "strength", float), exclude: F32 | None = None
) -> U8:
    """Soften (``strength`` < 1) or remove (1) a cast shadow: divide out its darkening.

    The unshadowed surface around the shadow (a studio sweep, a floor) is smooth: it is filled in
    from the shadow's surroundings (Telea inpainting of the luminance), leaving out other objects (the product that casts the
    shadow). A grey gain ``surface / photo`` is applied to the photo, so texture, noise and colour stay.
    """

    def edit(box: Box) -> tuple[U8, F32] | None:
        sl = box.slices
        crop = np.ascontiguousarray(image[sl][..., :3])
        k = min(1.0, 256 / max(box.height, box.width))
        size = (max(1, round(box.width * k)), max(1, round(box.height * k)))
        small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        region = cv2.resize(alpha[sl], size, interpolation=cv2.INTER_AREA)
        hole = cv2.dilate((region > 0.02).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        ring = cv2.dilate(hole.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~hole
        if not ring.any():
            return None
        reference = np.median(small[ring], axis=0)
        foreign = (np.abs(small - reference).max(axis=-1) > 40) & ~hole
        luminance = small.mean(axis=-1)
        fill = (hole | foreign).astype(np.uint8)
        surface = cv2.inpaint(np.clip(luminance + 0.5, 0, 255).astype(np.uint8), fill, 7, cv2.INPAINT_TELEA)
        surface = cv2.GaussianBlur(surface.astype(np.float32), (0, 0), 2.0)
        keep = (~foreign).astype(np.float32)
        shaded = cv2.GaussianBlur(luminance * keep, (0, 0), 1.0) / np.maximum(cv2.GaussianBlur(keep, (0, 0), 1.0), 1e-3)
        gain = np.clip(surface / np.maximum(shaded, 1.0), 1.0, 4.0) ** np.float32(strength)
        gain_full = cv2.resize(gain.astype(np.float32), (box.width, box.height), interpolation=cv2.INTER_LINEAR)
        lifted = np.clip(crop.astype(np.float32) * gain_full[..., None] + 0.5, 0, 255).astype(np.uint8)
        # Feather the edge of the shadow mask, but never onto the object next to it: a pixel that would
        # need much more gain than the shadow's own core is darker than any shadow here (the product).
        weights = np.zeros_like(alpha)
        weights[sl] = np.maximum(
            alpha[sl], cv2.GaussianBlur(alpha[sl], (0, 0), max(1.0, 0.03 * max(box.height, box.width)))
        )
        surface_full = cv2.resize(surface.astype(np.float32), (box.width, box.height), interpolation=cv2.INTER_LINEAR)
        needed = surface_full / np.maximum(crop.astype(np.float32).mean(axis=-1), 1.0)
        core = alpha[sl] >= 0.9
        limit = float(np.percentile(needed[core], 98)) if core.any() else float(needed.max())
        foreignness = np.clip((needed - 1.15 * limit) / (0.25 * limit), 0.0, 1.0)
        weights[sl] *= 1 - foreignness
        if exclude is not None:
            # Other objects the caller knows about (the product casting the shadow) are never lifted.
            weights[sl] *= 1 - np.clip(exclude[sl], 0.0, 1.0)
        return lifted, np.asarray(weights, np.float32)

    return edit_region(image, alpha, edit, pad=lambda box: max(8, round(0.25 * max(box.height, box.width))))


def drop_shadow(
    image: U8,
    alpha: F32,
    *,
    strength: float = default(SHADOW, "strength", float),
    softness: float = default(SHADOW, "softness", float),
    distance: float = default(SHADOW, "distance", float),
    angle: float = default(SHADOW, "angle", float),
) -> U8:
    """Add a soft shadow cast by the region (a product) onto what is around and under it.

    ``softness`` and ``distance`` are percent of the object's height. On an RGBA image (background
    removed) the shadow also adds opacity, so it survives onto any backdrop.
    """
    box = bounding_box(alpha, 0.5)
    if box is None:
        return image.copy()
    h, w = alpha.shape
    obj_h = box.height
    # The shadow is smooth: build it at a reduced resolution and upsample.
    k = min(1.0, 512 / max(h, w))
    sw, sh = max(1, round(w * k)), max(1, round(h * k))
    small = np.asarray(cv2.resize(alpha, (sw, sh), interpolation=cv2.INTER_AREA), np.float32)
    base_y = box.y1 * k
    sigma = max(0.6, softness / 100 * obj_h * k)
    shift = distance / 100 * obj_h * k
    dx, dy = shift * np.cos(np.radians(angle)), shift * np.sin(np.radians(angle))
    # Project the silhouette onto the ground: flatten it towards its base (a light from above and in
    # front), lean it along the shadow's direction, then offset it.
    flatten = 0.12
    lean = -np.cos(np.radians(angle)) * 0.35
    m = np.array(
        [[1, lean * flatten, dx - lean * flatten * base_y], [0, flatten, base_y * (1 - flatten) + dy]],
        dtype=np.float32,
    )
    cast = np.asarray(cv2.warpAffine(small, m, (sw, sh), flags=cv2.INTER_LINEAR, borderValue=0), np.float32)
    # A contact shadow where the object meets the ground: a flat ellipse across its base.
    contact = np.zeros((sh, sw), np.float32)
    centre = (round((box.x0 + box.x1) / 2 * k), round(base_y - 1 + dy * 0.3))
    axes = (max(1, round(box.width * k * 0.55)), max(1, round(obj_h * k * 0.025)))
    cv2.ellipse(contact, centre, axes, 0, 0, 360, 1.0, -1, cv2.LINE_AA)
    soft = np.maximum(
        0.9 * np.asarray(cv2.GaussianBlur(cast, (0, 0), sigma), np.float32),
        np.asarray(cv2.GaussianBlur(contact, (0, 0), max(0.6, sigma * 0.3)), np.float32),
    )
    full = np.asarray(cv2.resize(soft, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)
    shadow = np.asarray(np.clip(full * strength, 0, 1) * (1 - alpha), np.float32)
    rgb = image[..., :3].astype(np.float32)
    if image.shape[2] == 3:
        out: U8 = np.clip(rgb * (1 - shadow[..., None]) + 0.5, 0, 255).astype(np.uint8)
        return out
    a = image[..., 3].astype(np.float32) / 255
    out_a = a + shadow * (1 - a)
    premult = rgb * (a * (1 - shadow))[..., None]
    out_rgb = premult / np.maximum(out_a, 1e-6)[..., None]
    result = np.empty_like(image)
    result[..., :3] = np.clip(out_rgb + 0.5, 0, 255).astype(np.uint8)
    result[..., 3] = np.clip(out_a * 255 + 0.5, 0, 255).astype(np.uint8)
    return result
