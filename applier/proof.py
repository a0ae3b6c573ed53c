"""The protect proof on delivered pixels: what a client decodes from the stored files, compared with
the source photo on the protected pixels.

``apply_rule`` restores protected pixels from the input (``protect.enforce``); checking that same
array afterwards proves only that the copy ran. The proof of record compares what was *stored*:

- the full-size master (lossless PNG) against the source: every protected pixel bit-exact, opaque
  where the master has alpha;
- each rendition against the *reference*: the source rendered through the same template (scale,
  crop, padding, flattening) without the rule. Only rendition pixels computed from protected source
  pixels alone are compared (``protected_region``): resampling mixes a protected pixel's neighbours
  into it, and those may be edited. Lossless renditions must match exactly. A lossy encoder (JPEG,
  WebP) changes every pixel a little, so a lossy rendition is measured against the encoder's own
  error on the same pixels of the unedited reference, encoded with the same settings.

Pure functions over decoded arrays; reading and decoding the stored bytes is the caller's job.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from applier.protect import ProtectMask
from applier.templates import Template, geometry, interpolation, render

U8 = npt.NDArray[np.uint8]
Mask = npt.NDArray[np.bool_]

LOSSLESS_FORMATS: frozenset[str] = frozenset({"png"})
MIN_SHARE_WITHIN_TOLERANCE = 0.95
"""A lossy rendition passes when at least this share of its protected pixels is within the encoder's
tolerance. Ringing from edited pixels in the same compression block may push a few past it; an
edit of the protected region itself moves most of them (tests/unit/applier/test_proof.py)."""

CODEC_BLOCK_PX = 16
"""Lossy codecs code a rendition in blocks aligned to its top-left corner: JPEG 16x16 MCUs (8x8 DCT
blocks, chroma subsampled 2x), WebP (VP8) 16x16 macroblocks. An edit anywhere in a block moves every
pixel of that block."""
CODEC_MARGIN_PX = 4
"""How far past its block an edit still reaches: JPEG's chroma upsampling reads the neighbouring
chroma sample (2 px), VP8's loop filter smooths up to 3 px across a block edge."""

METHOD_MASTER = "master: decoded stored PNG vs decoded stored source, every protected pixel bit-exact"
METHOD_LOSSLESS = "lossless: decoded rendition vs the source rendered through the same template, bit-exact"
METHOD_LOSSY = (
    "lossy: decoded rendition vs the source rendered through the same template, on the "
    f"{CODEC_BLOCK_PX}x{CODEC_BLOCK_PX} codec blocks that lie, with a {CODEC_MARGIN_PX} px margin, wholly in "
    "the protected region; tolerance = the encoder's largest error on the same pixels of that unedited "
    "rendition encoded with the same settings"
)


@dataclass(frozen=True)
class MasterProof:
    """The stored full-size output against the stored source, on every protected pixel."""

    protected_pixels: int
    changed_pixels: int
    max_diff: int
    """Largest absolute difference of one channel (alpha counts from 255) over protected pixels."""
    problem: str | None = None
    """Why the comparison could not be made (sizes differ), if so."""

    @property
    def passed(self) -> bool:
        return self.problem is None and self.changed_pixels == 0

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "method": METHOD_MASTER,
            "protected_pixels": self.protected_pixels,
            "changed_pixels": self.changed_pixels,
            "max_diff": self.max_diff,
            "passed": self.passed,
        }
        if self.problem:
            out["problem"] = self.problem
        return out


@dataclass(frozen=True)
class RenditionProof:
    """One stored rendition's protected pixels against the reference rendition."""

    lossless: bool
    compared_pixels: int
    """Rendition pixels computed from protected source pixels only."""
    max_diff: int
    tolerance: int
    """0 for lossless; for lossy the encoder's largest error on the same pixels of the reference."""
    within_tolerance: int
    problem: str | None = None

    @property
    def share_within_tolerance(self) -> float:
        return 1.0 if self.compared_pixels == 0 else self.within_tolerance / self.compared_pixels

    @property
    def passed(self) -> bool:
        if self.problem is not None:
            return False
        if self.lossless:
            return self.max_diff == 0
        return self.share_within_tolerance >= MIN_SHARE_WITHIN_TOLERANCE

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "method": METHOD_LOSSLESS if self.lossless else METHOD_LOSSY,
            "compared_pixels": self.compared_pixels,
            "max_diff": self.max_diff,
            "tolerance": self.tolerance,
            "share_within_tolerance": round(self.share_within_tolerance, 6),
            "passed": self.passed,
        }
        if not self.lossless:
            out["min_share_within_tolerance"] = MIN_SHARE_WITHIN_TOLERANCE
        if self.problem:
            out["problem"] = self.problem
        return out


def _channel_diff(a: U8, b: U8) -> npt.NDArray[np.int16]:
    """Per-pixel largest absolute channel difference."""
    return np.asarray(np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=-1), np.int16)


def _opaque_like(decoded: U8, reference: U8) -> U8:
    """A decoder returns RGB for an image with no transparent pixel (WebP drops an all-opaque alpha):
    as RGBA, that is alpha 255 everywhere."""
    if decoded.ndim == 3 and decoded.shape[2] == 3 and reference.ndim == 3 and reference.shape[2] == 4:
        return np.dstack([decoded, np.full(decoded.shape[:2], 255, np.uint8)])
    return decoded


