"""Protect layers: pixels no rule may change, enforced and verified on every rendition.

A protect list names concept layers (``Text``, ``Logo``), locked instances (``Wall#2``) and the two
computed layers: ``edges`` (a thin band along the boundaries of the concept layers, where a recolour
would otherwise show a seam) and ``highlights`` (specular spots: high lightness, low chroma, brighter
than their surroundings). Protection is binary: a protected pixel is copied from the input photo
bit for bit, and ``verify`` counts the protected pixels that differ (the count must be 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
Mask = npt.NDArray[np.bool_]

COMPUTED_LAYERS: tuple[str, ...] = ("edges", "highlights")


@dataclass(frozen=True)
class ProtectMask:
    """The union of the requested protect layers at the photo's size."""

    mask: Mask
    layers: tuple[str, ...]
    """Layers found and included."""
    missing: tuple[str, ...] = ()
    """Requested layers with nothing in this photo (e.g. no Text found)."""


@dataclass(frozen=True)
class ProtectCheck:
    """The proof recorded with each output: no protected pixel changed."""

    layers: tuple[str, ...]
    protected_pixels: int
    changed_pixels: int
    missing: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.changed_pixels == 0

    def to_dict(self) -> dict[str, object]:
        return {
            "layers": list(self.layers),
            "missing": list(self.missing),
            "protected_pixels": self.protected_pixels,
            "changed_pixels": self.changed_pixels,
            "passed": self.passed,
        }


def edges_layer(layers: Mapping[str, F32], shape: tuple[int, int], width_px: int | None = None) -> Mask:
    """A band of ``width_px`` on each side of every layer's boundary (default: 0.15% of the short side)."""
    h, w = shape
    width = width_px if width_px is not None else max(1, round(min(h, w) * 0.0015))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    band = np.zeros((h, w), np.bool_)
    for alpha in layers.values():
        binary = (alpha > 0.5).astype(np.uint8)
        if not binary.any() or binary.all():
            continue
        band |= cv2.dilate(binary, kernel) != cv2.erode(binary, kernel)
    return band


def highlights_layer(
    image: U8, *, min_lightness: float = 90.0, max_chroma: float = 14.0, min_lift: float = 6.0
) -> Mask:
    """Specular spots: CIE L* >= ``min_lightness``, chroma <= ``max_chroma`` and at least ``min_lift``
    L* above a morphological opening of the lightness (so a flat white wall is not a highlight)."""
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2Lab)
    lightness = lab[..., 0].astype(np.float32) * np.float32(100 / 255)
    a = lab[..., 1].astype(np.float32) - 128
    b = lab[..., 2].astype(np.float32) - 128
    chroma = np.hypot(a, b)
    h, w = image.shape[:2]
    # Top-hat: lightness above the morphological opening, i.e. bright structures smaller than the
    # kernel. Unlike a local mean, it does not flag a light wall beside a dark sign.
    k = max(3, (min(h, w) // 40) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    lift = lightness - cv2.morphologyEx(lightness, cv2.MORPH_OPEN, kernel)
    spots = (lightness >= min_lightness) & (chroma <= max_chroma) & (lift >= min_lift)
    # Include the soft rim of each spot, where it fades into the surface.
    grown = cv2.dilate(spots.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    rim = (lift >= min_lift / 2) & (chroma <= max_chroma * 1.5)
    return np.asarray(grown.astype(np.bool_) & (rim | spots))


def build_protect(
    image: U8,
    protect: Sequence[str],
    layers: Mapping[str, F32],
    locked: Mapping[str, F32] | None = None,
    *,
    edge_width_px: int | None = None,
) -> ProtectMask:
    """The protect mask for ``image`` from the requested layer names.

    ``layers`` are the concept alphas of the photo (the ones a rule acts on and the protect-only ones
    such as Text and Logo); ``locked`` are locked instances (``Wall#1``), always protected. Names match
    case-insensitively. A concept alpha protects where it is >= 0.5.
    """
    h, w = image.shape[:2]
    mask = np.zeros((h, w), np.bool_)
    by_name = {name.lower(): (name, alpha) for name, alpha in layers.items()}
    found: list[str] = []
    missing: list[str] = []
    for requested in dict.fromkeys(protect):
        key = requested.lower()
        if key == "edges":
            part = edges_layer(layers, (h, w), edge_width_px)
        elif key == "highlights":
            part = highlights_layer(image)
        elif key in by_name:
            part = by_name[key][1] >= 0.5
        else:
            missing.append(requested)
            continue
        if part.any():
            mask |= part
            found.append(requested)
        else:
            missing.append(requested)
    for name, alpha in (locked or {}).items():
        mask |= alpha >= 0.5
        found.append(name)
    return ProtectMask(mask=mask, layers=tuple(found), missing=tuple(missing))


def enforce(original: U8, rendered: U8, protect: ProtectMask) -> U8:
    """``rendered`` with every protected pixel restored from ``original`` (opaque where RGBA)."""
    out = rendered.copy()
    m = protect.mask
    out[m, :3] = original[m]
    if out.shape[2] == 4:
        out[m, 3] = 255
    return out


def verify(original: U8, output: U8, protect: ProtectMask) -> ProtectCheck:
    """Count protected pixels whose output differs from the input photo (RGB, and alpha if any)."""
    m = protect.mask
    differs = np.any(output[m, :3] != original[m], axis=-1)
    if output.shape[2] == 4:
        differs |= output[m, 3] != 255
    return ProtectCheck(
        layers=protect.layers,
        protected_pixels=int(m.sum()),
        changed_pixels=int(differs.sum()),
        missing=protect.missing,
    )


def no_protect(shape: tuple[int, int]) -> ProtectMask:
    return ProtectMask(mask=np.zeros(shape, np.bool_), layers=())
