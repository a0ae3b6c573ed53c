"""Procedural surface textures: wood planks, marble, concrete, tiles with grout.

Each returns an HxWx3 float32 sRGB texture in [0, 1] from a seed, with the pattern size given in
pixels, so a caller can scale it to the region it covers. Patterns are built from cheap band-limited
noise (a random grid upsampled with cubic interpolation) and analytic lines, anti-aliased.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


def _noise(rng: np.random.Generator, h: int, w: int, feature_px: float) -> F32:
    gh, gw = max(2, int(h / max(feature_px, 1.0)) + 3), max(2, int(w / max(feature_px, 1.0)) + 3)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    up = np.asarray(cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC), np.float32)
    std = float(up.std()) or 1.0
    return np.asarray((up - float(up.mean())) / std, np.float32)


def _lerp(c0: tuple[float, float, float], c1: tuple[float, float, float], t: F32) -> F32:
    a = np.array(c0, np.float32) / 255
    b = np.array(c1, np.float32) / 255
    return np.asarray(a + (b - a) * np.clip(t, 0, 1)[..., None], np.float32)


def wood(h: int, w: int, size_px: float, rng: np.random.Generator) -> F32:
    """Planks running along x, ``size_px`` wide, with staggered end joints and grain."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    plank = np.floor(yy / size_px)
    length = size_px * 7
    offset = (np.sin(plank * 12.9898) * 43758.5453) % 1.0 * length
    board = np.floor((xx + offset) / length)
    board_id = plank * 131.0 + board
    tone = ((np.sin(board_id * 78.233) * 43758.5453) % 1.0 - 0.5) * 0.35
    warp = _noise(rng, h, w, size_px * 0.8) * size_px * 0.15
    grain = np.sin((yy + warp) / size_px * 2 * np.pi * 6 + board_id) * 0.5 + 0.5
    fine = _noise(rng, h, w, max(1.0, size_px / 25)) * 0.06
    t = 0.45 + tone + 0.25 * grain**3 + fine
    color = _lerp((120, 78, 44), (196, 150, 104), t)
    seam_y = np.abs(yy / size_px - np.round(yy / size_px)) * size_px
    seam_x = np.abs((xx + offset) / length - np.round((xx + offset) / length)) * length
    seam = np.clip(1.5 - np.minimum(seam_y, seam_x), 0, 1)
    return np.asarray(color * (1 - 0.55 * seam[..., None]), np.float32)


def marble(h: int, w: int, size_px: float, rng: np.random.Generator) -> F32:
    """White-grey marble with soft turbulent veins, ``size_px`` between main veins."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    turbulence = (
        _noise(rng, h, w, size_px * 1.2) * 0.9
        + _noise(rng, h, w, size_px * 0.35) * 0.3
        + _noise(rng, h, w, size_px * 0.1) * 0.08
    )
    phase = np.abs(np.sin((xx * 0.8 + yy * 0.6) / size_px * np.pi + turbulence * 1.6))
    vein = 0.55 * np.exp(-phase / 0.05) + 0.2 * np.exp(-phase / 0.3)
    cloud = _noise(rng, h, w, size_px * 1.5) * 0.035
    t = 0.95 - vein + cloud
    return _lerp((118, 118, 124), (238, 236, 232), np.asarray(t, np.float32))


def concrete(h: int, w: int, size_px: float, rng: np.random.Generator) -> F32:
    """Cast concrete: mottled grey with fine aggregate and sparse pores."""
    mottle = _noise(rng, h, w, size_px) * 0.05 + _noise(rng, h, w, size_px / 4) * 0.03
    grit = rng.standard_normal((h, w)).astype(np.float32) * 0.025
    pores = (rng.random((h, w)) > 0.9992).astype(np.float32)
    pores = np.asarray(cv2.GaussianBlur(pores, (0, 0), max(0.6, size_px / 120)), np.float32) * 6
    t = 0.55 + mottle + grit - np.clip(pores, 0, 0.35)
    return _lerp((92, 92, 90), (190, 188, 182), np.asarray(t, np.float32))


def tiles(h: int, w: int, size_px: float, rng: np.random.Generator) -> F32:
    """Square glazed tiles, ``size_px`` wide, with light grout lines and per-tile tone."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = xx / size_px, yy / size_px
    cell = np.floor(u) * 57.0 + np.floor(v) * 131.0
    tone = ((np.sin(cell * 12.9898) * 43758.5453) % 1.0 - 0.5) * 0.06
    glaze = _noise(rng, h, w, size_px / 3) * 0.015
    t = 0.82 + tone + glaze
    color = _lerp((150, 160, 170), (236, 240, 243), np.asarray(t, np.float32))
    grout_half = max(0.75, size_px * 0.035)
    dist = np.minimum(np.abs(u - np.round(u)), np.abs(v - np.round(v))) * size_px
    grout = np.clip(grout_half + 0.5 - dist, 0, 1)[..., None]
    return np.asarray(color * (1 - grout) + np.array([0.72, 0.71, 0.69], np.float32) * grout, np.float32)


PROCEDURAL: dict[str, Callable[[int, int, float, np.random.Generator], F32]] = {
    "wood": wood,
    "marble": marble,
    "concrete": concrete,
    "tiles": tiles,
}

# Pattern size per texture, as a fraction of the region's short side at scale 1.
BASE_SIZE: dict[str, float] = {"wood": 0.09, "marble": 0.35, "concrete": 0.2, "tiles": 0.16, "upload": 0.5}


def procedural(name: str, h: int, w: int, size_px: float, seed: int) -> F32:
    return PROCEDURAL[name](h, w, max(size_px, 2.0), np.random.default_rng(seed))


def tile_texture(texture: U8, h: int, w: int, size_px: float) -> F32:
    """An uploaded texture (HxWx3 uint8 RGB) scaled so its short side is ``size_px``, repeated to HxW."""
    th, tw = texture.shape[:2]
    k = max(size_px, 2.0) / min(th, tw)
    sw, sh = max(1, round(tw * k)), max(1, round(th * k))
    small = cv2.resize(texture[..., :3], (sw, sh), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC)
    reps = (h // sh + 1, w // sw + 1, 1)
    return np.asarray(np.tile(small, reps)[:h, :w], np.float32) * np.float32(1 / 255)