def prove_master(source: U8, master: U8, protect: ProtectMask) -> MasterProof:
    """Compare the decoded stored master (RGB or RGBA) with the decoded source (RGB)."""
    m = protect.mask
    total = int(m.sum())
    if master.shape[:2] != source.shape[:2] or m.shape != source.shape[:2]:
        return MasterProof(total, total, 255, f"sizes differ: source {source.shape}, output {master.shape}")
    diff = _channel_diff(master[m, :3], source[m])
    if master.shape[2] == 4:
        diff = np.maximum(diff, 255 - master[m, 3].astype(np.int16))
    return MasterProof(total, int(np.count_nonzero(diff)), int(diff.max(initial=0)))


def reference_input(source: U8, *, has_alpha: bool) -> U8:
    """The source laid out like the rule's output (opaque RGBA when the output has alpha), so the
    template renders both with identical arithmetic on protected pixels."""
    if not has_alpha:
        return source
    return np.dstack([source, np.full(source.shape[:2], 255, np.uint8)])


def reference_rendition(source: U8, template: Template, *, has_alpha: bool) -> U8:
    """The source rendered through ``template`` without the rule."""
    return render(reference_input(source, has_alpha=has_alpha), template)


def protected_region(mask: Mask, template: Template) -> Mask:
    """Rendition pixels (canvas size) whose every resampling input is a protected source pixel.

    Downscaling averages each output pixel's footprint (``INTER_AREA``), upscaling reads a 4x4
    neighbourhood (``INTER_CUBIC``): the mask is eroded by that support's radius in source pixels,
    resampled as a coverage fraction, and only full coverage counts. Cropping and padding follow
    ``geometry``; padding is never protected.
    """
    h, w = mask.shape
    (sw, sh), (cx, cy, cw, ch), (canvas_w, canvas_h) = geometry(w, h, template)
    if (sw, sh) == (w, h):
        scaled = mask
    else:
        down = interpolation(w, sw) == cv2.INTER_AREA
        radius = 1 if down else 2
        kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
        eroded = cv2.erode(mask.astype(np.uint8), kernel).astype(np.float32)
        coverage = cv2.resize(eroded, (sw, sh), interpolation=cv2.INTER_AREA if down else cv2.INTER_LINEAR)
        scaled = np.asarray(coverage >= 1.0 - 1e-4)
    region = np.zeros((canvas_h, canvas_w), np.bool_)
    ox, oy = (canvas_w - cw) // 2, (canvas_h - ch) // 2
    region[oy : oy + ch, ox : ox + cw] = scaled[cy : cy + ch, cx : cx + cw]
    return region


def lossy_region(region: Mask) -> Mask:
    """The pixels of ``region`` a lossy codec cannot have mixed with pixels outside it: those of the
    codec blocks (:data:`CODEC_BLOCK_PX`, aligned to the frame) that lie wholly in ``region`` together
    with a :data:`CODEC_MARGIN_PX` margin. A protected layer thinner than a block (``edges``) has none:
    the master and the lossless renditions prove it alone. The frame's border is no edit."""
    size = 2 * CODEC_MARGIN_PX + 1
    inner = cv2.erode(region.astype(np.uint8), np.ones((size, size), np.uint8), borderType=cv2.BORDER_REPLICATE)
    h, w = region.shape
    b = CODEC_BLOCK_PX
    padded = np.zeros((-(-h // b) * b, -(-w // b) * b), np.uint8)
    padded[:h, :w] = inner
    whole = padded.reshape(padded.shape[0] // b, b, padded.shape[1] // b, b).min(axis=(1, 3)).astype(bool)
    blocks = np.repeat(np.repeat(whole, b, axis=0), b, axis=1)[:h, :w]
    return np.asarray(blocks & region)


def prove_rendition(
    reference: U8,
    stored: U8,
    region: Mask,
    template: Template,
    *,
    encoded_reference: U8 | None = None,
) -> RenditionProof:
    """Compare a decoded stored rendition with ``reference`` on ``region``.

    ``encoded_reference`` is ``reference`` encoded with the template's settings and decoded again;
    required for lossy formats, where its error on ``region`` sets the tolerance.
    """
    lossless = template.format in LOSSLESS_FORMATS
    if not lossless and region.shape == reference.shape[:2]:
        region = lossy_region(region)
    compared = int(region.sum())
    stored = _opaque_like(stored, reference)
    if encoded_reference is not None:
        encoded_reference = _opaque_like(encoded_reference, reference)
    if stored.shape != reference.shape or region.shape != reference.shape[:2]:
        problem = f"the rendition is {stored.shape}, the template renders {reference.shape}"
        return RenditionProof(lossless, compared, 255, 0, 0, problem)
    diff = _channel_diff(stored[region], reference[region])
    tolerance = 0
    if not lossless:
        if encoded_reference is None or encoded_reference.shape != reference.shape:
            raise ValueError("a lossy rendition needs the encoded reference at the rendition's shape")
        tolerance = int(_channel_diff(encoded_reference[region], reference[region]).max(initial=0))
    within = int(np.count_nonzero(diff <= tolerance))
    return RenditionProof(lossless, compared, int(diff.max(initial=0)), tolerance, within)
