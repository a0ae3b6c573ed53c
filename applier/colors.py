"""Colour names, hex parsing and exact CIE Lab arithmetic.

Rules name colours the way people do ("white", "sage") or as ``#rrggbb``. Lab here is CIE L*a*b* under
D65 with L in 0..100, computed in float64 from sRGB: it is the reference the quality tests measure
against (ΔE2000: ``scripts/image_quality.py``), while the hot paths use OpenCV's 8-bit Lab on whole
images.
"""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt

RGB = tuple[int, int, int]

NAMED_COLORS: dict[str, str] = {
    "white": "#ffffff",
    "warm white": "#f6f1e7",
    "off white": "#f2efe6",
    "ivory": "#fffff0",
    "cream": "#f3e9d2",
    "beige": "#e3d5b8",
    "sand": "#d8c3a0",
    "taupe": "#a39485",
    "greige": "#b8b0a2",
    "light gray": "#d3d3d3",
    "gray": "#808080",
    "grey": "#808080",
    "charcoal": "#3b3f44",
    "black": "#000000",
    "navy": "#1f2a44",
    "blue": "#2f5d9b",
    "sky blue": "#87b6d8",
    "teal": "#2a7f7a",
    "sage": "#9caf88",
    "olive": "#708238",
    "green": "#3f7f4f",
    "forest green": "#2d4a35",
    "mint": "#bfe3cf",
    "yellow": "#f0cf4a",
    "mustard": "#c99a2e",
    "orange": "#e07b39",
    "terracotta": "#c0664a",
    "red": "#b3302c",
    "burgundy": "#6d2132",
    "pink": "#e8b4bc",
    "blush": "#e9c9c3",
    "lavender": "#b9a7d1",
    "purple": "#6b4c8a",
    "brown": "#6f4e37",
    "walnut": "#5a3e2b",
    "oak": "#b8905c",
}

_HEX = re.compile(r"^#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})$")


def parse_color(value: str) -> str:
    """Normalise a colour name or hex string to ``#rrggbb``; raises ``ValueError`` when unknown."""
    name = " ".join(value.strip().lower().replace("-", " ").replace("_", " ").split())
    if name in NAMED_COLORS:
        return NAMED_COLORS[name]
    match = _HEX.match(value.strip())
    if match is None:
        raise ValueError(f"not a colour name or #rrggbb hex: {value!r}")
    digits = match.group(1).lower()
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return "#" + digits


def hex_to_rgb(value: str) -> RGB:
    """``#rrggbb`` (or a name) to an (r, g, b) tuple of 0..255 ints."""
    digits = parse_color(value)[1:]
    return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))


def srgb_to_linear(rgb: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """sRGB in 0..1 to linear light (IEC 61966-2-1)."""
    c = np.asarray(rgb, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(lin: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    c = np.clip(np.asarray(lin, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)


_RGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_EPS = 216 / 24389
_KAPPA = 24389 / 27


def rgb_to_lab(rgb: npt.NDArray[np.integer] | npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """sRGB uint8 (..., 3) to CIE Lab (..., 3) float64, D65."""
    lin = srgb_to_linear(np.asarray(rgb, dtype=np.float64) / 255.0)
    xyz = lin @ _RGB_TO_XYZ.T / _WHITE_D65
    f = np.where(xyz > _EPS, np.cbrt(xyz), (_KAPPA * xyz + 16) / 116)
    lab: npt.NDArray[np.float64] = np.empty(f.shape, dtype=np.float64)
    lab[..., 0] = 116 * f[..., 1] - 16
    lab[..., 1] = 500 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200 * (f[..., 1] - f[..., 2])
    return lab


def lab_to_rgb(lab: npt.NDArray[np.floating]) -> npt.NDArray[np.uint8]:
    """CIE Lab (..., 3) to sRGB uint8 (..., 3), clipped to the gamut."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16) / 116
    fx = fy + lab[..., 1] / 500
    fz = fy - lab[..., 2] / 200
    f = np.stack([fx, fy, fz], axis=-1)
    xyz = np.where(f**3 > _EPS, f**3, (116 * f - 16) / _KAPPA) * _WHITE_D65
    lin = xyz @ np.linalg.inv(_RGB_TO_XYZ).T
    srgb = linear_to_srgb(lin)
    return np.asarray(np.clip(np.rint(srgb * 255), 0, 255), dtype=np.uint8)
