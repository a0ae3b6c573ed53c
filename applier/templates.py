"""Output templates: the size, aspect, format and background of one rendition of a photo.

``fit`` scales the photo to fit inside width x height (the rendition keeps the photo's aspect),
``fill`` scales it to cover the box and centre-crops to exactly width x height, ``pad`` fits it and
pads to exactly width x height with the background. Photos are never upscaled unless asked.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from applier.colors import hex_to_rgb, parse_color
from applier.errors import ParamError

U8 = npt.NDArray[np.uint8]
Fit = Literal["fit", "fill", "pad"]
Format = Literal["jpeg", "png", "webp"]

EXTENSIONS: dict[str, str] = {"jpeg": "jpg", "png": "png", "webp": "webp"}
MEDIA_TYPES: dict[str, str] = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


@dataclass(frozen=True)
class Template:
    """One rendition of every item of an output set."""

    id: str
    """Stable name, used in file names inside the set (``{idx}_{id}.{ext}``)."""
    width: int
    height: int
    fit: Fit = "fit"
    format: Format = "jpeg"
    quality: int = 90
    """JPEG / WebP quality, 1..100 (ignored by PNG)."""
    background: str = "#ffffff"
    """``#rrggbb`` or ``transparent`` (PNG / WebP only): padding, and what transparency is flattened on."""
    upscale: bool = False

    def __post_init__(self) -> None:
        if not self.id or "/" in self.id or "\\" in self.id:
            raise ParamError("id", f"template id must be a plain name, got {self.id!r}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16384:
                raise ParamError(name, f"must be an integer in 1..16384, got {value!r}")
        if self.fit not in ("fit", "fill", "pad"):
            raise ParamError("fit", f"must be fit, fill or pad, got {self.fit!r}")
        if self.format not in EXTENSIONS:
            raise ParamError("format", f"must be jpeg, png or webp, got {self.format!r}")
        if isinstance(self.quality, bool) or not isinstance(self.quality, int) or not 1 <= self.quality <= 100:
            raise ParamError("quality", f"must be an integer in 1..100, got {self.quality!r}")
        if self.background != "transparent":
            try:
                object.__setattr__(self, "background", parse_color(self.background))
            except ValueError as e:
                raise ParamError("background", str(e)) from e
        elif self.format == "jpeg":
            raise ParamError("background", "JPEG has no transparency; give a colour")

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Template:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ParamError(sorted(unknown)[0], "unknown template field")
        return cls(**data)  # type: ignore[arg-type]


def geometry(
    src_w: int, src_h: int, template: Template
) -> tuple[tuple[int, int], tuple[int, int, int, int], tuple[int, int]]:
    """Where the photo goes: (scaled size (w, h), crop of the scaled photo (x, y, w, h), canvas (w, h)).

    The photo is scaled to ``scaled``, cropped to ``crop``, and placed centred on a canvas of ``canvas``.
    """
    tw, th = template.width, template.height
    k = max(tw / src_w, th / src_h) if template.fit == "fill" else min(tw / src_w, th / src_h)
    if not template.upscale:
        k = min(k, 1.0)
    sw, sh = max(1, round(src_w * k)), max(1, round(src_h * k))
    if template.fit == "fill":
        cw, ch = min(sw, tw), min(sh, th)
        crop = ((sw - cw) // 2, (sh - ch) // 2, cw, ch)
        return (sw, sh), crop, (cw, ch)
    crop = (0, 0, sw, sh)
    canvas = (tw, th) if template.fit == "pad" else (sw, sh)
    return (sw, sh), crop, canvas


def interpolation(src_w: int, scaled_w: int) -> int:
    """The OpenCV resampling of a rendition: area averaging down, bicubic up."""
    return int(cv2.INTER_AREA if scaled_w < src_w else cv2.INTER_CUBIC)


def render(image: U8, template: Template) -> U8:
    """The rendition's pixels: RGB, or RGBA when the template keeps transparency."""
    h, w = image.shape[:2]
    (sw, sh), (cx, cy, cw, ch), (canvas_w, canvas_h) = geometry(w, h, template)
    interp = interpolation(w, sw)
    scaled = image if (sw, sh) == (w, h) else np.asarray(cv2.resize(image, (sw, sh), interpolation=interp), np.uint8)
    cropped = scaled[cy : cy + ch, cx : cx + cw]
    transparent = template.background == "transparent"
    channels = 4 if transparent else 3
    if transparent:
        canvas = np.zeros((canvas_h, canvas_w, 4), np.uint8)
        body: U8 = cropped if cropped.shape[2] == 4 else np.dstack([cropped, np.full(cropped.shape[:2], 255, np.uint8)])
    else:
        canvas = np.empty((canvas_h, canvas_w, channels), np.uint8)
        canvas[:] = hex_to_rgb(template.background)
        body = _flatten(cropped, hex_to_rgb(template.background))
    ox, oy = (canvas_w - cw) // 2, (canvas_h - ch) // 2
    canvas[oy : oy + ch, ox : ox + cw] = body
    return canvas


def _flatten(image: U8, background: tuple[int, int, int]) -> U8:
    if image.shape[2] == 3:
        return image
    a = image[..., 3:4].astype(np.float32) / 255
    out = image[..., :3].astype(np.float32) * a + np.array(background, np.float32) * (1 - a)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def encode(image: U8, template: Template) -> bytes:
    """Encode a rendered image in the template's format (deterministic: no timestamps, no EXIF)."""
    mode = "RGBA" if image.shape[2] == 4 else "RGB"
    pil = Image.fromarray(image, mode)
    buf = io.BytesIO()
    if template.format == "jpeg":
        subsampling = 0 if template.quality >= 90 else 2
        try:
            pil.save(buf, "JPEG", quality=template.quality, optimize=True, subsampling=subsampling)
        except OSError:
            # Optimised Huffman tables need the whole output in one libjpeg buffer, which Pillow sizes
            # at about one byte per pixel; a very detailed photo overflows it. Standard tables have
            # no such limit and cost a few percent of size.
            buf = io.BytesIO()
            pil.save(buf, "JPEG", quality=template.quality, optimize=False, subsampling=subsampling)
    elif template.format == "png":
        pil.save(buf, "PNG", optimize=False, compress_level=6)
    else:
        pil.save(buf, "WEBP", quality=template.quality, method=4)
    return buf.getvalue()
