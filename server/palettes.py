"""The concept palettes of the domains: each concept's id, name, SAM3 phrases and default action.

Stage 1 of the product (the Palette). Plain data with no imports beyond the standard library, so the
model side (the SAM3 benchmarks, the GPU check on a host without OpenCV) reads the same phrases the
service sends; ``server.presets`` builds the domain presets around them.

A concept's ``id`` is the key used in rules, instance choices and object keys ("Wall"); its
``prompts`` are the SAM3 text phrases that find it (several phrases are merged into one numbered
list of instances). Default actions are validated against ``applier.params`` by a test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class ConceptSpec:
    id: str
    name: str
    prompts: tuple[str, ...]
    default_action: str
    default_params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    protectable: bool = False


def _c(
    cid: str,
    prompts: tuple[str, ...],
    action: str,
    params: dict[str, Any] | None = None,
    *,
    name: str | None = None,
    protectable: bool = False,
) -> ConceptSpec:
    return ConceptSpec(cid, name or cid, prompts, action, MappingProxyType(params or {}), protectable)


_TEXT = _c("Text", ("text", "lettering"), "keep", protectable=True)
_LOGO = _c("Logo", ("logo", "brand mark"), "keep", protectable=True)

INTERIOR_PALETTE: tuple[ConceptSpec, ...] = (
    _c("Wall", ("wall",), "recolor", {"value": "white"}),
    _c("Floor", ("floor",), "material", {"texture": "wood"}),
    _c("Ceiling", ("ceiling",), "recolor", {"value": "white"}),
    _c("Tile", ("tile", "tiled wall"), "material", {"texture": "tiles"}),
    _c("Grout", ("grout", "grout line"), "recolor", {"value": "#d9d6cf"}),
    _c("Window", ("window",), "keep"),
    _c("Door", ("door",), "recolor", {"value": "#f4f1ea"}),
    _c("Cabinet", ("cabinet", "kitchen cabinet"), "recolor", {"value": "#ece8df"}),
    _c("Countertop", ("countertop", "kitchen counter"), "material", {"texture": "marble"}),
    _c("Backsplash", ("backsplash",), "material", {"texture": "tiles"}),
    _TEXT,
    _LOGO,
)

SELLER_PALETTE: tuple[ConceptSpec, ...] = (
    _c("Product", ("product",), "keep"),
    _c("Background", ("background",), "remove", {"mode": "transparent"}),
    _c("Shadow", ("shadow",), "shadow", {"mode": "soften"}),
    _c("Prop", ("prop", "decoration"), "remove", {"mode": "inpaint"}),
    _TEXT,
    _LOGO,
)

PROFILE_PALETTE: tuple[ConceptSpec, ...] = (
    _c("Person", ("person",), "keep"),
    _c("Face", ("face",), "keep", protectable=True),
    _c("Hair", ("hair",), "keep"),
    _c("Clothing", ("clothing", "shirt"), "keep"),
    _c("Background", ("background",), "remove", {"mode": "color", "color": "#eef1f5"}),
    _TEXT,
    _LOGO,
)

FASHION_PALETTE: tuple[ConceptSpec, ...] = (
    _c("Garment", ("garment", "clothing"), "keep"),
    _c("Model", ("person", "model"), "keep"),
    _c("Shoes", ("shoes",), "keep"),
    _c("Accessory", ("bag", "accessory"), "keep"),
    _c("Background", ("background",), "remove", {"mode": "color", "color": "#ffffff"}),
    _TEXT,
    _LOGO,
)
