"""Output sets: every item rendered to every template, packaged as a zip with ``manifest.json``.

The zip is deterministic (fixed timestamps, sorted entries), so the same inputs give the same bytes,
and the manifest records each rendition's SHA-256 so a client can verify what it downloaded. Also the
before/after preview and thumbnail JPEGs the app shows while a job runs.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from applier.apply import RenderResult
from applier.templates import MEDIA_TYPES, Template, encode, render

U8 = npt.NDArray[np.uint8]

MANIFEST_VERSION = 1
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Rendition:
    item: int
    template: str
    path: str
    """Path inside the zip: ``{item}/{template}.{ext}``."""
    data: bytes
    width: int
    height: int
    media_type: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def to_dict(self) -> dict[str, object]:
        return {
            "template": self.template,
            "path": self.path,
            "width": self.width,
            "height": self.height,
            "media_type": self.media_type,
            "bytes": len(self.data),
            "sha256": self.sha256,
        }


def render_item(item: int, image: U8, templates: Sequence[Template]) -> list[Rendition]:
    """Every template's rendition of one finished image (RGB or RGBA)."""
    out = []
    for template in templates:
        pixels = render(image, template)
        out.append(
            Rendition(
                item=item,
                template=template.id,
                path=f"{item}/{template.id}.{template.extension}",
                data=encode(pixels, template),
                width=pixels.shape[1],
                height=pixels.shape[0],
                media_type=MEDIA_TYPES[template.format],
            )
        )
    return out


@dataclass(frozen=True)
class ManifestItem:
    """One photo's record in ``manifest.json``: what was done to it and what the set holds of it."""

    idx: int
    width: int | None
    height: int | None
    alpha: bool
    """Whether the finished photo is RGBA (a removal made its background transparent)."""
    steps: Sequence[Mapping[str, object]]
    """``{"concept", "action", "pixels"}`` per rule entry, in the order they ran."""
    protect_check: Mapping[str, object]
    renditions: Sequence[Mapping[str, object]]
    """``Rendition.to_dict()`` of each of its renditions (plus whatever proof the caller adds)."""
    source_sha256: str | None = None
    """Hash of the input photo's bytes, when the caller has them."""
    instances: Mapping[str, object] | None = None
    """The instance selection applied to this item, as the API received it."""


def steps_record(result: RenderResult) -> list[dict[str, object]]:
    """The ``steps`` of a rendered photo, as the manifest and the item's record store them."""
    return [{"concept": s.concept, "action": s.action, "pixels": s.pixels} for s in result.steps]


def manifest(
    items: Sequence[ManifestItem],
    templates: Sequence[Template],
    rule: Mapping[str, object],
    protect: Sequence[str],
    extra: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """The ``manifest.json`` content (JSON-serialisable): the one writer of it."""
    ids = [t.id for t in templates]
    if len(set(ids)) != len(ids):
        raise ValueError(f"template ids must be unique, got {ids}")
    return {
        "version": MANIFEST_VERSION,
        **(dict(extra) if extra else {}),
        "rule": dict(rule),
        "protect": list(protect),
        "templates": [t.to_dict() for t in templates],
        "items": [
            {
                "idx": item.idx,
                "source_sha256": item.source_sha256,
                "width": item.width,
                "height": item.height,
                "alpha": item.alpha,
                "instances": dict(item.instances) if item.instances else None,
                "steps": [dict(step) for step in item.steps],
                "protect_check": dict(item.protect_check),
                "renditions": [dict(r) for r in item.renditions],
            }
            for item in items
        ],
    }


def package(renditions: Sequence[Rendition], manifest_doc: Mapping[str, object]) -> bytes:
    """A deterministic zip of the renditions and ``manifest.json``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for r in sorted(renditions, key=lambda r: r.path):
            # Images are already compressed: storing them avoids burning CPU for nothing.
            info = zipfile.ZipInfo(r.path, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_STORED
            zf.writestr(info, r.data)
        info = zipfile.ZipInfo("manifest.json", date_time=_ZIP_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, json.dumps(manifest_doc, indent=2, sort_keys=True).encode())
    return buf.getvalue()


def _checker_flatten(image: U8) -> U8:
    """RGBA shown on a light checkerboard (how editors show transparency); RGB unchanged."""
    if image.shape[2] == 3:
        return image
    h, w = image.shape[:2]
    cell = max(4, min(h, w) // 40)
    yy, xx = np.mgrid[0:h, 0:w]
    board = np.where(((yy // cell + xx // cell) % 2 == 0)[..., None], 235, 205).astype(np.float32)
    a = image[..., 3:4].astype(np.float32) / 255
    return np.clip(image[..., :3] * a + board * (1 - a) + 0.5, 0, 255).astype(np.uint8)


def _fit(image: U8, max_side: int) -> U8:
    h, w = image.shape[:2]
    k = min(1.0, max_side / max(h, w))
    if k >= 1.0:
        return image
    return np.asarray(cv2.resize(image, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA))


def _jpeg(image: U8, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def thumbnail(image: U8, max_side: int = 320, quality: int = 82) -> bytes:
    """A small JPEG of an RGB or RGBA image (transparency shown as a checkerboard)."""
    return _jpeg(_checker_flatten(_fit(image, max_side)), quality)


def before_after(before: U8, after: U8, max_side: int = 1024, quality: int = 85) -> bytes:
    """A side-by-side JPEG, before on the left, after on the right, with a thin divider."""
    half = max(1, max_side // 2)
    left = _checker_flatten(_fit(before, half))
    right = _checker_flatten(_fit(after, half))
    h = max(left.shape[0], right.shape[0])
    gap = max(2, h // 200)
    canvas = np.full((h, left.shape[1] + gap + right.shape[1], 3), 255, np.uint8)
    canvas[: left.shape[0], : left.shape[1]] = left
    canvas[: right.shape[0], left.shape[1] + gap :] = right
    return _jpeg(canvas, quality)
