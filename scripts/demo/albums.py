"""The two albums the demo runs: their photos (yours or the built-in synthetic scenes) and their rules.

``--photos DIR``: if DIR has ``interior/`` and/or ``seller/`` sub-folders, each album takes its
folder's photos; a flat folder is taken as interior photos (recolouring walls and floors is what
most photos a newcomer has at hand can show), and the seller album then uses the synthetic product
shots. Photos are JPEG, PNG or WebP files; an album takes at most the plan's items per job.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from scripts.scenes import album

CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}
SIZES = {
    "small": {"interior": (640, 480), "seller": (600, 600)},
    "medium": {"interior": (1280, 960), "seller": (1000, 1000)},
}


@dataclass(frozen=True)
class Photo:
    name: str
    data: bytes
    content_type: str


@dataclass(frozen=True)
class AlbumPlan:
    """What the app would send for one album."""

    name: str
    preset: str
    source: str
    """``synthetic`` or the folder the photos came from."""
    photos: tuple[Photo, ...]
    concepts: Mapping[str, Mapping[str, Any]]
    protect: tuple[str, ...]
    output_set: str
    analyze: tuple[str, ...] = ()
    """Concepts to analyze first (the Instances stage); empty = execute segments by itself."""
    exclude_last: Sequence[str] = field(default_factory=tuple)
    """Concepts whose highest-numbered instance is unchecked on the first photo (instance choices)."""


def _jpeg(pixels: Any) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def synthetic_photos(kind: str, count: int, size: str, seed: int) -> tuple[Photo, ...]:
    width, height = SIZES[size][kind]
    scenes = album(kind, count, width, height, seed=seed)
    return tuple(Photo(f"{kind}-{i + 1}.jpg", _jpeg(s.image), "image/jpeg") for i, s in enumerate(scenes))


def folder_photos(folder: Path, limit: int) -> tuple[Photo, ...]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in CONTENT_TYPES)
    return tuple(Photo(p.name, p.read_bytes(), CONTENT_TYPES[p.suffix.lower()]) for p in files[:limit])


def interior_plan(photos: tuple[Photo, ...], source: str) -> AlbumPlan:
    return AlbumPlan(
        name="interior",
        preset="interior",
        source=source,
        photos=photos,
        analyze=("Wall", "Floor", "Text", "Logo"),
        concepts={
            "Wall": {"action": "recolor", "value": "sage"},
            "Floor": {"action": "material", "texture": "wood"},
        },
        protect=("Text", "Logo", "edges", "highlights"),
        output_set="listing",
        exclude_last=("Wall",),
    )


def seller_plan(photos: tuple[Photo, ...], source: str) -> AlbumPlan:
    return AlbumPlan(
        name="seller",
        preset="seller",
        source=source,
        photos=photos,
        concepts={
            "Background": {"action": "remove", "mode": "transparent"},
            "Product": {"action": "shadow", "mode": "add"},
        },
        protect=("Logo", "Text"),
        output_set="marketplace",
    )


def plans(photos_dir: Path | None, items: int, size: str, max_batch: int) -> tuple[list[AlbumPlan], list[str]]:
    """The albums to run, and notes for the user (photos left out, where each album comes from)."""
    notes: list[str] = []
    count = min(items, max_batch)

    def synthetic(kind: str) -> tuple[Photo, ...]:
        return synthetic_photos(kind, count, size, seed=11 if kind == "interior" else 23)

    if photos_dir is None:
        return [interior_plan(synthetic("interior"), "synthetic"), seller_plan(synthetic("seller"), "synthetic")], notes
    if not photos_dir.is_dir():
        raise FileNotFoundError(f"--photos {photos_dir}: not a directory")
    split = [photos_dir / k for k in ("interior", "seller") if (photos_dir / k).is_dir()]
    folders = {p.name: p for p in split} if split else {"interior": photos_dir}
    result: list[AlbumPlan] = []
    for kind, build in (("interior", interior_plan), ("seller", seller_plan)):
        folder = folders.get(kind)
        if folder is None:
            result.append(build(synthetic(kind), "synthetic"))
            notes.append(f"{kind}: no photos of yours for this album, the synthetic scenes are used")
            continue
        photos = folder_photos(folder, max_batch)
        total = sum(1 for p in folder.iterdir() if p.is_file() and p.suffix.lower() in CONTENT_TYPES)
        if not photos:
            raise FileNotFoundError(f"{folder}: no JPEG, PNG or WebP photos")
        if total > len(photos):
            notes.append(f"{kind}: {total - len(photos)} photo(s) left out (the plan allows {max_batch} per job)")
        result.append(build(photos, str(folder)))
    return result, notes
