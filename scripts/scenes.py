"""Synthetic photos with ground-truth masks, for tests, benchmarks, docs and the demo album.

Two scenes, drawn at any size from a seed: an interior (ceiling, a plastered wall lit from a window,
a perspective tiled floor with grout, a window with specular highlights, a sign with text and a logo)
and a seller product shot (a bottle with a label, a logo and text, its soft shadow on a studio sweep).
The seed varies colours, lighting and layout so that an album of several photos is not identical.
Everything is drawn with analytic anti-aliasing and a little sensor noise so that edges, gradients and
textures behave like a photo's, not like flat fills.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from applier.colors import hex_to_rgb

F32 = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]

WALL_COLORS = ("#e9e2d4", "#c9d3c0", "#d9dde0", "#efe7da", "#c8d6e2", "#e6d2c4")
TILE_COLORS = ("#d9d4cc", "#b9aea0", "#8d8a86", "#e7e3dc", "#a89582")
SIGN_COLORS = ("#1f2a44", "#2d4a35", "#3b3f44", "#6d2132")
PRODUCT_COLORS = ("#2f5d9b", "#b3302c", "#2a7f7a", "#c99a2e", "#6b4c8a", "#3b3f44")
STUDIO_COLORS = ("#eceae6", "#e4e8ec", "#efe6dd", "#e2e6df")


@dataclass(frozen=True)
class Scene:
    """A synthetic photo and the ground truth of every concept drawn in it."""

    image: npt.NDArray[np.uint8]
    """HxWx3 RGB uint8."""
    masks: dict[str, Mask] = field(default_factory=dict)
    """Concept name to a HxW boolean mask (e.g. ``Wall``, ``Floor``, ``Text``, ``Highlight``)."""
    kind: str = "interior"
    seed: int = 0


def _rgb(hex_color: str) -> F32:
    return np.array(hex_to_rgb(hex_color), dtype=np.float32) / 255.0


def _smooth_noise(rng: np.random.Generator, h: int, w: int, scale_px: float) -> F32:
    """Zero-mean, unit-std noise with features about ``scale_px`` wide (cheap: upsampled from a grid)."""
    gh, gw = max(2, int(h / scale_px) + 2), max(2, int(w / scale_px) + 2)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    up = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    std = float(up.std()) or 1.0
    return np.asarray((up - up.mean()) / std, dtype=np.float32)


def _coverage(distance: F32, width_px: float = 1.0) -> F32:
    """Anti-aliased coverage of a shape from a signed distance (negative inside), in pixels."""
    return np.asarray(np.clip(0.5 - distance / width_px, 0.0, 1.0), dtype=np.float32)


def _box_distance(xx: F32, yy: F32, x0: float, y0: float, x1: float, y1: float, radius: float = 0.0) -> F32:
    """Signed distance (pixels) to an axis-aligned, optionally rounded, rectangle."""
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hx, hy = (x1 - x0) / 2 - radius, (y1 - y0) / 2 - radius
    dx = np.abs(xx - cx) - hx
    dy = np.abs(yy - cy) - hy
    outside = np.hypot(np.maximum(dx, 0), np.maximum(dy, 0))
    inside = np.minimum(np.maximum(dx, dy), 0)
    return np.asarray(outside + inside - radius, dtype=np.float32)


def _text_layer(
    h: int, w: int, text: str, box: tuple[float, float, float, float], thickness_ratio: float = 0.09
) -> F32:
    """Anti-aliased coverage of ``text`` fitted into ``box`` (x0, y0, x1, y1 in pixels)."""
    x0, y0, x1, y1 = box
    font = cv2.FONT_HERSHEY_DUPLEX
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, 1)
    scale = min((x1 - x0) / tw, (y1 - y0) / th) * 0.9
    thickness = max(1, round(th * scale * thickness_ratio))
    (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
    canvas = np.zeros((h, w), np.uint8)
    org = (round((x0 + x1 - tw) / 2), round((y0 + y1 + th) / 2))
    cv2.putText(canvas, text, org, font, scale, 255, thickness, cv2.LINE_AA)
    return np.asarray(canvas, dtype=np.float32) / 255.0


def _over(image: F32, color: F32 | npt.NDArray[np.float32], alpha: F32) -> None:
    """Composite ``color`` (RGB or HxWx3) over ``image`` in place (``image`` is this module's canvas)."""
    a = alpha[..., None]
    image *= 1 - a
    image += a * color


def _finish(image: F32, rng: np.random.Generator, vignette: float, noise: float) -> npt.NDArray[np.uint8]:
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    image *= (1 - vignette * r2 / 2)[..., None]
    # Light lens softness: real photos have no perfectly sharp one-pixel steps.
    sigma = max(0.4, min(h, w) / 2400)
    image = np.asarray(cv2.GaussianBlur(image, (0, 0), sigma), np.float32)
    image += rng.normal(0.0, noise, image.shape).astype(np.float32)
    srgb = np.clip(image, 0.0, 1.0) * 255.0 + 0.5
    return np.asarray(srgb, dtype=np.uint8)


def interior_scene(width: int = 1024, height: int = 768, seed: int = 0) -> Scene:
    """A room corner: ceiling, lit wall, window, sign with text and logo, perspective tiled floor."""
    rng = np.random.default_rng(seed)
    h, w = height, width
    s = min(h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)

    ceiling_y = h * rng.uniform(0.07, 0.11)
    floor_y = h * rng.uniform(0.6, 0.66)
    win = (w * rng.uniform(0.06, 0.12), h * 0.17, w * rng.uniform(0.36, 0.42), floor_y - h * 0.12)
    light_x = (win[0] + win[2]) / 2 + w * rng.uniform(0.05, 0.25)

    # Wall: paint colour lit by the window, darker towards the corners, with plaster texture.
    wall_rgb = _rgb(WALL_COLORS[rng.integers(len(WALL_COLORS))])
    d_light = np.hypot((xx - light_x) / w, (yy - h * 0.35) / h)
    lighting = 0.74 + 0.28 * np.exp(-((d_light / 0.55) ** 2)) - 0.06 * (yy / h)
    plaster = 0.007 * _smooth_noise(rng, h, w, s / 80) + 0.006 * _smooth_noise(rng, h, w, s / 400)
    img[:] = wall_rgb * (lighting + plaster)[..., None]

    ceiling = _coverage(yy - ceiling_y)
    ceil_rgb = _rgb("#f4f2ee") * (0.86 + 0.06 * np.exp(-(((xx - light_x) / w) ** 2) * 4))[..., None]
    _over(img, ceil_rgb, ceiling)
    crown = _coverage(np.abs(yy - ceiling_y - s * 0.006) - s * 0.004)
    _over(img, _rgb("#f7f6f3") * 0.92, crown)

    # Floor: tiles on a ground plane seen in perspective; grout is analytic so it thins with distance.
    vp_y = floor_y - h * 0.42
    depth = np.maximum(yy - vp_y, 1.0)
    tile = rng.uniform(0.9, 1.3)
    u = (xx - w * 0.5) / depth * (h * 0.42 / s) * 6.0 / tile + rng.uniform(0, 1)
    v = (h * 0.42) / depth * 9.0 / tile
    du = np.abs(1.0 / depth * (h * 0.42 / s) * 6.0 / tile)  # tile units per pixel, for anti-aliasing
    dv = np.abs(v / depth)
    grout_half = 0.025
    gu = (np.abs(u - np.round(u)) - grout_half) / np.maximum(du, 1e-6)
    gv = (np.abs(v - np.round(v)) - grout_half) / np.maximum(dv, 1e-6)
    grout_cov = np.maximum(_coverage(gu), _coverage(gv))
    floor_cov = _coverage(floor_y - yy)
    tile_rgb = _rgb(TILE_COLORS[rng.integers(len(TILE_COLORS))])
    cell_hash = np.sin(np.floor(u) * 12.9898 + np.floor(v) * 78.233) * 43758.5453
    cell_var = (cell_hash - np.floor(cell_hash) - 0.5) * 0.06
    veins = 0.018 * _smooth_noise(rng, h, w, s / 70) + 0.01 * _smooth_noise(rng, h, w, s / 300)
    floor_light = 0.82 + 0.2 * np.exp(-((((xx - light_x) / w) ** 2) * 3)) * (yy - floor_y).clip(0) / h * 2
    floor_rgb = tile_rgb * (floor_light * (1 + cell_var + veins))[..., None]
    grout_rgb = _rgb("#8a8580") * floor_light[..., None]
    floor_rgb = floor_rgb * (1 - grout_cov[..., None]) + grout_rgb * grout_cov[..., None]
    # Specular sheen of the window on the glazed tiles.
    sheen = 0.1 * np.exp(-((((xx - (win[0] + win[2]) / 2) / (w * 0.08)) ** 2) + ((yy - floor_y) / (h * 0.2)) ** 2))
    floor_rgb += sheen[..., None]
    _over(img, np.asarray(floor_rgb, np.float32), floor_cov)
    skirting = _coverage(np.abs(yy - floor_y + s * 0.012) - s * 0.012) * _coverage(yy - floor_y)
    _over(img, _rgb("#f1efea") * lighting[..., None] * 0.95, skirting)

    # Window: frame, sky, mullions, and specular highlights on the glass.
    frame = s * 0.018
    win_cov = _coverage(_box_distance(xx, yy, *win))
    glass_cov = _coverage(_box_distance(xx, yy, win[0] + frame, win[1] + frame, win[2] - frame, win[3] - frame))
    sky_t = (yy - win[1]) / (win[3] - win[1])
    sky = _rgb("#7fb2e5") * (1 - sky_t)[..., None] + _rgb("#dcebf7") * sky_t[..., None]
    _over(img, _rgb("#f5f5f2") * 0.97, win_cov)
    _over(img, np.asarray(sky, np.float32), glass_cov)
    mx, my = (win[0] + win[2]) / 2, (win[1] + win[3]) / 2
    mullion = np.minimum(np.abs(xx - mx), np.abs(yy - my)) - frame * 0.4
    _over(img, _rgb("#f5f5f2") * 0.95, _coverage(mullion) * glass_cov)
    highlight = np.zeros((h, w), np.float32)
    for _ in range(3):
        hx = rng.uniform(win[0] + frame * 2, win[2] - frame * 2)
        hy = rng.uniform(win[1] + frame * 2, win[3] - frame * 2)
        r = s * rng.uniform(0.012, 0.025)
        highlight = np.maximum(highlight, _coverage(np.hypot(xx - hx, (yy - hy) * 1.6) - r, s * 0.006))
    streak = (xx - win[0]) + (yy - win[1]) * 0.8 - (win[2] - win[0]) * 0.55
    highlight = np.maximum(highlight, _coverage(np.abs(streak) - s * 0.006, s * 0.004) * glass_cov * 0.95)
    _over(img, np.array([1.0, 1.0, 1.0], np.float32), highlight * glass_cov)

    # Sign on the wall: dark board, a round logo and a word.
    sx0 = w * rng.uniform(0.55, 0.6)
    sign = (sx0, h * 0.22, sx0 + s * 0.46, h * 0.22 + s * 0.14)
    sign_cov = _coverage(_box_distance(xx, yy, *sign, radius=s * 0.01))
    sign_rgb = _rgb(SIGN_COLORS[rng.integers(len(SIGN_COLORS))]) * lighting[..., None]
    _over(img, np.asarray(sign_rgb, np.float32), sign_cov)
    pad = s * 0.02
    logo_r = (sign[3] - sign[1]) / 2 - pad
    lcx, lcy = sign[0] + pad + logo_r, (sign[1] + sign[3]) / 2
    logo_cov = _coverage(np.hypot(xx - lcx, yy - lcy) - logo_r)
    _over(img, _rgb("#e0a030"), logo_cov)
    tri = np.maximum(np.abs(xx - lcx) * 1.7 + (yy - lcy) * 0.9 - logo_r * 0.55, -(yy - lcy) - logo_r * 0.35)
    _over(img, _rgb("#ffffff") * 0.95, _coverage(tri) * logo_cov)
    text_box = (lcx + logo_r + pad, sign[1] + pad * 1.3, sign[2] - pad, sign[3] - pad * 1.3)
    words = ("OPEN STUDIO", "ATELIER", "GALLERY 21", "LOFT 7")
    text_cov = _text_layer(h, w, words[rng.integers(len(words))], text_box)
    _over(img, _rgb("#f4f1ea"), text_cov)

    image = _finish(img, rng, vignette=0.22, noise=0.006)
    floor = floor_cov > 0.5
    # The cornice reads as part of the ceiling and the skirting board as trim: the ground truth follows
    # what is visible, as a segmenter's masks do.
    ceiling_gt = np.maximum(ceiling, crown) > 0.5
    trim = (skirting > 0.5) & (floor_cov <= 0.5)
    wall = ((1 - ceiling) * (1 - floor_cov) > 0.5) & ~ceiling_gt & ~trim
    masks = {
        "Ceiling": ceiling_gt,
        "Trim": trim,
        "Wall": wall & ~(win_cov > 0.5) & ~(sign_cov > 0.5),
        "Floor": floor,
        "Grout": floor & (grout_cov > 0.5),
        "Tile": floor & ~(grout_cov > 0.5),
        "Window": win_cov > 0.5,
        "Sign": sign_cov > 0.5,
        "Logo": logo_cov > 0.5,
        "Text": text_cov > 0.5,
        "Highlight": (highlight * glass_cov) > 0.5,
    }
    return Scene(image=image, masks=masks, kind="interior", seed=seed)


def seller_scene(width: int = 1024, height: int = 1024, seed: int = 0) -> Scene:
    """A product shot: a bottle with a label (logo, text) and its soft shadow on a studio sweep."""
    rng = np.random.default_rng(seed)
    h, w = height, width
    s = min(h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    studio = _rgb(STUDIO_COLORS[rng.integers(len(STUDIO_COLORS))])
    light = 0.93 + 0.07 * np.exp(-((((xx - w * 0.45) / w) ** 2 + ((yy - h * 0.35) / h) ** 2) / 0.15))
    sweep = 1.0 - 0.06 * np.clip((yy - h * 0.55) / (h * 0.45), 0, 1)
    img = np.asarray(studio * (light * sweep)[..., None], np.float32)

    cx = w * rng.uniform(0.44, 0.56)
    base_y = h * rng.uniform(0.8, 0.86)
    bw = s * rng.uniform(0.22, 0.28)
    body_top = base_y - s * rng.uniform(0.4, 0.48)
    neck_w, neck_h, cap_h = bw * 0.34, s * 0.06, s * 0.07
    body = _box_distance(xx, yy, cx - bw / 2, body_top, cx + bw / 2, base_y, radius=bw * 0.16)
    shoulder = _box_distance(
        xx, yy, cx - bw / 2, body_top - s * 0.03, cx + bw / 2, body_top + bw * 0.6, radius=bw * 0.42
    )
    neck = _box_distance(
        xx, yy, cx - neck_w / 2, body_top - s * 0.03 - neck_h, cx + neck_w / 2, body_top, radius=neck_w * 0.1
    )
    cap = _box_distance(
        xx,
        yy,
        cx - neck_w * 0.62,
        body_top - s * 0.03 - neck_h - cap_h,
        cx + neck_w * 0.62,
        body_top - s * 0.03 - neck_h + s * 0.004,
        radius=neck_w * 0.12,
    )
    glass_sd = np.minimum(np.minimum(body, shoulder), neck)
    product_cov = np.maximum(_coverage(glass_sd), _coverage(cap))

    # Soft contact shadow and a longer cast shadow to the right, on the sweep.
    ex = (xx - cx - bw * 0.25) / (bw * 0.95)
    ey = (yy - base_y) / (s * 0.035)
    shadow_amt = 0.45 * np.exp(-(ex**2 + ey**2) * 1.4) + 0.25 * np.exp(-(((xx - cx) / (bw * 0.6)) ** 2 + ey**2 * 4))
    shadow_amt = np.clip(shadow_amt, 0, 0.6) * (1 - product_cov)
    img *= (1 - shadow_amt)[..., None]

    # Cylinder shading across the bottle, with a specular stripe (the studio softbox).
    t = np.clip((xx - cx) / (bw / 2), -1, 1)
    shade = 0.55 + 0.45 * np.sqrt(np.clip(1 - t**2, 0, 1)) - 0.08 * t
    prod_rgb = _rgb(PRODUCT_COLORS[rng.integers(len(PRODUCT_COLORS))])
    bottle = np.asarray(prod_rgb * shade[..., None], np.float32)
    _over(img, bottle, _coverage(glass_sd))
    cap_rgb = (
        _rgb("#2b2b2e") * (0.6 + 0.5 * np.sqrt(np.clip(1 - (((xx - cx) / (neck_w * 0.62)) ** 2), 0, 1)))[..., None]
    )
    _over(img, np.asarray(cap_rgb, np.float32), _coverage(cap))

    label = (cx - bw / 2 + bw * 0.04, base_y - s * 0.3, cx + bw / 2 - bw * 0.04, base_y - s * 0.08)
    label_cov = _coverage(_box_distance(xx, yy, *label)) * _coverage(glass_sd)
    _over(img, np.asarray(_rgb("#f3efe6") * shade[..., None], np.float32), label_cov)
    lw = label[2] - label[0]
    logo_r = lw * 0.16
    lcx, lcy = cx, label[1] + logo_r + lw * 0.08
    logo_cov = _coverage(np.hypot(xx - lcx, yy - lcy) - logo_r)
    _over(img, np.asarray(prod_rgb * 0.8 * shade[..., None], np.float32), logo_cov)
    inner = _coverage(np.abs(np.hypot(xx - lcx, yy - lcy) - logo_r * 0.55) - logo_r * 0.12) * logo_cov
    _over(img, _rgb("#f3efe6"), inner)
    names = ("AURA", "NOVA", "LUMA", "VELA")
    text_cov = _text_layer(
        h,
        w,
        names[rng.integers(len(names))],
        (label[0] + lw * 0.1, lcy + logo_r * 1.3, label[2] - lw * 0.1, label[3] - lw * 0.12),
        thickness_ratio=0.12,
    )
    _over(img, _rgb("#2b2b2e"), text_cov)

    stripe_x = cx - bw * rng.uniform(0.18, 0.26)
    stripe = np.exp(-(((xx - stripe_x) / (bw * 0.035)) ** 2)) * _coverage(glass_sd) * (1 - label_cov)
    _over(img, np.array([1.0, 1.0, 1.0], np.float32), np.asarray(stripe * 0.9, np.float32))

    image = _finish(img, rng, vignette=0.08, noise=0.005)
    product = product_cov > 0.5
    masks = {
        "Product": product,
        "Background": ~product,
        "Shadow": (shadow_amt > 0.08) & ~product,
        "Label": label_cov > 0.5,
        "Logo": logo_cov > 0.5,
        "Text": text_cov > 0.5,
        "Highlight": stripe > 0.5,
    }
    return Scene(image=image, masks=masks, kind="seller", seed=seed)


SCENES: dict[str, Callable[[int, int, int], Scene]] = {"interior": interior_scene, "seller": seller_scene}


def album(kind: str, count: int, width: int, height: int, seed: int = 0) -> list[Scene]:
    """``count`` photos of one kind, each with its own seed (colours, lighting, layout vary)."""
    make = SCENES[kind]
    return [make(width, height, seed * 1000 + i) for i in range(count)]


def low_res_probability(mask: Mask, size: tuple[int, int] = (288, 288), softness: float = 0.7) -> npt.NDArray[np.uint8]:
    """What a segmenter returns for ``mask``: a ``size`` (w, h) probability map, aspect not kept.

    Area-averaged to the low resolution and slightly blurred, like the sigmoid of SAM3's mask logits.
    """
    small = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    if softness > 0:
        small = cv2.GaussianBlur(small, (0, 0), softness)
    return np.asarray(np.clip(small * 255.0 + 0.5, 0, 255), dtype=np.uint8)


def instance_masks(mask: Mask, min_area: int = 16) -> list[Mask]:
    """Connected components of a ground-truth mask, largest first (e.g. each tile of a floor)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4)
    order = sorted(range(1, count), key=lambda i: -int(stats[i, cv2.CC_STAT_AREA]))
    return [np.asarray(labels == i) for i in order if stats[i, cv2.CC_STAT_AREA] >= min_area]
